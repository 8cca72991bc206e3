"""transformers' Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`) for the front ends (`holitom generate`, the
lmms-eval plugin): which checkpoints are Qwen2.5-VL (config.json `model_type: "qwen2_5_vl"`), loading one, and a
video prompt in the layout Qwen's processor produces.

transformers' video processor needs torchvision (not installed here), so frames go through our own steps
(`holitom.hosts.qwen_vision.preprocess_video`: smart_resize, rescale, normalise, patchify) with the checkpoint's
pixel bounds, read as transformers reads them: video_preprocessor_config.json, else the image processor's
preprocessor_config.json (`min_pixels`/`max_pixels` become the video processor's size), else the video
processor's defaults (128·28² .. 768·28² px per frame). The prompt is the checkpoint's chat template with one
video item, whose `<|video_pad|>` is repeated t·h·w/4 times; `second_per_grid_ts` = 2 / the sampled frame rate,
as the processor computes it (the temporal M-RoPE ids depend on it).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch

from holitom.shapes import QWEN_VIDEO_MAX_PIXELS, QWEN_VIDEO_MIN_PIXELS

MODEL_TYPE = "qwen2_5_vl"
VIDEO_PAD = "<|video_pad|>"


def read_qwen_config(model_path: str, **hub_kwargs: Any) -> Any:
    """The `Qwen2_5_VLConfig` of a Qwen2.5-VL checkpoint (model_type "qwen2_5_vl"), without its weights; None for a
    checkpoint of another kind."""
    from transformers import Qwen2_5_VLConfig

    from llava.model.builder import check_checkpoint_dir

    if os.path.isdir(model_path) or model_path.startswith((".", "/", "~")):
        check_checkpoint_dir(os.path.expanduser(model_path))
    try:
        config_dict, _ = Qwen2_5_VLConfig.get_config_dict(model_path, **hub_kwargs)
    except OSError as exc:
        raise FileNotFoundError(f"cannot load checkpoint {model_path!r}: {exc}") from exc
    if config_dict.get("model_type") != MODEL_TYPE:
        return None
    return Qwen2_5_VLConfig.from_dict(config_dict)


def load_model(
    model_path: str,
    config: Any = None,
    device_map: Any = None,
    torch_dtype: Any = "float16",
    attn_implementation: str | None = "sdpa",
    **hub_kwargs: Any,
) -> tuple[Any, Any]:
    """(tokenizer, model) of a Qwen2.5-VL checkpoint (local directory or hub id)."""
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    from llava.model.builder import check_attn_implementation, check_weight_shards, resolve_dtype

    check_attn_implementation(attn_implementation)
    if os.path.isdir(os.path.expanduser(model_path)):
        check_weight_shards(os.path.expanduser(model_path))
    config = config if config is not None else read_qwen_config(model_path, **hub_kwargs)
    if config is None:
        raise ValueError(f"{model_path!r} is not a Qwen2.5-VL checkpoint (model_type {MODEL_TYPE!r})")
    load_kwargs: dict[str, Any] = {"dtype": resolve_dtype(torch_dtype)}
    if attn_implementation is not None:
        load_kwargs["attn_implementation"] = attn_implementation
    if device_map == "auto" and not torch.cuda.is_available():
        device_map = None
    if device_map is not None:
        load_kwargs["device_map"] = device_map
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        model_path, config=config, **load_kwargs, **hub_kwargs
    )
    tokenizer = AutoTokenizer.from_pretrained(model_path, **hub_kwargs)
    if tokenizer.convert_tokens_to_ids(VIDEO_PAD) != config.video_token_id:
        raise ValueError(
            f"{model_path!r}: the tokenizer's {VIDEO_PAD} id is {tokenizer.convert_tokens_to_ids(VIDEO_PAD)}, the "
            f"config says {config.video_token_id}"
        )
    return tokenizer, model.eval()


def _json_file(model_path: str, name: str, **hub_kwargs: Any) -> dict[str, Any] | None:
    from transformers.utils import cached_file

    path = cached_file(model_path, name, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    if path is None:
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def pixel_bounds(model_path: str, **hub_kwargs: Any) -> tuple[int, int]:
    """(min_pixels, max_pixels) per video frame, as transformers' video processor would read them."""
    for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
        values = _json_file(model_path, name, **hub_kwargs)
        if values is None:
            continue
        size = values.get("size") or {}
        low = values.get("min_pixels", size.get("shortest_edge", QWEN_VIDEO_MIN_PIXELS))
        high = values.get("max_pixels", size.get("longest_edge", QWEN_VIDEO_MAX_PIXELS))
        if not (isinstance(low, int) and isinstance(high, int) and 0 < low <= high):
            raise ValueError(
                f"{model_path!r} {name}: min_pixels={low!r}, max_pixels={high!r} must be 0 < min ≤ max"
            )
        return low, high
    return QWEN_VIDEO_MIN_PIXELS, QWEN_VIDEO_MAX_PIXELS


def chat_template(model_path: str, tokenizer: Any, **hub_kwargs: Any) -> str:
    """The checkpoint's chat template: chat_template.json (Qwen's files), else the tokenizer's."""
    values = _json_file(model_path, "chat_template.json", **hub_kwargs)
    template = (values or {}).get("chat_template") or getattr(tokenizer, "chat_template", None)
    if not template:
        raise ValueError(f"{model_path!r} has no chat template (chat_template.json or the tokenizer's)")
    return template


def video_prompt(tokenizer: Any, template: str, question: str, video: bool = True) -> str:
    """One user turn with a video (one `<|video_pad|>`; none with `video=False`) then the question, and the
    assistant's turn opened."""
    content = [{"type": "video"}] if video else []
    messages = [{"role": "user", "content": [*content, {"type": "text", "text": question}]}]
    prompt = tokenizer.apply_chat_template(
        messages, chat_template=template, add_generation_prompt=True, tokenize=False
    )
    if prompt.count(VIDEO_PAD) != int(video):
        raise ValueError(f"the chat template rendered {prompt.count(VIDEO_PAD)} {VIDEO_PAD} for {int(video)} video(s)")
    return prompt


def video_inputs(
    tokenizer: Any,
    config: Any,
    prompt: str,
    frames: np.ndarray | torch.Tensor,
    pixels: tuple[int, int],
    sampled_fps: float | None = None,
) -> dict[str, torch.Tensor]:
    """A prompt with one `<|video_pad|>` and a video's uint8 frames (T, H, W, 3) → the model's inputs as Qwen's
    processor lays them out: input_ids with t·h·w/4 placeholders, attention_mask, mm_token_type_ids,
    pixel_values_videos, video_grid_thw and (with the frame rate of the sampled frames) second_per_grid_ts."""
    from holitom.hosts.qwen2_5_vl import token_types
    from holitom.hosts.qwen_vision import preprocess_video

    if prompt.count(VIDEO_PAD) != 1:
        raise ValueError(
            f"the prompt has {prompt.count(VIDEO_PAD)} {VIDEO_PAD} token(s); one video per prompt"
        )
    vision = config.vision_config
    video = torch.as_tensor(np.asarray(frames))
    values, grid = preprocess_video(
        video, pixels[0], pixels[1], vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
    )
    count = grid[0] * grid[1] * grid[2] // vision.spatial_merge_size**2
    ids = tokenizer(
        prompt.replace(VIDEO_PAD, VIDEO_PAD * count), return_tensors="pt", add_special_tokens=False
    )["input_ids"]
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "mm_token_type_ids": token_types(ids, config),
        "pixel_values_videos": values,
        "video_grid_thw": torch.tensor([grid]),
    }
    if sampled_fps:
        inputs["second_per_grid_ts"] = torch.tensor([vision.temporal_patch_size / sampled_fps])
    return inputs


def sampled_fps(info: dict[str, Any], frames: int) -> float | None:
    """The frame rate of `frames` frames sampled over a video (`llava.video.load_video`'s info); None if unknown."""
    duration = info.get("duration")
    return frames / duration if duration else None
