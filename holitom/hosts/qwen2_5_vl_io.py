"""Qwen2.5-VL's front-end helpers under their first name: `holitom.hosts.qwen_vl_io` (the Qwen-VL families as data)
bound to Qwen2.5-VL where a family is chosen by the caller."""

from __future__ import annotations

from typing import Any

from holitom.hosts.qwen_vl_io import (
    QWEN2_5_VL,
    VIDEO_PAD,
    chat_template,
    load_model,
    read_config,
    sampled_fps,
    video_inputs,
    video_prompt,
)
from holitom.hosts.qwen_vl_io import pixel_bounds as _pixel_bounds

MODEL_TYPE = QWEN2_5_VL.model_type
__all__ = ["MODEL_TYPE", "VIDEO_PAD", "chat_template", "load_model", "pixel_bounds", "read_qwen_config",
           "sampled_fps", "video_inputs", "video_prompt"]  # fmt: skip


def read_qwen_config(model_path: str, **hub_kwargs: Any) -> Any:
    """The `Qwen2_5_VLConfig` of a Qwen2.5-VL checkpoint, without its weights; None for a checkpoint of another kind."""
    return read_config(model_path, (MODEL_TYPE,), **hub_kwargs)


def pixel_bounds(model_path: str, **hub_kwargs: Any) -> tuple[int, int]:
    """(min_pixels, max_pixels) per video frame of a Qwen2.5-VL checkpoint, as transformers' video processor reads them."""
    return _pixel_bounds(model_path, QWEN2_5_VL, **hub_kwargs)
