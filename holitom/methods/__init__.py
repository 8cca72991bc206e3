"""The method registry: every token-reduction method, installed on a host model by name or by config.

    holitom.apply_method(model, "fastv", fastv_layer=2, fastv_keep=0.2)
    holitom.apply(model, holitom.HoliTomConfig(retain_ratio=0.10, merge_layer=18))
    holitom.stats(model)      # what the last sequence's prefill did
    holitom.remove(model)     # vanilla again

Adding a method: one module in this package (a config dataclass and a `Method` subclass instance `METHOD`)
plus one line in `_MODULES`. Every front end (CLI, bench, FLOPs, lmms-eval plugin, sweeps) reads the
registry. Nothing here imports torch: method modules import their tensor code when they install.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from holitom.methods.base import Method, Schedule, Setting

# name → module holding `METHOD` (the registration line of each method)
_MODULES: dict[str, str] = {
    "vanilla": "holitom.methods.vanilla",
    "holitom": "holitom.methods.holitom",
    "visionzip": "holitom.methods.visionzip",
    "fastv": "holitom.methods.fastv",
    "pdrop": "holitom.methods.pdrop",
    "dycoke": "holitom.methods.dycoke",
    "prunevid": "holitom.methods.prunevid",
    "fastvid": "holitom.methods.fastvid",
}
METHODS: tuple[str, ...] = tuple(_MODULES)


def get(name: str) -> Method:
    """The registered method called `name` (ValueError listing the valid names)."""
    if name not in _MODULES:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return import_module(_MODULES[name]).METHOD


def all_methods() -> list[Method]:
    return [get(name) for name in METHODS]


def method_of_config(config: Any) -> Method:
    """The registered method whose config class `config` is an instance of."""
    for method in all_methods():
        if method.config_class is not None and isinstance(config, method.config_class):
            return method
    raise TypeError(f"config must be a registered method config (e.g. HoliTomConfig), got {type(config).__name__}")


def all_settings() -> dict[str, list[tuple[str, Setting]]]:
    """Setting name → [(method, setting), ...] over every method (names shared by methods share a type)."""
    out: dict[str, list[tuple[str, Setting]]] = {}
    for method in all_methods():
        for item in method.settings:
            out.setdefault(item.name, []).append((method.name, item))
    return out


# ---------------------------------------------------------------------------------------------- hosts


def _slot(model: Any) -> tuple[Any, dict[str, Any]]:
    from holitom.hosts import host_for

    host = host_for(model)
    return host, host.method_slot


def installed(model: Any) -> Any:
    """The Installation on this model instance, or None."""
    from holitom.hosts import host_for

    return host_for(model).method_slot.get("installation")


def model_context(model: Any) -> dict[str, Any]:
    """What presets and checks need of a model: its published shape name (if any), depth, newline layout."""
    from holitom.hosts import host_for
    from holitom.shapes import match_shape

    host = host_for(model)
    return {
        "shape": match_shape(host.lm_config, host.newline_layout),
        "num_layers": len(host.decoder_layers),
        "layout": host.newline_layout,
    }


def _check_not_offloaded(model: Any) -> None:
    """Refuse a device map that offloads parts to CPU or disk next to GPUs: the methods' hooks run before
    accelerate loads offloaded weights in, so they would compute on empty (meta) tensors."""
    devices = {str(device) for device in (getattr(model, "hf_device_map", None) or {}).values()}
    offloaded = devices & {"cpu", "disk"}
    if offloaded and devices - {"cpu", "disk"}:
        raise ValueError(
            f"the model is partly offloaded (its device_map puts modules on {' and '.join(sorted(offloaded))}): "
            "token-reduction hooks need every layer's weights on a GPU; load it on more GPUs or in a smaller dtype"
        )


def check_host(method: Method, host: Any) -> None:
    """ValueError (one line, naming the host) when a method cannot run on this host's kind of positions."""
    from holitom.hosts.base import host_name, positions_of

    kind = positions_of(host)
    if kind not in method.positions:
        able = [m.name for m in all_methods() if kind in m.positions]
        raise ValueError(
            f"{method.name} cannot run on {host_name(host)}: its {kind} positions need every kept token's origin, "
            f"which {method.name} does not record; methods that run there: {', '.join(able)}"
        )


def config_for(name: str, settings: dict[str, Any], model_config: Any) -> Any:
    """The config `apply_method` would install on a model with this (transformers) config, checked before
    any weights are loaded: presets of its published shape, its depth, its newline layout. The config of one of
    our `llava` checkpoints or of a transformers LLaVA-OneVision (llava-hf) checkpoint."""
    from holitom.shapes import language_config, match_shape, newline_layout

    method = get(name)
    lm, layout = language_config(model_config), newline_layout(model_config)
    return method.make_config(settings, shape=match_shape(lm, layout), num_layers=lm.num_hidden_layers, layout=layout)


def install(model: Any, method: Method, config: Any) -> Any:
    """Install a validated config of `method` on a model (replacing any method installed)."""
    remove(model)
    host, slot = _slot(model)
    check_host(method, host)
    context = model_context(model)
    method.check_model(config, context["num_layers"], context["layout"])
    if method.name != "vanilla":  # the host's own hooks only track the sequence: no weights involved
        _check_not_offloaded(model)
    from holitom.methods.installation import PENDING, Installation

    attached = host.attach()  # e.g. the hooks that keep a transformers model's sequence state (token counts)
    try:
        if method.name == "vanilla":  # nothing of a method: the host's own part only
            installation = Installation(method, config, host)
        else:
            installation = method.install(host, config)
    except BaseException:
        half_done = slot.pop(PENDING, None)  # hooks and compressor added before the failure
        if half_done is not None:
            half_done.remove()
        attached.remove()
        raise
    slot.pop(PENDING, None)
    installation.add(attached)
    slot["installation"] = installation
    return model


def apply(model: Any, config: Any) -> Any:
    """Install the method of a config instance (e.g. `HoliTomConfig`) on this model instance."""
    return install(model, method_of_config(config), config)


def apply_method(model: Any, name: str, **settings: Any) -> Any:
    """Install a method by name. Settings not given take the paper's values for this model's published
    shape (HoliTom: K and τ), else the method's defaults; a layer beyond the model's depth is an error."""
    from holitom.hosts import host_for

    method = get(name)
    check_host(method, host_for(model))
    context = model_context(model)
    config = method.make_config(settings, **context)
    return install(model, method, config)


def remove(model: Any) -> Any:
    """Remove whatever method is installed; the model is vanilla again."""
    _, slot = _slot(model)
    installation = slot.pop("installation", None)
    if installation is not None:
        installation.remove()
    return model


# ---------------------------------------------------------------------------------------------- statistics


@dataclass
class ReductionStats:
    """What the current sequence's prefill did: visual tokens pooled, entering the LLM, and after each cut
    inside it (`stages`: layer, visual_in, visual_kept), plus the method's outer/decode details."""

    method: str
    settings: dict[str, Any]
    pooled_tokens: int
    visual_tokens: int
    prompt_tokens: int
    stages: list[dict[str, int]] = field(default_factory=list)
    outer: list[dict[str, Any]] = field(default_factory=list)
    decode: dict[str, Any] | None = None

    @property
    def visual_after(self) -> int:
        """Visual tokens in the last decoder layers."""
        return self.stages[-1]["visual_kept"] if self.stages else self.visual_tokens

    @property
    def schedule(self) -> Schedule:
        """((first layer, visual tokens), ...) of this prefill, for `holitom.flops.schedule_flops`."""
        return ((0, self.visual_tokens), *((s["layer"], s["visual_kept"]) for s in self.stages))

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "visual_after": self.visual_after}


def stats(model: Any) -> ReductionStats:
    """Statistics of the current sequence of a model instance (vanilla when no method is installed)."""
    from holitom.hosts import host_for

    host = host_for(model)
    state = host.sequence
    installation = host.method_slot.get("installation")
    prompt = state.prompt_lengths[0] if state.prompt_lengths else 0
    result = ReductionStats(
        method="vanilla" if installation is None else installation.name,
        settings={} if installation is None else installation.method.config_dict(installation.config),
        pooled_tokens=int(sum(state.pooled_tokens)),
        visual_tokens=int(sum(state.visual_tokens)),
        prompt_tokens=int(prompt),
    )
    if installation is not None:
        result.stages = installation.stage_stats()
        result.outer = installation.outer_stats()
        result.decode = installation.decode_stats()
    return result


__all__ = [
    "METHODS",
    "Method",
    "ReductionStats",
    "all_methods",
    "apply",
    "apply_method",
    "get",
    "installed",
    "remove",
    "stats",
]
