"""transformers' Qwen-VL models for the front ends (`holitom generate`, the lmms-eval plugin): which checkpoints are
Qwen2.5-VL (config.json `model_type: "qwen2_5_vl"`) or dense Qwen3-VL (`"qwen3_vl"`), loading one, and a video
prompt in the layout Qwen's processor produces. The two families differ only in the data of `QwenFamily`.

transformers' video processors need torchvision (not installed here), so frames go through our own steps
(`holitom.hosts.qwen_vision.preprocess_video`: smart_resize, rescale, normalise, patchify) with the checkpoint's
pixel bounds, read as transformers reads them: video_preprocessor_config.json, else the image processor's
preprocessor_config.json, else the video processor's defaults. Qwen2.5-VL bounds each frame (`min_pixels` /
`max_pixels` or `size`; default 128·28² .. 768·28² px) and its prompt repeats `<|video_pad|>` t·h·w/4 times, with
`second_per_grid_ts` = 2 / the sampled frame rate (the temporal M-RoPE ids depend on it). Qwen3-VL bounds the
whole video (`size` only; t̄·H'·W', `holitom.shapes.qwen3_smart_resize`), normalises with mean = std = 0.5, and
writes per temporal patch `<t seconds><|vision_start|>` + h·w/4 `<|video_pad|>` + `<|vision_end|>` in place of the
chat template's `<|vision_start|><|video_pad|><|vision_end|>`, t the mean time of the patch's two frames (their
indices in the source video / its frame rate, 24 fps when unknown, as the processor assumes), one decimal.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from holitom.shapes import (
    QWEN3_VIDEO_MAX_PIXELS,
    QWEN3_VIDEO_MIN_PIXELS,
    QWEN_VIDEO_MAX_PIXELS,
    QWEN_VIDEO_MIN_PIXELS,
)

VIDEO_PAD = "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
UNKNOWN_FPS = 24.0  # what transformers' Qwen3-VL processor assumes for a video without a frame rate


@dataclass(frozen=True)
class QwenFamily:
    """What differs between the Qwen-VL families on the way in."""

    label: str
    model_type: str
    config_class: str
    model_class: str
    min_pixels: int  # the video processor's default bounds
    max_pixels: int
    per_video: bool  # the bounds hold for t̄·H'·W' (Qwen3-VL), not per frame
    legacy_pixel_keys: bool  # `min_pixels` / `max_pixels` in the processor files count (Qwen2.5-VL's processor)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    timestamps: bool  # one `<t seconds>` + vision start/end per temporal patch (Qwen3-VL)


QWEN2_5_VL = QwenFamily(
    "Qwen2.5-VL", "qwen2_5_vl", "Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration",
    QWEN_VIDEO_MIN_PIXELS, QWEN_VIDEO_MAX_PIXELS, False, True,
    (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711), False,
)  # fmt: skip
QWEN3_VL = QwenFamily(
    "Qwen3-VL", "qwen3_vl", "Qwen3VLConfig", "Qwen3VLForConditionalGeneration",
    QWEN3_VIDEO_MIN_PIXELS, QWEN3_VIDEO_MAX_PIXELS, True, False, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), True,
)  # fmt: skip
FAMILIES = {family.model_type: family for family in (QWEN2_5_VL, QWEN3_VL)}


def family_of(config: Any) -> QwenFamily:
    """The family of a loaded Qwen-VL config."""
    kind = getattr(config, "model_type", None)
    if kind not in FAMILIES:
        raise ValueError(f"model_type {kind!r} is not a Qwen-VL front-end family ({', '.join(FAMILIES)})")
    return FAMILIES[kind]


def read_config(model_path: str, families: tuple[str, ...] = tuple(FAMILIES), **hub_kwargs: Any) -> Any:
    """The transformers config of a Qwen-VL checkpoint of one of `families` (model_types), without its weights;
    None for a checkpoint of another kind. Qwen3-VL-MoE is refused in one line."""
    import transformers
    from transformers import PretrainedConfig

    from llava.model.builder import check_checkpoint_dir

    if os.path.isdir(model_path) or model_path.startswith((".", "/", "~")):
        check_checkpoint_dir(os.path.expanduser(model_path))
    try:
        config_dict, _ = PretrainedConfig.get_config_dict(model_path, **hub_kwargs)
    except OSError as exc:
        raise FileNotFoundError(f"cannot load checkpoint {model_path!r}: {exc}") from exc
    kind = config_dict.get("model_type")
    if kind == "qwen3_vl_moe":
        raise ValueError(f"{model_path!r} is a Qwen3-VL-MoE checkpoint; only the dense Qwen3-VL models are supported")
    if kind not in families:
        return None
    return getattr(transformers, FAMILIES[kind].config_class).from_dict(config_dict)


def load_model(
    model_path: str,
    config: Any = None,
    device_map: Any = None,
    torch_dtype: Any = "float16",
    attn_implementation: str | None = "sdpa",
    **hub_kwargs: Any,
) -> tuple[Any, Any]:
    """(tokenizer, model) of a Qwen-VL checkpoint (local directory or hub id), its family's transformers class."""
    import transformers
    from transformers import AutoTokenizer

    from llava.model.builder import from_pretrained_kwargs

    load_kwargs = from_pretrained_kwargs(model_path, torch_dtype, attn_implementation, device_map)
    config = config if config is not None else read_config(model_path, **hub_kwargs)
    if config is None:
        raise ValueError(f"{model_path!r} is not a Qwen-VL checkpoint (model_type {' or '.join(FAMILIES)})")
    family = family_of(config)
    model_class = getattr(transformers, family.model_class)
    model = model_class.from_pretrained(model_path, config=config, **load_kwargs, **hub_kwargs)
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


def pixel_bounds(model_path: str, family: QwenFamily = QWEN2_5_VL, **hub_kwargs: Any) -> tuple[int, int]:
    """(min_pixels, max_pixels) of a video (per frame, or per video for Qwen3-VL), as transformers' video processor
    would read them."""
    for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
        values = _json_file(model_path, name, **hub_kwargs)
        if values is None:
            continue
        size = values.get("size") or {}
        low = size.get("shortest_edge", family.min_pixels)
        high = size.get("longest_edge", family.max_pixels)
        if family.legacy_pixel_keys:
            low, high = values.get("min_pixels", low), values.get("max_pixels", high)
        if not (isinstance(low, int) and isinstance(high, int) and 0 < low <= high):
            raise ValueError(
                f"{model_path!r} {name}: min_pixels={low!r}, max_pixels={high!r} must be 0 < min ≤ max"
            )
        return low, high
    return family.min_pixels, family.max_pixels


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


def patch_seconds(frame_seconds: list[float], temporal: int) -> list[float]:
    """Each temporal patch's time: the mean of its first and last frame's (the last frame repeated to fill it)."""
    times = list(frame_seconds)
    times += times[-1:] * (-len(times) % temporal)
    return [(times[i] + times[i + temporal - 1]) / 2 for i in range(0, len(times), temporal)]


def timestamped_video(per_patch: int, seconds: list[float]) -> str:
    """Qwen3-VL's text of one video: per temporal patch `<t seconds><|vision_start|>`, its placeholders,
    `<|vision_end|>`."""
    return "".join(f"<{t:.1f} seconds>{VISION_START}{VIDEO_PAD * per_patch}{VISION_END}" for t in seconds)


def _resized(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) at height×width, resampled as `preprocess_video` resamples (bicubic, antialiased,
    rounded back to 0..255): Qwen3-VL's size depends on the frame count, which preprocess_video's per-frame rule
    does not see, so its frames arrive at their size and pass its resize untouched."""
    if tuple(video.shape[1:3]) == (height, width):
        return video
    x = video.permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def video_inputs(
    tokenizer: Any,
    config: Any,
    prompt: str,
    frames: np.ndarray | torch.Tensor,
    pixels: tuple[int, int],
    sampled_fps: float | None = None,
    frame_seconds: list[float] | None = None,
) -> dict[str, torch.Tensor]:
    """A prompt with one `<|video_pad|>` and a video's uint8 frames (T, H, W, 3) → the model's inputs as Qwen's
    processor lays them out: input_ids (Qwen2.5-VL: t·h·w/4 placeholders; Qwen3-VL: per temporal patch its
    timestamp from `frame_seconds`, each frame's time in the source video, and h·w/4 placeholders), attention_mask,
    mm_token_type_ids, pixel_values_videos, video_grid_thw and (Qwen2.5-VL, with the frame rate of the sampled
    frames) second_per_grid_ts."""
    from holitom.hosts.qwen2_5_vl import token_types
    from holitom.hosts.qwen_vision import preprocess_video
    from holitom.shapes import qwen3_smart_resize

    family = family_of(config)
    if prompt.count(VIDEO_PAD) != 1:
        raise ValueError(
            f"the prompt has {prompt.count(VIDEO_PAD)} {VIDEO_PAD} token(s); one video per prompt"
        )
    vision = config.vision_config
    patch, merge, temporal = vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
    video = torch.as_tensor(np.asarray(frames))
    low, high = pixels
    if family.per_video:
        if video.dim() != 4 or video.shape[-1] != 3:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {tuple(video.shape)}")
        height, width = qwen3_smart_resize(video.shape[0], video.shape[1], video.shape[2], patch * merge, temporal, low, high)
        video = _resized(video, height, width)
        low = high = height * width  # the frames are at their size: preprocess_video keeps it
    values, grid = preprocess_video(video, low, high, patch, merge, temporal, family.mean, family.std)
    per_patch = grid[1] * grid[2] // merge**2
    if family.timestamps:
        seconds = frame_seconds if frame_seconds is not None else [i / UNKNOWN_FPS for i in range(video.shape[0])]
        if len(seconds) != video.shape[0]:
            raise ValueError(f"{len(seconds)} frame times for {video.shape[0]} frames")
        wrapper = VISION_START + VIDEO_PAD + VISION_END
        text = timestamped_video(per_patch, patch_seconds(seconds, temporal))
        prompt = prompt.replace(wrapper, text) if wrapper in prompt else prompt.replace(VIDEO_PAD, text)
    else:
        prompt = prompt.replace(VIDEO_PAD, VIDEO_PAD * (grid[0] * per_patch))
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "mm_token_type_ids": token_types(ids, config),
        "pixel_values_videos": values,
        "video_grid_thw": torch.tensor([grid]),
    }
    if sampled_fps and not family.timestamps:
        inputs["second_per_grid_ts"] = torch.tensor([temporal / sampled_fps])
    return inputs


def sampled_fps(info: dict[str, Any], frames: int) -> float | None:
    """The frame rate of `frames` frames sampled over a video (`llava.video.load_video`'s info); None if unknown."""
    duration = info.get("duration")
    return frames / duration if duration else None


def frame_seconds(info: dict[str, Any]) -> list[float] | None:
    """Each sampled frame's time in the source video (`llava.video.load_video`'s info: indices / fps); None when
    the indices are not known. A video without a frame rate counts 24 fps, as transformers' processor does."""
    indices = info.get("indices")
    if indices is None:
        return None
    fps = info.get("fps") or UNKNOWN_FPS
    return [int(i) / fps for i in indices]
