"""The host interface: what a token-reduction method may ask of the model it is installed on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

# callable(pooled (F, N, d)) -> the video's token sequence (M, d), newlines included
VideoCompressor = Callable[[torch.Tensor], torch.Tensor]


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
        """How the host lays out a video: "one_token", "grid", "frame" or "no_token"."""

    @property
    def image_newline(self) -> torch.Tensor:
        """The learned newline vector (d,)."""

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
