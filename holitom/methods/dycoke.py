"""DyCoke (Tao et al., CVPR 2025, arXiv 2411.15024; official code KD-TAO/DyCoke): temporal token pruning across
frame pairs and quads before the LLM, and dynamic pruning of the visual KV cache during decoding.
The algorithm: `holitom.baselines.dycoke` (stage 1), `holitom.patch.decode` (stage 2), docs/methods.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from holitom.methods.base import Method, Schedule, check_int, check_share, setting

# The settings behind the paper's DyCoke row (25 % retained, 8.7 TFLOPs on OV-7B at 32 frames): every quad
# pruned (the official bound skips the last one) and K = 1.0, i.e. stage 1 keeps exactly its anchor frames,
# one in four (DyCoke keeps one whole frame per quad, so 25 % leaves nothing of the others); stage 2 as the
# official evaluation wrapper runs it (L = 3, p = 0.8, threshold 0.9). docs/methods.md.
PAPER_DYCOKE = {"dycoke_prune": 1.0, "dycoke_all_quads": True}


@dataclass(frozen=True)
class DyCokeConfig:
    dycoke_prune: float = setting(
        1.0, "K: share of a pruned frame's tokens stage 1 drops (keeps int((1−K)·N)), in [0, 1]", short="K"
    )
    dycoke_all_quads: bool = setting(
        True, "run the quad pass on every quad (false: the official bound, which leaves the last quad's frame whole)"
    )
    dycoke_order: str = setting(
        "similarity", "order of a pruned frame's tokens: similarity (official) or position", choices=("similarity", "position")
    )
    dycoke_layer: int = setting(3, "L: decode steps prune the visual cache from this layer on (scored at L−1)", layer=True)
    dycoke_decode_prune: float = setting(
        0.8, "p: share of the visual cache a pruning decode step drops, in [0, 1] (0: no decode pruning)", short="p"
    )
    dycoke_threshold: float = setting(
        0.9, "a decode step prunes only when its attention's cosine to the previous step's is below this"
    )

    def __post_init__(self) -> None:
        owner = "DyCokeConfig"
        check_share(owner, "dycoke_prune", self.dycoke_prune, low_open=False)
        check_share(owner, "dycoke_decode_prune", self.dycoke_decode_prune, low_open=False)
        check_int(owner, "dycoke_layer", self.dycoke_layer, 1)
        if not isinstance(self.dycoke_all_quads, bool):
            raise ValueError(f"{owner}.dycoke_all_quads={self.dycoke_all_quads!r}: must be true or false")
        if self.dycoke_order not in ("similarity", "position"):
            raise ValueError(f"{owner}.dycoke_order={self.dycoke_order!r}: must be similarity or position")
        if isinstance(self.dycoke_threshold, bool) or not isinstance(self.dycoke_threshold, (int, float)):
            raise ValueError(f"{owner}.dycoke_threshold={self.dycoke_threshold!r}: must be a number")


class DyCoke(Method):
    name = "dycoke"
    summary = "DyCoke: prune frames against their pair/quad partner before the LLM, prune the visual cache while decoding"
    acts = "before the LLM (+ the KV cache while decoding)"
    config_class = DyCokeConfig
    layouts = ("one_token",)
    identity_settings = {"dycoke_prune": 0.0, "dycoke_order": "position", "dycoke_decode_prune": 0.0}
    paper_labels = ("DyCoke",)
    label_keys = ("dycoke_prune",)
    retention_setting = None

    def retention(self, config: DyCokeConfig, frames: int, tokens_per_frame: int) -> float:
        from holitom.counts import dycoke_token_count

        kept = dycoke_token_count(frames, tokens_per_frame, config.dycoke_prune, config.dycoke_all_quads)
        return kept / (frames * tokens_per_frame)

    def schedule(self, config: DyCokeConfig, frames: int, tokens_per_frame: int, num_layers: int) -> Schedule:
        from holitom.counts import dycoke_token_count

        return ((0, dycoke_token_count(frames, tokens_per_frame, config.dycoke_prune, config.dycoke_all_quads)),)

    def paper_settings(self, label: str, shape: str, budget: float) -> dict[str, Any] | None:
        return dict(PAPER_DYCOKE) if label in self.paper_labels else None

    def install(self, host: Any, config: DyCokeConfig) -> Any:
        import torch

        from holitom.baselines.dycoke import dycoke_merge
        from holitom.methods.installation import Installation
        from holitom.outer import append_newline
        from holitom.patch.decode import DecodePruner

        installation = Installation(self, config, host)

        def compress(pooled: torch.Tensor) -> torch.Tensor:
            tokens, _, _ = dycoke_merge(pooled, config.dycoke_prune, config.dycoke_all_quads, config.dycoke_order)
            tokens = append_newline(tokens, host.image_newline)
            frames, per_frame = pooled.shape[:2]
            installation.record_outer(method="dycoke", frames=frames, pooled=frames * per_frame, tokens=tokens.shape[0])
            return tokens

        def candidates(state: Any) -> torch.Tensor | None:
            """The video's stage-1 tokens but the last one (the official span ends one early), not the newline."""
            if len(state.visual_spans) != 1 or len(state.visual_spans[0]) != 1:
                return None  # one video in one prompt, as the official code assumes
            (start, length), = state.visual_spans[0]
            return torch.arange(start, start + max(length - 2, 0))

        installation.set_compressor(compress)
        if config.dycoke_decode_prune > 0:
            installation.add(
                DecodePruner(host, config.dycoke_layer, config.dycoke_decode_prune, config.dycoke_threshold, candidates)
            )
        return installation


METHOD = DyCoke()
