"""FastVID (Shen et al. 2025, arXiv 2503.11187; official code LunarShen/FastVID): dynamic temporal
segmentation of the video by the original SigLIP's attention-pooling head, then per segment salient tokens
(head attention) and density-peak centres of a few anchor frames that absorb the segment's other tokens.
Runs before the LLM on the pooled, projected frame tokens. The algorithm: `holitom.baselines.fastvid`,
docs/methods.md."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from holitom import counts
from holitom.counts import BUDGET_ROUNDINGS as ROUNDINGS
from holitom.counts import frame_budget
from holitom.methods.base import Method, Schedule, check_int, check_share, setting
from holitom.shapes import SIGLIP_SO400M

# The checkpoint whose MAP head and post-layernorm FastVID reads (the tower LLaVA-OneVision/Video fine-tuned).
FASTVID_SIGLIP = SIGLIP_SO400M


@dataclass(frozen=True)
class FastVIDConfig:
    """FastVID's knobs (official defaults). Validated on construction; a bad value names itself."""

    retain_ratio: float = setting(
        0.10,
        "ρ: share of each frame's pooled video tokens kept (per-frame budget ceil(N·ρ), int(N·ρ) with "
        "fastvid_rounding floor), in (0, 1]",
        short="rho",
    )
    fastvid_segments: int = setting(
        8, "c: FastVID's minimum number of temporal segments (cuts after the c−1 least similar frame pairs), ≥ 1", short="c"
    )
    fastvid_tau: float = setting(
        0.9, "τ: FastVID also cuts between consecutive frames whose head-pooled features have cosine < τ", short="tau"
    )
    fastvid_contextual: float = setting(
        0.4, "d: share int(R·d) of each frame's budget R spent on merged (contextual) tokens, in [0, 1]", short="d"
    )
    fastvid_anchor_stride: int = setting(
        4, "p: anchor frames are a segment's last frame and every p-th frame before it, ≥ 1", short="p"
    )
    fastvid_beta: float = setting(
        0.6, "β: least weight of a contextual centre in its merge, max(1/(n+1), β), in [0, 1]", short="beta"
    )
    fastvid_rounding: str = setting(
        "ceil",
        "per-frame budget: ceil (ceil(N·ρ), the paper's FLOPs cells) or floor (int(N·ρ), the official code)",
        short="rounding",
        choices=ROUNDINGS,
    )
    fastvid_siglip: str = setting(
        FASTVID_SIGLIP,
        "SigLIP checkpoint (hub id or local directory) holding the attention-pooling head and post-layernorm "
        "FastVID scores frames with; offline: download it once or point this at a local copy",
        short="siglip",
    )

    def __post_init__(self) -> None:
        owner = "FastVIDConfig"
        check_share(owner, "retain_ratio", self.retain_ratio)
        check_int(owner, "fastvid_segments", self.fastvid_segments, 1)
        tau = self.fastvid_tau
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau):
            raise ValueError(f"{owner}.fastvid_tau={tau!r}: must be a finite number")
        check_share(owner, "fastvid_contextual", self.fastvid_contextual, low_open=False)
        check_int(owner, "fastvid_anchor_stride", self.fastvid_anchor_stride, 1)
        check_share(owner, "fastvid_beta", self.fastvid_beta, low_open=False)
        if self.fastvid_rounding not in ROUNDINGS:
            raise ValueError(f"{owner}.fastvid_rounding={self.fastvid_rounding!r}: must be one of {ROUNDINGS}")
        if not isinstance(self.fastvid_siglip, str) or not self.fastvid_siglip.strip():
            raise ValueError(
                f"{owner}.fastvid_siglip={self.fastvid_siglip!r}: must name a SigLIP checkpoint (hub id or directory)"
            )


class FastVID(Method):
    name = "fastvid"
    summary = "FastVID: dynamic temporal segments, salient tokens + density-peak anchor merging per segment"
    acts = "before the LLM"
    config_class = FastVIDConfig
    layouts = ("one_token", "grid")
    # ρ = 1: every frame keeps all N tokens, nothing is merged and the MAP head is not even loaded.
    identity_settings = {"retain_ratio": 1.0}
    paper_labels = ("FastVID",)

    def schedule(self, config: FastVIDConfig, frames: int, tokens_per_frame: int, num_layers: int) -> Schedule:
        if config.fastvid_rounding == "floor":
            check_int("FastVID", "frames", frames, 1)
            return ((0, frames * frame_budget(tokens_per_frame, config.retain_ratio, "floor")),)
        return ((0, counts.outer_tokens(frames, tokens_per_frame, config.retain_ratio)),)

    def paper_settings(self, label: str, shape: str, budget: float) -> dict[str, Any] | None:
        return {"retain_ratio": budget} if label in self.paper_labels else None

    def install(self, host: Any, config: FastVIDConfig) -> Any:
        import torch

        from holitom.baselines.fastvid import fastvid_compress_with_info
        from holitom.baselines.siglip_head import load_map_head
        from holitom.methods.installation import Installation
        from holitom.outer import append_newline

        installation = Installation(self, config, host)
        layout = host.newline_layout
        probe = None
        if config.retain_ratio < 1.0:
            probe = installation.add(MapHeadProbe(host, load_map_head(config.fastvid_siglip)))

        def compress(pooled: torch.Tensor) -> torch.Tensor:
            frames, per_frame = pooled.shape[:2]
            attention = global_features = None
            if probe is not None:
                patch_attention, global_features = probe.pop(frames)
                attention = host.pool(patch_attention[..., None]).squeeze(-1)
            newline = host.image_newline
            result = fastvid_compress_with_info(
                pooled, attention, global_features, config, newline if layout == "grid" else None
            )
            tokens = result.tokens
            if layout == "one_token":
                tokens = append_newline(tokens, newline)
            installation.record_outer(
                method="fastvid",
                frames=frames,
                pooled=frames * per_frame,
                tokens=tokens.shape[0],
                segments=len(result.segments),
                anchors=len(result.anchors),
                salient=result.num_salient,
                contextual=result.num_contextual,
            )
            return tokens

        installation.set_compressor(compress)
        return installation


class MapHeadProbe:
    """Forward hook on the host's last kept SigLIP layer: its output (the tower's features, (F, P, C)) goes
    through the loaded MAP head. `pop(frames)` returns (attention (frames, P), pooled (frames, C)), float32:
    the last `frames` frames the tower ran on (the host may run a video in chunks; runs before them, e.g. of
    an image, are dropped)."""

    def __init__(self, host: Any, head: Any) -> None:
        self.layer = host.vision_probe_layer
        reference = self.layer.layer_norm1.weight
        width = reference.shape[-1]
        if head.hidden_size != width:
            raise ValueError(
                f"fastvid_siglip: the MAP head is {head.hidden_size} wide but the vision tower's features are "
                f"{width} wide: point fastvid_siglip at the SigLIP checkpoint this tower was fine-tuned from"
            )
        self.head = head.to(device=reference.device, dtype=reference.dtype)
        self.outputs: list[tuple[Any, Any]] = []
        self.handle = self.layer.register_forward_hook(self._hook)

    def _hook(self, layer: Any, args: tuple, output: Any) -> None:
        import torch

        from holitom.baselines.siglip_head import map_head_outputs

        features = output[0] if isinstance(output, (tuple, list)) else output
        with torch.no_grad():
            self.outputs.append(map_head_outputs(features, self.head))

    def pop(self, frames: int) -> tuple[Any, Any]:
        import torch

        outputs, self.outputs = self.outputs, []
        seen = sum(a.shape[0] for a, _ in outputs)
        if seen < frames:
            raise RuntimeError(
                f"FastVID: the vision tower ran on {seen} frames since the last video, this video has {frames}"
            )
        attention = torch.cat([a for a, _ in outputs]) if len(outputs) > 1 else outputs[0][0]
        pooled = torch.cat([g for _, g in outputs]) if len(outputs) > 1 else outputs[0][1]
        return attention[seen - frames :], pooled[seen - frames :]

    def remove(self) -> None:
        self.handle.remove()
        self.outputs = []


METHOD = FastVID()
