"""VisionZip (Yang et al., CVPR 2025, arXiv 2412.04467), per video frame on the pooled tokens, with the
same vision-attention scores as HoliTom. The algorithm: `holitom.baselines.visionzip`, docs/methods.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from holitom import counts
from holitom.counts import VISIONZIP_CONTEXTUAL_SHARE
from holitom.methods.base import Method, Schedule, check_share, setting


@dataclass(frozen=True)
class VisionZipConfig:
    retain_ratio: float = setting(0.10, "ρ: share of each frame's pooled tokens kept, in (0, 1]", short="rho")
    contextual_share: float = setting(
        VISIONZIP_CONTEXTUAL_SHARE, "D: share of each frame's budget given to contextual (merged) tokens, in [0, 1]", short="D"
    )

    def __post_init__(self) -> None:
        check_share("VisionZipConfig", "retain_ratio", self.retain_ratio)
        check_share("VisionZipConfig", "contextual_share", self.contextual_share, low_open=False)


class VisionZip(Method):
    name = "visionzip"
    summary = "VisionZip per frame: dominant tokens by attention + merged contextual tokens"
    acts = "before the LLM"
    config_class = VisionZipConfig
    layouts = ("one_token", "grid", "no_token")
    positions = ("sequential", "mrope")
    identity_settings = {"retain_ratio": 1.0}
    paper_labels = ("VisionZip", "Visionzip")

    def schedule(self, config: VisionZipConfig, frames: int, tokens_per_frame: int, num_layers: int) -> Schedule:
        return ((0, counts.outer_tokens(frames, tokens_per_frame, config.retain_ratio)),)

    def paper_settings(self, label: str, shape: str, budget: float) -> dict[str, Any] | None:
        return {"retain_ratio": budget} if label in self.paper_labels else None

    def install(self, host: Any, config: VisionZipConfig) -> Any:
        import torch

        from holitom.baselines.visionzip import visionzip_compress, visionzip_compress_grid, visionzip_frames
        from holitom.hosts.base import attention_probe, video_output
        from holitom.methods.installation import Installation
        from holitom.outer import append_newline

        installation = Installation(self, config, host)
        probe = installation.add(attention_probe(host))
        layout = host.newline_layout

        def compress(pooled: torch.Tensor) -> Any:
            scores = probe.pop_pooled(pooled.shape[0])
            frames, per_frame = pooled.shape[:2]
            if layout == "no_token":  # no newline; the kept tokens' origins for the host's positions
                kept, positions = visionzip_frames(pooled, scores, config.retain_ratio, config.contextual_share)
                origin = torch.arange(frames, device=pooled.device)[:, None].expand_as(positions)
                tokens = kept.reshape(-1, kept.shape[-1])
                installation.record_outer(method="visionzip", frames=frames, pooled=frames * per_frame, tokens=tokens.shape[0])
                return video_output(host, tokens, origin.reshape(-1), positions.reshape(-1))
            newline = host.image_newline.to(device=pooled.device, dtype=pooled.dtype)
            if layout == "grid":
                tokens = visionzip_compress_grid(pooled, scores, config.retain_ratio, newline, config.contextual_share)
            else:
                tokens = append_newline(visionzip_compress(pooled, scores, config.retain_ratio, config.contextual_share), newline)
            installation.record_outer(method="visionzip", frames=frames, pooled=frames * per_frame, tokens=tokens.shape[0])
            return tokens

        installation.set_compressor(compress)
        return installation


METHOD = VisionZip()
