"""HoliTom (Shao et al., NeurIPS 2025, arXiv 2505.21334): outer-LLM temporal + spatial merging of the
pooled video tokens, and optional inner-LLM merging at decoder layer K. The algorithm: docs/methods.md."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

from holitom import counts
from holitom.counts import INNER_UPDATES
from holitom.methods.base import Method, Schedule, check_int, check_share, setting

# The paper's inner merge layer K per published model (18 of 28 for the 7B models, 60 of 80 for 72B).
# ov-0.5b is not in the paper; K=15 keeps the 7B's relative depth (18/28 of 24 layers, rounded).
PAPER_MERGE_LAYER: dict[str, int] = {"ov-0.5b": 15, "ov-7b": 18, "ov-72b": 60, "vid-7b": 18}
PAPER_MERGE_RATIO = 0.5


def paper_tau(shape: str | None, retain_ratio: float) -> float:
    """τ the paper used: 0.65 for OV-7B at ρ=0.10, 0.80 everywhere else."""
    if shape == "ov-7b" and math.isclose(retain_ratio, 0.10):
        return 0.65
    return 0.80


@dataclass(frozen=True)
class HoliTomConfig:
    """All HoliTom knobs. Validated on construction; a bad value names itself."""

    retain_ratio: float = setting(
        0.10, "ρ: share of the F·N pooled video tokens kept by outer merging, in (0, 1]", short="rho"
    )
    tau: float = setting(
        0.80,
        "τ: cosine threshold for temporal stability; values outside (−1, 1] switch temporal merging off (τ > 1) "
        "or make every position static (τ ≤ −1)",
        short="tau",
    )
    beta: float = setting(0.6, "β: centre weight when merging a cluster, in [0, 1]", short="beta")
    contextual_share: float = setting(0.0, "D: share of each frame's budget given to clustered tokens, in [0, 1]", short="D")
    knn: int = setting(7, "neighbours for DPC-KNN density, ≥ 1", short="knn")
    max_window_size: int = setting(1024, "W: longest temporal window in frames (1 disables temporal merging)", short="W")
    merge_layer: int | None = setting(
        18, "K: decoder layer before which inner-LLM merging happens; none = HoliTom w/o M", short="K", layer=True
    )
    merge_ratio: float = setting(0.5, "r: share of the visual tokens merged away at layer K, in [0, 1)", short="r")
    inner_update: str = setting(
        "sequential", "inner merge rule: sequential (the paper's) or mean", short="update", choices=INNER_UPDATES
    )
    reference_compat: bool = setting(
        False,
        "behave like the authors' runs: layer K−1 attends without a causal mask in the prefill, similarities "
        "and merges in the model dtype (false: causal, as the paper describes, and float32)",
        short="compat",
    )

    def __post_init__(self) -> None:
        owner = "HoliTomConfig"
        check_share(owner, "retain_ratio", self.retain_ratio)
        if not isinstance(self.tau, (int, float)) or isinstance(self.tau, bool) or not math.isfinite(self.tau):
            raise ValueError(f"{owner}.tau={self.tau!r}: must be a finite number")
        if self.tau > 1 or self.tau <= -1:
            effect = "no two frames are similar enough: temporal merging is off" if self.tau > 1 else (
                "every position counts as static in every window"
            )
            warnings.warn(f"{owner}.tau={self.tau!r} is outside (−1, 1]: {effect}", UserWarning, stacklevel=3)
        check_share(owner, "beta", self.beta, low_open=False)
        check_share(owner, "contextual_share", self.contextual_share, low_open=False)
        check_int(owner, "knn", self.knn, 1)
        check_int(owner, "max_window_size", self.max_window_size, 1)
        check_int(
            owner, "merge_layer", self.merge_layer, 1, optional=True,
            what="None (no inner merging) or an integer ≥ 1",
        )  # fmt: skip
        check_share(owner, "merge_ratio", self.merge_ratio, low_open=False, high_open=True)
        if self.inner_update not in INNER_UPDATES:
            raise ValueError(f"{owner}.inner_update={self.inner_update!r}: must be one of {INNER_UPDATES}")
        if not isinstance(self.reference_compat, bool):
            raise ValueError(f"{owner}.reference_compat={self.reference_compat!r}: must be true or false")

    @classmethod
    def preset(cls, name: str, retain_ratio: float = 0.10, **overrides: Any) -> HoliTomConfig:
        """The paper's settings for a model: `HoliTomConfig.preset("ov-7b", retain_ratio=0.10)`."""
        if name not in PAPER_MERGE_LAYER:
            raise ValueError(f"unknown preset {name!r}; valid presets: {sorted(PAPER_MERGE_LAYER)}")
        values: dict[str, Any] = {
            "retain_ratio": retain_ratio,
            "tau": paper_tau(name, retain_ratio),
            "merge_layer": PAPER_MERGE_LAYER[name],
        }
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> HoliTomConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class HoliTom(Method):
    name = "holitom"
    summary = "HoliTom: temporal + spatial merging before the LLM, optional merging inside it at layer K"
    acts = "before the LLM (+ inside it at layer K)"
    config_class = HoliTomConfig
    identity_settings = {"retain_ratio": 1.0, "max_window_size": 1, "merge_layer": None}
    layouts = ("one_token", "grid", "no_token")
    positions = ("sequential", "mrope")
    paper_labels = ("HoliTom (w/o M)", "HoliTom")
    label_keys = ("merge_layer", "merge_ratio")
    relative_layers = True

    def label(self, config: HoliTomConfig, given: dict[str, Any]) -> str:
        if config.merge_layer is not None:
            return super().label(config, given)
        extra = sorted(set(given) - {"retain_ratio", "merge_layer", "merge_ratio"})
        values = self.config_dict(config)
        rest = "".join(f" {n}={self.setting(n).format(values[n])}" for n in extra)
        return f"holitom w/o M ρ={config.retain_ratio:.2f}{rest}"

    def presets(self, shape: str | None, given: dict[str, Any]) -> dict[str, Any]:
        values = super().presets(shape, given)
        if shape not in PAPER_MERGE_LAYER:
            return values
        rho = given.get("retain_ratio", values.get("retain_ratio", HoliTomConfig.retain_ratio))
        return {**values, "merge_layer": PAPER_MERGE_LAYER[shape], "tau": paper_tau(shape, rho)}

    def layer_hint(self, name: str) -> str:
        return "; merge_layer none switches inner merging off (HoliTom w/o M)"

    def schedule(self, config: HoliTomConfig, frames: int, tokens_per_frame: int, num_layers: int) -> Schedule:
        n = counts.outer_tokens(frames, tokens_per_frame, config.retain_ratio)
        if config.merge_layer is None:
            return ((0, n),)
        return ((0, n), (config.merge_layer, counts.after_merge_flops_count(n, config.merge_ratio)))

    def paper_settings(self, label: str, shape: str, budget: float) -> dict[str, Any] | None:
        if label not in self.paper_labels:
            return None
        values: dict[str, Any] = {"retain_ratio": budget, "tau": paper_tau(shape, budget), "merge_layer": None}
        if label == "HoliTom":
            values.update(merge_layer=PAPER_MERGE_LAYER[shape], merge_ratio=PAPER_MERGE_RATIO)
        return values

    def install(self, host: Any, config: HoliTomConfig) -> Any:
        import torch

        from holitom.hosts.base import attention_probe, carries_features, video_output
        from holitom.inner import merge_dropped, select_kept
        from holitom.methods.installation import Installation
        from holitom.outer import append_newline, apply_merge_plan, compress_video_with_info
        from holitom.patch.qwen2 import InnerReduction, Stage

        installation = Installation(self, config, host)
        reference = config.reference_compat
        probe = installation.add(attention_probe(host, reference=reference))
        layout = host.newline_layout
        with_plan = carries_features(host)  # the merge's weights travel with the tokens (Qwen3-VL's deepstack)

        def compress(pooled: torch.Tensor) -> Any:
            scores = probe.pop_pooled(pooled.shape[0])
            newline = host.image_newline if layout in ("grid", "one_token") else None  # no_token: none to read
            result = compress_video_with_info(
                pooled, scores, config, newline if layout == "grid" else None, with_plan=with_plan
            )
            tokens = result.tokens
            if layout == "one_token":
                tokens = append_newline(tokens, newline)
            installation.record_outer(
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
            plan = result.plan
            carry = None if plan is None else (lambda values: apply_merge_plan(plan, values))
            return video_output(host, tokens, result.frames, result.positions, carry)

        installation.set_compressor(compress)
        if config.merge_layer is not None:

            def merge(hidden: torch.Tensor, scores: torch.Tensor, n_in: int) -> tuple[torch.Tensor, torch.Tensor]:
                # At least one survivor: with a handful of visual tokens round(n·(1−r)) can be 0.
                n_keep = max(1, counts.merge_keep_count(hidden.shape[0], config.merge_ratio))
                kept, dropped = select_kept(scores, n_keep)
                kept_scores = scores[kept] if reference else None
                return kept, merge_dropped(hidden, kept, dropped, config.inner_update, kept_scores, validate=False)

            stage = Stage(
                config.merge_layer,
                merge,
                config.merge_layer - 1,
                reference_scores=reference,
                unmasked_score_layer=reference,
            )
            installation.add(InnerReduction(host, [stage], "holitom"))
        return installation


METHOD = HoliTom()
