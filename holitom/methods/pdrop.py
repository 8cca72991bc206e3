"""PyramidDrop (Xing et al., CVPR 2025, arXiv 2410.17247; official code Cooperx521/PyramidDrop): visual tokens
dropped in stages inside the LLM, ranked at each stage boundary by the last prompt token's attention, with
positions renumbered after each drop. The algorithm: `holitom.baselines.pdrop`, docs/methods.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from holitom.methods.base import Method, Schedule, check_share, setting

# The settings behind the paper's PDrop cells (10.5 TFLOPs on OV-7B, 19.5 on LLaVA-Video-7B): PDrop's own
# four stages with λ = 0.5, first drop before layer 2 (docs/methods.md: how they were derived).
PAPER_PDROP = {"pdrop_layers": (2, 7, 14), "pdrop_lambda": 0.5}


@dataclass(frozen=True)
class PDropConfig:
    pdrop_layers: tuple[int, ...] = setting(
        PAPER_PDROP["pdrop_layers"],
        "layers l_1 < l_2 < ... before which the visual tokens are cut; stage s keeps int(N·λ^s)",
        short="layers",
        layer=True,
    )
    pdrop_lambda: float = setting(0.5, "λ: each stage keeps this share of the previous one's tokens, in (0, 1]", short="lambda")

    def __post_init__(self) -> None:
        layers = self.pdrop_layers
        if (
            not isinstance(layers, tuple)
            or not layers
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in layers)
            or any(b <= a for a, b in zip(layers, layers[1:]))
        ):
            raise ValueError(f"PDropConfig.pdrop_layers={layers!r}: must be increasing integers ≥ 1, e.g. (2, 7, 14)")
        check_share("PDropConfig", "pdrop_lambda", self.pdrop_lambda)


class PDrop(Method):
    name = "pdrop"
    summary = "PyramidDrop: drop visual tokens in stages inside the LLM, ranked by the last prompt token's attention"
    acts = "inside the LLM (several stages)"
    config_class = PDropConfig
    layouts = ("one_token", "grid", "frame", "no_token")
    positions = ("sequential", "mrope")
    identity_settings = {"pdrop_lambda": 1.0}
    paper_labels = ("PDrop",)
    label_keys = ("pdrop_layers", "pdrop_lambda")
    retention_setting = None  # before the LLM every token is kept (100 %)

    def schedule(self, config: PDropConfig, frames: int, tokens_per_frame: int, num_layers: int) -> Schedule:
        from holitom.counts import pdrop_keep_counts

        n = frames * tokens_per_frame
        kept = pdrop_keep_counts(n, config.pdrop_lambda, len(config.pdrop_layers))
        return ((0, n), *zip(config.pdrop_layers, kept))

    def paper_settings(self, label: str, shape: str, budget: float) -> dict[str, Any] | None:
        return dict(PAPER_PDROP) if label in self.paper_labels else None

    def install(self, host: Any, config: PDropConfig) -> Any:
        import torch

        from holitom import counts
        from holitom.baselines.pdrop import pdrop_keep_ratios, pdrop_select
        from holitom.methods.installation import Installation
        from holitom.patch.qwen2 import InnerReduction, Stage

        def stage_reducer(ratio: float):
            def drop(hidden: torch.Tensor, scores: torch.Tensor, n_in: int) -> tuple[torch.Tensor, torch.Tensor]:
                # int(N·λ^s) of the N visual tokens that entered the LLM; at least one survives (ours)
                n_keep = min(max(1, counts.floor_share(n_in, ratio)), hidden.shape[0])
                kept = pdrop_select(scores, n_keep)
                return kept, hidden[kept]

            return drop

        ratios = pdrop_keep_ratios(config.pdrop_lambda, len(config.pdrop_layers))
        # scored by the boundary layer's own attention (its input norm, q/k and RoPE), before it runs
        stages = [Stage(layer, stage_reducer(ratio), layer) for layer, ratio in zip(config.pdrop_layers, ratios)]
        installation = Installation(self, config, host)
        installation.add(InnerReduction(host, stages, "pdrop", renumber=True))
        return installation


METHOD = PDrop()
