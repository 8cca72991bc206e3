"""The host interface: what a token-reduction method may ask of the model it is installed on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

# How a host numbers the positions of the LM's tokens (`Host.positions`):
# "sequential": 0..L−1 along the sequence the LM receives (OneVision, LLaVA-Video: 1-D RoPE);
# "mrope": every visual token has a (t, h, w) position of its own (Qwen2.5-VL's M-RoPE), so a compressor must
#   say where each token it returns came from (`VideoTokens`) and the host gives it that token's position.
POSITIONS = ("sequential", "mrope")


@dataclass(frozen=True)
class VideoTokens:
    """A compressed video and where each token came from, for hosts whose positions are "mrope".

    tokens (M, d); frames (M,) long: the frame — on Qwen2.5-VL the temporal patch — whose position the token takes
    (a static token: its segment's first frame); positions (M,) long: its index 0..N−1 in that frame's token grid
    (a merged token: the index of the token it was merged into). carry: the compression applied to other
    per-token features, callable((F, N, C') → (M, C')) with the weights that made `tokens` (Qwen3-VL's deepstack
    rows follow the tokens through it; None: the method records no such map, and a host with `carries_features`
    refuses it)."""

    tokens: torch.Tensor
    frames: torch.Tensor
    positions: torch.Tensor
    carry: Callable[[torch.Tensor], torch.Tensor] | None = None


# callable(pooled (F, N, d)) -> the video's token sequence (M, d), newlines included; on an "mrope" host a
# `VideoTokens` (see `video_output`)
VideoCompressor = Callable[[torch.Tensor], "torch.Tensor | VideoTokens"]


def positions_of(host: Any) -> str:
    """The host's position kind (`Host.positions`); hosts that predate the notion number sequentially."""
    kind = getattr(host, "positions", "sequential")
    if kind not in POSITIONS:
        raise ValueError(f"{type(host).__name__}.positions={kind!r}: must be one of {POSITIONS}")
    return kind


def video_output(
    host: Any,
    tokens: torch.Tensor,
    frames: torch.Tensor,
    positions: torch.Tensor,
    carry: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Any:
    """What a compressor returns to its host: the tokens (M, d), or on an "mrope" host the tokens with their
    origins (`VideoTokens`; frames/positions (M,) as in `holitom.outer.OuterResult`; carry: see `VideoTokens`)."""
    if positions_of(host) == "mrope":
        return VideoTokens(tokens, frames.to(torch.long), positions.to(torch.long), carry)
    return tokens


def carries_features(host: Any) -> bool:
    """Whether the host has per-token features besides the tokens that must follow every merge (`Host.
    carries_features`: Qwen3-VL's deepstack rows); a compressor then returns `VideoTokens.carry`."""
    return bool(getattr(host, "carries_features", False))


def attention_probe(host: Any, reference: bool = False) -> Any:
    """The vision-attention probe of a host: its own (`Host.attention_probe`, e.g. Qwen2.5-VL's windowed tower),
    else the SigLIP probe on `vision_probe_layer`. An object with `pop_pooled(frames) -> (frames, N)` and
    `remove()`."""
    make = getattr(host, "attention_probe", None)
    if make is not None:
        return make(reference)
    from holitom.patch.vision import VisionAttentionProbe

    return VisionAttentionProbe(host, reference=reference)


def host_name(host: Any) -> str:
    """The model class a host adapts, for one-line errors."""
    return type(getattr(host, "model", host)).__name__


class Host(Protocol):
    """One model instance, seen by a method. Every property reads the live model (nothing is cached)."""

    model: nn.Module

    @property
    def lm_config(self) -> Any:
        """The language model's config (num_hidden_layers, hidden_size, ...)."""

    @property
    def decoder_layers(self) -> Sequence[nn.Module]:
        """The Qwen2 decoder layers, in order."""

    @property
    def rotary_embedding(self) -> nn.Module:
        """The LM's rotary embedding: rotary_embedding(x, position_ids) -> (cos, sin)."""

    @property
    def vision_probe_layer(self) -> nn.Module:
        """The vision tower's last kept encoder layer (a SigLIP encoder layer)."""

    @property
    def newline_layout(self) -> str:
        """How the host lays out a video: "one_token", "grid", "frame" or "no_token" (no newline token at all:
        Qwen2.5-VL)."""

    @property
    def image_newline(self) -> torch.Tensor:
        """The learned newline vector (d,) (read only by layouts that have one)."""

    @property
    def sequence(self) -> Any:
        """The current `SequenceState` (visual_spans, prompt_lengths, prefilled, survivors, ...)."""

    @property
    def video_compressor(self) -> VideoCompressor | None:
        """The installed compressor of pooled video tokens (None = the vanilla layout)."""

    @video_compressor.setter
    def video_compressor(self, compressor: VideoCompressor | None) -> None: ...

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """(B, P, C) patch features or scores → (B, N, C), pooled exactly like the video features."""

    @property
    def method_slot(self) -> dict[str, Any]:
        """Per-instance storage for the installed method (methods keep their state here, on the instance)."""

    def attach(self) -> Any:
        """What the host itself must install while any method is (hooks that keep the sequence state, say);
        an object with `remove()`."""

    # Optional members (hosts written before them omit them; read through the functions above):
    # positions: str — one of POSITIONS (`positions_of`; default "sequential").
    # carries_features: bool — per-token features travel with the video tokens (`carries_features`; Qwen3-VL).
    # attention_probe(reference) — the host's own vision-attention probe (`attention_probe`; default: the SigLIP
    #   probe on `vision_probe_layer`). A "frame" of the probe and of the compressor is then the host's unit of
    #   time: on Qwen2.5-VL a temporal patch (2 frames), whose token count N depends on the video's resolution.
