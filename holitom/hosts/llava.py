"""Host adapter for this repository's `llava` models (`LlavaQwenForCausalLM`: OneVision, LLaVA-Video)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from holitom.hosts.base import VideoCompressor


class _CompressorSlot:
    """llava's `video_token_compressor` takes (model, pooled); methods' compressors take (pooled)."""

    def __init__(self, compressor: VideoCompressor) -> None:
        self.compressor = compressor

    def __call__(self, model: nn.Module, pooled: torch.Tensor) -> torch.Tensor:
        return self.compressor(pooled)


class LlavaHost:
    """A `LlavaQwenForCausalLM` instance as a method host."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @staticmethod
    def accepts(model: Any) -> bool:
        return hasattr(model, "get_vision_tower") and hasattr(model, "sequence_state")

    @property
    def lm_config(self) -> Any:
        return self.model.config

    @property
    def decoder_layers(self) -> Sequence[nn.Module]:
        return self.model.get_model().layers

    @property
    def rotary_embedding(self) -> nn.Module:
        return self.model.get_model().rotary_emb

    @property
    def vision_probe_layer(self) -> nn.Module:
        tower = self.model.get_vision_tower()
        if tower is None:
            raise ValueError("the model has no vision tower to probe")
        return tower.encoder_layers[-1]

    @property
    def newline_layout(self) -> str:
        return getattr(self.model.config, "mm_newline_position", None) or "one_token"

    @property
    def image_newline(self) -> torch.Tensor:
        return self.model.get_model().image_newline

    @property
    def sequence(self) -> Any:
        return self.model.sequence_state

    @property
    def video_compressor(self) -> VideoCompressor | None:
        slot = self.model.__dict__.get("video_token_compressor")
        return slot.compressor if isinstance(slot, _CompressorSlot) else slot

    @video_compressor.setter
    def video_compressor(self, compressor: VideoCompressor | None) -> None:
        if compressor is None:
            self.model.__dict__.pop("video_token_compressor", None)
        else:
            self.model.video_token_compressor = _CompressorSlot(compressor)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.get_2dPool(features)

    @property
    def method_slot(self) -> dict[str, Any]:
        return self.model.__dict__.setdefault("_holitom_methods", {})

    def attach(self) -> _NothingAttached:
        return _NothingAttached()  # the llava model keeps its sequence state itself


class _NothingAttached:
    def remove(self) -> None:
        pass
