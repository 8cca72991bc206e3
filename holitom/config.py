"""Typed configuration of HoliTom (spec §4). Validated on construction; bad values name themselves."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

INNER_UPDATES = ("sequential", "mean")

# Paper settings per model preset: number of LM layers and the inner merge layer K used in the paper.
# ov-0.5b is not in the paper; K=15 keeps the 7B's relative depth (18/28 of 24 layers, rounded).
PRESETS: dict[str, dict[str, Any]] = {
    "ov-0.5b": {"merge_layer": 15, "frames": 32},
    "ov-7b": {"merge_layer": 18, "frames": 32},
    "ov-72b": {"merge_layer": 60, "frames": 32},
    "vid-7b": {"merge_layer": 18, "frames": 64},
}


def paper_tau(preset: str, retain_ratio: float) -> float:
    """τ the paper used: 0.65 for OV-7B at ρ=0.10, 0.80 everywhere else."""
    if preset == "ov-7b" and math.isclose(retain_ratio, 0.10):
        return 0.65
    return 0.80


@dataclass(frozen=True)
class HoliTomConfig:
    """All HoliTom knobs.

    retain_ratio: ρ, fraction of the F·N pooled video tokens kept by outer-LLM merging, in (0, 1].
    tau: τ, cosine threshold for temporal stability (any finite number; >1 disables temporal merging).
    beta: β, centre weight when merging a cluster, in [0, 1].
    contextual_share: D, share of each frame's budget given to contextual (clustered) tokens, in [0, 1].
    knn: neighbours for DPC-KNN density, ≥ 1.
    max_window_size: W, longest temporal window in frames, ≥ 1 (1 disables temporal merging).
    merge_layer: K, decoder layer before which inner-LLM merging happens; None = no inner merging.
    merge_ratio: r, fraction of visual tokens merged away at layer K, in [0, 1).
    inner_update: "sequential" (the paper's numbers) or "mean".
    """

    retain_ratio: float = 0.10
    tau: float = 0.80
    beta: float = 0.6
    contextual_share: float = 0.0
    knn: int = 7
    max_window_size: int = 1024
    merge_layer: int | None = 18
    merge_ratio: float = 0.5
    inner_update: str = "sequential"

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"HoliTomConfig.{name}={getattr(self, name)!r}: {why}")

        if not isinstance(self.retain_ratio, (int, float)) or not 0.0 < self.retain_ratio <= 1.0:
            raise bad("retain_ratio", "must be in (0, 1]")
        if not isinstance(self.tau, (int, float)) or not math.isfinite(self.tau):
            raise bad("tau", "must be a finite number")
        if not isinstance(self.beta, (int, float)) or not 0.0 <= self.beta <= 1.0:
            raise bad("beta", "must be in [0, 1]")
        if not isinstance(self.contextual_share, (int, float)) or not 0.0 <= self.contextual_share <= 1.0:
            raise bad("contextual_share", "must be in [0, 1]")
        if isinstance(self.knn, bool) or not isinstance(self.knn, int) or self.knn < 1:
            raise bad("knn", "must be an integer ≥ 1")
        if (
            isinstance(self.max_window_size, bool)
            or not isinstance(self.max_window_size, int)
            or self.max_window_size < 1
        ):
            raise bad("max_window_size", "must be an integer ≥ 1")
        if self.merge_layer is not None and (
            isinstance(self.merge_layer, bool) or not isinstance(self.merge_layer, int) or self.merge_layer < 1
        ):
            raise bad("merge_layer", "must be None (no inner merging) or an integer ≥ 1")
        if not isinstance(self.merge_ratio, (int, float)) or not 0.0 <= self.merge_ratio < 1.0:
            raise bad("merge_ratio", "must be in [0, 1)")
        if self.inner_update not in INNER_UPDATES:
            raise bad("inner_update", f"must be one of {INNER_UPDATES}")

    @classmethod
    def preset(cls, name: str, retain_ratio: float = 0.10, **overrides: Any) -> HoliTomConfig:
        """The paper's settings for a model: `HoliTomConfig.preset("ov-7b", retain_ratio=0.10)`."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; valid presets: {sorted(PRESETS)}")
        values: dict[str, Any] = {
            "retain_ratio": retain_ratio,
            "tau": paper_tau(name, retain_ratio),
            "merge_layer": PRESETS[name]["merge_layer"],
        }
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> HoliTomConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
