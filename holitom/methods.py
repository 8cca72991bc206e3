"""Installing token-reduction methods on one `llava` model instance.

`apply(model, config)` installs HoliTom (outer + optional inner merging); `apply_method(model, name,
**settings)` installs any registered method (vanilla, holitom, visionzip, fastv); `remove(model)`
restores vanilla behaviour exactly. Nothing here touches a class: the vision probe and decoder-layer
hooks are registered on the instance's modules, and the video compressor is an instance attribute,
so two models in one process stay independent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from holitom.baselines.fastv import FASTV_DEFAULT_KEEP, FASTV_DEFAULT_LAYER, fastv_select
from holitom.baselines.visionzip import VISIONZIP_CONTEXTUAL_SHARE, visionzip_budget, visionzip_compress
from holitom.config import HoliTomConfig
from holitom.inner import inner_keep_count, merge_dropped, select_kept
from holitom.outer import compress_video_with_info
from holitom.patch.qwen2 import InnerReduction
from holitom.patch.vision import VisionAttentionProbe

METHODS = ("vanilla", "holitom", "visionzip", "fastv")
_ATTR = "_token_reduction"


@dataclass
class Installed:
    """What is installed on a model: the method, its settings, and the hooks to undo."""

    method: str
    settings: dict[str, Any]
    probe: VisionAttentionProbe | None = None
    inner: InnerReduction | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def installed(model: nn.Module) -> Installed | None:
    return model.__dict__.get(_ATTR)


def _newline_position(model: nn.Module) -> str:
    return getattr(model.config, "mm_newline_position", None) or "one_token"


def _record_outer(model: nn.Module, **stats: Any) -> None:
    model.mm_state.setdefault("outer", []).append(stats)


class HoliTomVideoCompressor:
    """Replaces the vanilla video layout with HoliTom's outer-LLM merged tokens (spec §1–2)."""

    def __init__(self, config: HoliTomConfig, probe: VisionAttentionProbe) -> None:
        self.config, self.probe = config, probe

    def __call__(self, model: nn.Module, pooled: torch.Tensor) -> torch.Tensor:
        scores = self.probe.pop_pooled(model)
        newline = model.get_model().image_newline
        position = _newline_position(model)
        if position not in ("one_token", "grid"):
            raise ValueError(f"HoliTom supports mm_newline_position 'one_token' or 'grid', not {position!r}")
        result = compress_video_with_info(pooled, scores, self.config, newline if position == "grid" else None)
        tokens = result.tokens
        if position == "one_token":
            tokens = torch.cat([tokens, newline[None].to(tokens.dtype)], dim=0)
        _record_outer(
            model,
            method="holitom",
            frames=pooled.shape[0],
            pooled=pooled.shape[0] * pooled.shape[1],
            tokens=tokens.shape[0],
            segments=len(result.segments),
            reduced=result.reduced,
            adjusted_ratio=result.adjusted_ratio,
            static=result.num_static,
            dynamic=result.num_dynamic_kept,
        )
        return tokens


class VisionZipVideoCompressor:
    """VisionZip per frame on the pooled tokens; scores from the same vision probe as HoliTom."""

    def __init__(self, retain_ratio: float, contextual_share: float, probe: VisionAttentionProbe) -> None:
        self.retain_ratio, self.contextual_share, self.probe = retain_ratio, contextual_share, probe

    def __call__(self, model: nn.Module, pooled: torch.Tensor) -> torch.Tensor:
        scores = self.probe.pop_pooled(model)
        position = _newline_position(model)
        if position != "one_token":
            raise ValueError(f"VisionZip is implemented for the 'one_token' layout, not {position!r}")
        tokens = visionzip_compress(pooled, scores, self.retain_ratio, self.contextual_share)
        newline = model.get_model().image_newline
        tokens = torch.cat([tokens, newline[None].to(tokens.dtype)], dim=0)
        _record_outer(model, method="visionzip", frames=pooled.shape[0], pooled=pooled.shape[0] * pooled.shape[1], tokens=tokens.shape[0])
        return tokens


def holitom_inner_reducer(merge_ratio: float, update: str):
    """Reducer for `InnerReduction`: keep round(n·(1−r)) by score, merge the rest into them."""

    def reduce(hidden: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # At least one survivor: with a handful of visual tokens round(n·(1−r)) can be 0.
        kept, dropped = select_kept(scores, max(1, inner_keep_count(hidden.shape[0], merge_ratio)))
        return kept, merge_dropped(hidden, kept, dropped, update)

    return reduce


def fastv_reducer(keep_ratio: float):
    """Reducer for `InnerReduction`: keep the share R with the highest scores, drop the rest."""

    def reduce(hidden: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept = fastv_select(scores, keep_ratio)
        return kept, hidden[kept]

    return reduce


def _num_layers(model: nn.Module) -> int:
    return len(model.get_model().layers)


def apply(model: nn.Module, config: HoliTomConfig) -> nn.Module:
    """Install HoliTom on this model instance (replacing any method already installed)."""
    if not isinstance(config, HoliTomConfig):
        raise TypeError(f"config must be a HoliTomConfig, got {type(config).__name__}")
    remove(model)
    probe = VisionAttentionProbe(model)
    model.video_token_compressor = HoliTomVideoCompressor(config, probe)
    inner = None
    if config.merge_layer is not None and config.merge_layer < _num_layers(model):
        inner = InnerReduction(model, config.merge_layer, holitom_inner_reducer(config.merge_ratio, config.inner_update), "holitom")
    model.__dict__[_ATTR] = Installed("holitom", dataclasses.asdict(config), probe=probe, inner=inner)
    return model


def check_settings(method: str, **settings: Any) -> dict[str, Any]:
    """Validate a method's settings without a model; returns them with defaults filled in.

    vanilla: none. holitom: HoliTomConfig fields. visionzip: retain_ratio, contextual_share.
    fastv: fastv_layer (K, default 2), fastv_keep (R, default 0.5).
    """
    valid = {
        "vanilla": set(),
        "holitom": {f.name for f in dataclasses.fields(HoliTomConfig)},
        "visionzip": {"retain_ratio", "contextual_share"},
        "fastv": {"fastv_layer", "fastv_keep"},
    }
    if method not in valid:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    unknown = set(settings) - valid[method]
    if unknown:
        raise ValueError(f"unknown {method} settings {sorted(unknown)}; valid: {', '.join(sorted(valid[method])) or 'none'}")
    if method == "holitom":
        return dataclasses.asdict(HoliTomConfig(**settings))
    if method == "visionzip":
        ratio = settings.get("retain_ratio", 0.10)
        share = settings.get("contextual_share", VISIONZIP_CONTEXTUAL_SHARE)
        visionzip_budget(1, ratio, share)  # validates both values with a clear error
        return {"retain_ratio": ratio, "contextual_share": share}
    if method == "fastv":
        layer = settings.get("fastv_layer", FASTV_DEFAULT_LAYER)
        keep = settings.get("fastv_keep", FASTV_DEFAULT_KEEP)
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 1:
            raise ValueError(f"fastv_layer={layer!r}: must be an integer ≥ 1")
        if not isinstance(keep, (int, float)) or not 0.0 < keep <= 1.0:
            raise ValueError(f"fastv_keep={keep!r}: must be in (0, 1]")
        return {"fastv_layer": layer, "fastv_keep": float(keep)}
    return {}


def apply_method(model: nn.Module, method: str, **settings: Any) -> nn.Module:
    """Install a method by name (see `check_settings` for each method's settings)."""
    settings = check_settings(method, **settings)
    if method == "holitom":
        return apply(model, HoliTomConfig(**settings))
    remove(model)
    if method == "visionzip":
        probe = VisionAttentionProbe(model)
        model.video_token_compressor = VisionZipVideoCompressor(settings["retain_ratio"], settings["contextual_share"], probe)
        model.__dict__[_ATTR] = Installed("visionzip", settings, probe=probe)
    elif method == "fastv":
        inner = None
        if settings["fastv_layer"] < _num_layers(model):
            inner = InnerReduction(model, settings["fastv_layer"], fastv_reducer(settings["fastv_keep"]), "fastv")
        model.__dict__[_ATTR] = Installed("fastv", settings, inner=inner)
    return model


def remove(model: nn.Module) -> nn.Module:
    """Remove whatever method is installed; the model is vanilla again."""
    state = model.__dict__.pop(_ATTR, None)
    if state is not None:
        if state.probe is not None:
            state.probe.remove()
        if state.inner is not None:
            state.inner.remove()
    model.__dict__.pop("video_token_compressor", None)
    model.mm_state.pop("kept_positions", None)
    return model
