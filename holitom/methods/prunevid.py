"""PruneVid (Huang et al. 2025, arXiv 2412.16117, official code Visual-AI/PruneVid): its before-LLM stage —
temporal segments from frame clustering, static tokens averaged over a segment, DPC-KNN cluster means —
with our budget rule so that exactly F·ceil(N·ρ) tokens enter the LLM. The algorithm:
`holitom.baselines.prunevid`, docs/methods.md. The official inner-LLM stage is not part of the paper's
PruneVid rows (their TFLOPs count the before-LLM budget in every layer) and is not implemented."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from holitom import counts
from holitom.methods.base import Method, Schedule, check_int, check_share, setting

# The official settings (paper, README, scripts/eval.sh): τ = 0.8, temporal_segment_ratio γ = 0.25, DPC k = 7.
PRUNEVID_TAU = 0.8
PRUNEVID_SEGMENT_RATIO = 0.25
PRUNEVID_KNN = 7


@dataclass(frozen=True)
class PruneVidConfig:
    """PruneVid's settings. Validated on construction; a bad value names itself."""

    # 0.15: PruneVid's own results keep 15–17 % of the visual tokens (README, after both its stages), and
    # it is the budget of the paper's only OV-72B PruneVid row. The paper's Table 1 rows set it explicitly.
    retain_ratio: float = setting(
        0.15,
        "ρ: share of the F·N pooled video tokens entering the LLM (exactly F·ceil(N·ρ)), in (0, 1]",
        short="rho",
    )
    tau: float = setting(
        PRUNEVID_TAU,
        "τ: a position is static in a segment when its mean pairwise cosine over the segment's frames "
        "exceeds τ (> 1: none static)",
        short="tau",
    )
    prunevid_segment_ratio: float = setting(
        PRUNEVID_SEGMENT_RATIO,
        "γ: frames are clustered into max(1, int(F·γ)) clusters before they are cut into temporal segments, "
        "in (0, 1]",
        short="gamma",
    )
    knn: int = setting(PRUNEVID_KNN, "neighbours for DPC-KNN density (frames and tokens), ≥ 1", short="knn")

    def __post_init__(self) -> None:
        owner = "PruneVidConfig"
        check_share(owner, "retain_ratio", self.retain_ratio)
        if (
            not isinstance(self.tau, (int, float))
            or isinstance(self.tau, bool)
            or not math.isfinite(self.tau)
        ):
            raise ValueError(f"{owner}.tau={self.tau!r}: must be a finite number")
        check_share(owner, "prunevid_segment_ratio", self.prunevid_segment_ratio)
        check_int(owner, "knn", self.knn, 1)


class PruneVid(Method):
    name = "prunevid"
    summary = (
        "PruneVid: temporal segments, static tokens averaged, DPC-KNN cluster means, to F·ceil(N·ρ) tokens"
    )
    acts = "before the LLM"
    config_class = PruneVidConfig
    layouts = ("one_token", "grid")
    # ρ = 1 makes the budget F·N: every position stays dynamic and every set keeps all its tokens as they
    # are, in raster order, so the vanilla sequence comes out (whatever τ is).
    identity_settings = {"retain_ratio": 1.0}
    paper_labels = ("PruneVid",)

    def schedule(
        self, config: PruneVidConfig, frames: int, tokens_per_frame: int, num_layers: int
    ) -> Schedule:
        return ((0, counts.outer_tokens(frames, tokens_per_frame, config.retain_ratio)),)

    def paper_settings(self, label: str, shape: str, budget: float) -> dict[str, Any] | None:
        return {"retain_ratio": budget} if label in self.paper_labels else None

    def install(self, host: Any, config: PruneVidConfig) -> Any:
        import torch

        from holitom.baselines.prunevid import prunevid_compress_with_info
        from holitom.methods.installation import Installation
        from holitom.outer import append_newline

        installation = Installation(self, config, host)
        layout = host.newline_layout

        def compress(pooled: torch.Tensor) -> torch.Tensor:
            newline = host.image_newline
            result = prunevid_compress_with_info(
                pooled,
                config.retain_ratio,
                config.tau,
                config.prunevid_segment_ratio,
                config.knn,
                newline if layout == "grid" else None,
            )
            tokens = result.tokens
            if layout == "one_token":
                tokens = append_newline(tokens, newline)
            installation.record_outer(
                method="prunevid",
                frames=pooled.shape[0],
                pooled=pooled.shape[0] * pooled.shape[1],
                tokens=tokens.shape[0],
                segments=len(result.segments),
                budget=result.budget,
                adjusted_ratio=result.adjusted_ratio,
                static=result.num_static,
                dynamic=result.num_dynamic,
                restored=result.restored,
            )
            return tokens

        installation.set_compressor(compress)
        return installation


METHOD = PruneVid()
