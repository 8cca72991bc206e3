"""FastV (Chen et al., ECCV 2024, arXiv 2403.06764): after decoder layer K−1, keep the share R of the
visual tokens the last prompt token attends to most; layers K.. run on them. Dropped tokens are discarded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from holitom import counts
from holitom.methods.base import PAPER_SHAPES, Method, Schedule, check_int, check_share, setting

# The settings behind the paper's FastV cells (9.3 TFLOPs on OV-7B, 86.4 on OV-72B, 17.1 on LLaVA-Video-7B):
# K=2, R=0.2 is the only (K, R) on a 1 % grid that gives all three (docs/methods.md). They are the presets of
# those three models; the config's defaults (K=2, R=0.5) are FastV's own, for any other model.
PAPER_FASTV = {"fastv_layer": 2, "fastv_keep": 0.2}


@dataclass(frozen=True)
class FastVConfig:
    fastv_layer: int = setting(2, "K: FastV prunes before this decoder layer (scores from layer K−1)", short="K", layer=True)
    fastv_keep: float = setting(0.5, "R: share of the visual tokens FastV keeps, in (0, 1]", short="R")

    def __post_init__(self) -> None:
        check_int("FastVConfig", "fastv_layer", self.fastv_layer, 1)
        check_share("FastVConfig", "fastv_keep", self.fastv_keep)


class FastV(Method):
    name = "fastv"
    summary = "FastV: drop the visual tokens least attended by the last prompt token after layer K−1"
    acts = "inside the LLM"
    config_class = FastVConfig
    layouts = ("one_token", "grid", "frame", "no_token")
    positions = ("sequential", "mrope")
    identity_settings = {"fastv_keep": 1.0}
    paper_labels = ("FastV",)
    label_keys = ("fastv_layer", "fastv_keep")
    retention_setting = "fastv_keep"  # tables show FastV's kept share as its row's retention

    def schedule(self, config: FastVConfig, frames: int, tokens_per_frame: int, num_layers: int) -> Schedule:
        n = frames * tokens_per_frame
        return ((0, n), (config.fastv_layer, counts.drop_keep_count(n, config.fastv_keep)))

    def presets(self, shape: str | None, given: dict[str, Any]) -> dict[str, Any]:
        # the paper runs FastV at one setting on all three of its models; any other model: FastV's own defaults
        return dict(PAPER_FASTV) if shape in PAPER_SHAPES else {}

    def paper_settings(self, label: str, shape: str, budget: float) -> dict[str, Any] | None:
        return dict(PAPER_FASTV) if label in self.paper_labels else None

    def install(self, host: Any, config: FastVConfig) -> Any:
        import torch

        from holitom.baselines.fastv import fastv_select
        from holitom.methods.installation import Installation
        from holitom.patch.qwen2 import InnerReduction, Stage

        def drop(hidden: torch.Tensor, scores: torch.Tensor, n_in: int) -> tuple[torch.Tensor, torch.Tensor]:
            kept = fastv_select(scores, config.fastv_keep)
            return kept, hidden[kept]

        installation = Installation(self, config, host)
        stage = Stage(config.fastv_layer, drop, config.fastv_layer - 1)
        installation.add(InnerReduction(host, [stage], "fastv"))
        return installation


METHOD = FastV()
