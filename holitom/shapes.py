"""The published model shapes, in one table: FLOPs accounting, random benchmark models, presets and the
paper's tables all read them from here. Pure Python: no torch.

From the published config.json files (lmms-lab/llava-onevision-qwen2-{0.5b,7b,72b}-ov,
lmms-lab/LLaVA-Video-7B-Qwen2); the vision tower of all of them is SigLIP-so400m-patch14-384 (27×27
patches, the last of its 27 layers dropped). OneVision pools bilinearly to ceil(27/2)² = 196 tokens per
frame and appends one newline (`one_token`); LLaVA-Video averages to floor(27/2)² = 169 and appends a
newline after every row (`grid`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

SIGLIP_SO400M = "google/siglip-so400m-patch14-384"
SIGLIP_GRID = 27  # 384 / 14 patches per side
KINDS = ("onevision", "video")  # one_token + bilinear, grid + average


@dataclass(frozen=True)
class ModelShape:
    """What accounting, benchmarks and presets need of a model.

    num_layers/hidden/ffn/heads/kv_heads/vocab/tied: the Qwen2 LM; tokens_per_frame: pooled tokens N;
    frames: the paper's frame count for this model; kind: "onevision" (one_token layout, bilinear pooling)
    or "video" (grid layout, average pooling); paper_name: the model's name in the paper's tables.
    """

    name: str
    num_layers: int
    hidden: int
    ffn: int
    tokens_per_frame: int
    frames: int
    kind: str = "onevision"
    heads: int | None = None
    kv_heads: int | None = None
    vocab: int | None = None
    tied: bool = False
    hub_id: str | None = None
    paper_name: str | None = None
    head_dim: int | None = None  # None: hidden/heads (the paper's models); Qwen3-4B/32B: 128 ≠ hidden/heads

    def attention_width(self) -> int:
        """The width of q (and of the attention output before o_proj): heads·head_dim; `hidden` when head_dim
        is hidden/heads, as the paper's formula assumes."""
        if self.head_dim is None or self.heads is None:
            return self.hidden
        return self.heads * self.head_dim


SHAPES: dict[str, ModelShape] = {
    "ov-0.5b": ModelShape(
        "ov-0.5b", 24, 896, 4864, 196, 32, "onevision", 14, 2, 151936, True,
        "lmms-lab/llava-onevision-qwen2-0.5b-ov", "LLaVA-OneVision-0.5B",
    ),
    "ov-7b": ModelShape(
        "ov-7b", 28, 3584, 18944, 196, 32, "onevision", 28, 4, 152064, False,
        "lmms-lab/llava-onevision-qwen2-7b-ov", "LLaVA-OneVision-7B",
    ),
    "ov-72b": ModelShape(
        "ov-72b", 80, 8192, 29568, 196, 32, "onevision", 64, 8, 152064, False,
        "lmms-lab/llava-onevision-qwen2-72b-ov-sft", "LLaVA-OneVision-72B",
    ),
    "vid-7b": ModelShape(
        "vid-7b", 28, 3584, 18944, 169, 64, "video", 28, 4, 152064, False,
        "lmms-lab/LLaVA-Video-7B-Qwen2", "LLaVA-Video-7B",
    ),
}  # fmt: skip

# A hub id without a local config.json: the first hint found in its lowercased name.
_NAME_HINTS = (("72b", "ov-72b"), ("video", "vid-7b"), ("0.5b", "ov-0.5b"), ("7b", "ov-7b"))


def shape_from_config(path_or_dict: str | os.PathLike[str] | Mapping[str, Any]) -> ModelShape:
    """ModelShape of a LLaVA-OneVision / LLaVA-Video config (a dict, a config.json file or a model folder).

    Reads the Qwen2 sizes and mm_spatial_pool_mode / mm_spatial_pool_stride (default 2) for the tokens per
    frame on the SigLIP 27×27 grid (a `vision_config` or `mm_vision_tower_config` with image_size and
    patch_size overrides the grid): bilinear → ceil(27/2)² = 196, average/max → floor(27/2)² = 169.
    The name is the published shape it matches (same LM sizes and layout), else the given path or "config".
    A transformers LLaVA-OneVision config (llava-hf: `text_config`, `vision_config`) reads as the OneVision
    layout it implements: bilinear pooling, stride 2, one newline.
    """
    if isinstance(path_or_dict, Mapping):
        cfg, name = dict(path_or_dict), "config"
    else:
        path = os.fspath(path_or_dict)
        file = os.path.join(path, "config.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise ValueError(f"{path!r}: no config.json there")
        with open(file, encoding="utf-8") as fh:
            cfg = json.load(fh)
        name = path
    cfg = _flatten_hf_onevision(cfg)
    missing = [k for k in ("num_hidden_layers", "hidden_size", "intermediate_size") if k not in cfg]
    if missing:
        raise ValueError(f"{name}: config lacks {missing} (not a LLaVA/Qwen2 config?)")
    mode = cfg.get("mm_spatial_pool_mode")
    if mode not in ("bilinear", "average", "max"):
        raise ValueError(f"mm_spatial_pool_mode={mode!r} in config: must be 'bilinear', 'average' or 'max'")
    stride = cfg.get("mm_spatial_pool_stride") or 2
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"mm_spatial_pool_stride={stride!r} in config: must be an integer ≥ 1")
    grid = SIGLIP_GRID
    for key in ("vision_config", "mm_vision_tower_config"):
        vision = cfg.get(key)
        if isinstance(vision, Mapping) and "image_size" in vision and "patch_size" in vision:
            grid = int(vision["image_size"]) // int(vision["patch_size"])
    side = math.ceil(grid / stride) if mode == "bilinear" else grid // stride
    kind = "video" if cfg.get("mm_newline_position") == "grid" else "onevision"
    heads = cfg.get("num_attention_heads")
    shape = ModelShape(
        name=name,
        num_layers=cfg["num_hidden_layers"],
        hidden=cfg["hidden_size"],
        ffn=cfg["intermediate_size"],
        tokens_per_frame=side * side,
        frames=64 if kind == "video" else 32,
        kind=kind,
        heads=heads,
        kv_heads=cfg.get("num_key_value_heads", heads),
        vocab=cfg.get("vocab_size"),
        tied=bool(cfg.get("tie_word_embeddings", False)),
    )
    for field in ("num_layers", "hidden", "ffn", "tokens_per_frame"):
        value = getattr(shape, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field}={value!r} in config: must be an integer ≥ 1")
    published = match_shape(shape)
    if published is not None and name == "config":
        shape = replace(shape, name=published)
    return shape


def _flatten_hf_onevision(cfg: dict[str, Any]) -> dict[str, Any]:
    """A llava-hf config dict in our flat field names (LM sizes at the top, the pooling it hard-codes)."""
    if cfg.get("model_type") != "llava_onevision":
        return cfg
    text = cfg.get("text_config")
    if not isinstance(text, Mapping):
        raise ValueError("llava_onevision config lacks text_config")
    return {
        **text,
        "mm_spatial_pool_mode": "bilinear",
        "mm_spatial_pool_stride": 2,
        "mm_newline_position": "one_token",
        "vision_config": cfg.get("vision_config"),
    }


def language_config(config: Any) -> Any:
    """The language model's part of a model config: transformers' LLaVA-OneVision nests it as `text_config`;
    our llava configs are the Qwen2 config itself."""
    text = getattr(config, "text_config", None)
    return config if text is None else text


def newline_layout(config: Any) -> str:
    """A model config's newline layout (transformers' LLaVA-OneVision: one newline after a video; Qwen-VL: none)."""
    if is_qwen_vl_config(config):
        return "no_token"
    return getattr(config, "mm_newline_position", None) or "one_token"


def is_qwen_vl_config(config: Any) -> bool:
    """Whether a (transformers) config, or its text part, is a Qwen-VL's (model_type qwen2_5_vl[_text], qwen3_vl...)."""
    kind = config.get("model_type") if isinstance(config, Mapping) else getattr(config, "model_type", None)
    return isinstance(kind, str) and kind.startswith(("qwen2_5_vl", "qwen3_vl"))


def match_shape(shape_or_config: ModelShape | Any, layout: str | None = None) -> str | None:
    """The published shape with the same LM sizes and layout as a ModelShape or a model config, if any
    (`layout` overrides the config's newline layout). A Qwen-VL (layout "no_token", a Qwen model_type or a Qwen
    ModelShape) matches only Qwen's own shapes (`QWEN_SHAPES`: e.g. "qwen2.5-vl-7b", never OneVision-7B, whose LM
    has the same sizes), so the paper's presets of the LLaVA models never apply to it."""
    if isinstance(shape_or_config, ModelShape):
        key = (shape_or_config.hidden, shape_or_config.ffn, shape_or_config.num_layers, shape_or_config.kind)
        if shape_or_config.kind not in KINDS:  # a Qwen-VL's (`QwenVLShape.model_shape`)
            return _match_qwen(*key[:3])
    else:
        layout = layout or newline_layout(shape_or_config)
        shape_or_config = language_config(shape_or_config)
        if layout == "no_token" or is_qwen_vl_config(shape_or_config):
            c = shape_or_config
            return _match_qwen(c.hidden_size, c.intermediate_size, c.num_hidden_layers)
        key = (
            shape_or_config.hidden_size,
            shape_or_config.intermediate_size,
            shape_or_config.num_hidden_layers,
            "video" if layout == "grid" else "onevision",
        )
    for name, shape in SHAPES.items():
        if (shape.hidden, shape.ffn, shape.num_layers, shape.kind) == key:
            return name
    return None


def _match_qwen(hidden: int, ffn: int, num_layers: int) -> str | None:
    return next((n for n, s in QWEN_SHAPES.items() if (s.hidden, s.ffn, s.num_layers) == (hidden, ffn, num_layers)), None)


def get_shape(model: str | os.PathLike[str] | Mapping[str, Any] | ModelShape) -> ModelShape:
    """A ModelShape from a published name (SHAPES), a config dict, a config.json path or folder, or a
    ModelShape."""
    if isinstance(model, ModelShape):
        return model
    if isinstance(model, Mapping):
        return shape_from_config(model)
    if isinstance(model, str) and model in SHAPES:
        return SHAPES[model]
    if isinstance(model, (str, os.PathLike)) and os.path.exists(model):
        return shape_from_config(model)
    raise ValueError(f"model={model!r}: unknown shape and not a config.json path; shapes: {', '.join(SHAPES)}")


def guess_shape(name: str) -> str | None:
    """The published shape a hub id most likely is (for paper-style FLOPs of a run with no config at hand)."""
    lowered = str(name).lower()
    return next((shape for hint, shape in _NAME_HINTS if hint in lowered), None)


def shape_of_paper_model(paper_name: str) -> str | None:
    """The shape name of a model as the paper's tables name it ("LLaVA-OneVision-7B" → "ov-7b")."""
    return next((name for name, shape in SHAPES.items() if shape.paper_name == paper_name), None)


# ---------------------------------------------------------------------------------------------- Qwen-VL
# A separate table: a Qwen-VL video's token count is not a constant per frame but follows from its resolution
# (smart_resize) and frame count (two frames per temporal patch). From the published config.json files of
# Qwen/Qwen2.5-VL-{3B,7B,72B}-Instruct; the tower (32 blocks, width 1280, 14-px patches, 2×2 merge, temporal
# patch 2) is the same in all three, and transformers' video processor bounds each frame to
# [128·28², 768·28²] pixels.
QWEN_VIDEO_MIN_PIXELS = 128 * 28 * 28
QWEN_VIDEO_MAX_PIXELS = 768 * 28 * 28
# Qwen3-VL's video processor bounds the whole video, t̄·H'·W' px (t̄ the frame count rounded to temporal patches),
# not each frame; the published checkpoints' video_preprocessor_config.json sets size = [4096, 25165824]
# (= 768·32²·32; transformers' class default, used only without that file, is [128·32², 768·32²]).
QWEN3_VIDEO_MIN_PIXELS = 4096
QWEN3_VIDEO_MAX_PIXELS = 768 * 32 * 32 * 32


@dataclass(frozen=True)
class QwenVLShape:
    """A published Qwen-VL: its LM sizes (as `ModelShape`) and the vision constants that decide token counts.
    min_pixels/max_pixels: the video processor's bounds, per frame or (per_video, Qwen3-VL) over the whole video."""

    name: str
    num_layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    hub_id: str
    patch: int = 14
    merge: int = 2
    temporal: int = 2
    head_dim: int | None = None
    min_pixels: int = QWEN_VIDEO_MIN_PIXELS
    max_pixels: int = QWEN_VIDEO_MAX_PIXELS
    per_video: bool = False
    family: str = "qwen2.5-vl"

    def grid(self, frames: int, height: int, width: int, min_pixels: int | None = None,
             max_pixels: int | None = None) -> tuple[int, int, int]:  # fmt: skip
        """The LM token grid (temporal patches, rows, columns) of a video of `frames` frames of height×width px:
        an odd frame count repeats its last frame; the sides resized by `qwen_smart_resize` (per frame) or
        `qwen3_smart_resize` (per video), within the given bounds (default: the row's)."""
        low = self.min_pixels if min_pixels is None else min_pixels
        high = self.max_pixels if max_pixels is None else max_pixels
        side = self.patch * self.merge
        if self.per_video:
            h, w = qwen3_smart_resize(frames, height, width, side, self.temporal, low, high)
        else:
            h, w = qwen_smart_resize(height, width, side, low, high)
        return -(-frames // self.temporal), h // side, w // side

    def model_shape(self, frames: int, height: int, width: int, **pixels: int) -> ModelShape:
        """A `ModelShape` for the FLOPs accounting of one video: its "frames" are the temporal patches and its
        tokens_per_frame the tokens of one (HoliTom's frame on this model), so `holitom.flops.method_flops` counts
        temporal patches × tokens per patch."""
        t, rows, cols = self.grid(frames, height, width, **pixels)
        return ModelShape(
            self.name, self.num_layers, self.hidden, self.ffn, rows * cols, t, self.family,
            self.heads, self.kv_heads, self.vocab, self.tied, self.hub_id, head_dim=self.head_dim,
        )  # fmt: skip


def qwen_shape_from_config(config: Any, name: str | None = None) -> QwenVLShape:
    """A `QwenVLShape` of a transformers Qwen2.5-VL / Qwen3-VL config (its text part and vision constants); the
    name is the published shape with the same LM sizes, else `name` or "config"."""
    text, vision = language_config(config), config.vision_config
    heads = text.num_attention_heads
    qwen3 = str(getattr(config, "model_type", "")).startswith("qwen3_vl")
    head_dim = getattr(text, "head_dim", None) if qwen3 else None
    bounds = (QWEN3_VIDEO_MIN_PIXELS, QWEN3_VIDEO_MAX_PIXELS) if qwen3 else (QWEN_VIDEO_MIN_PIXELS, QWEN_VIDEO_MAX_PIXELS)
    return QwenVLShape(
        match_shape(text, "no_token") or name or "config", text.num_hidden_layers, text.hidden_size,
        text.intermediate_size, heads, getattr(text, "num_key_value_heads", None) or heads, text.vocab_size,
        bool(getattr(config, "tie_word_embeddings", False)), name or "", vision.patch_size, vision.spatial_merge_size,
        vision.temporal_patch_size, head_dim, *bounds, qwen3, "qwen3-vl" if qwen3 else "qwen2.5-vl",
    )  # fmt: skip


QWEN_SHAPES: dict[str, QwenVLShape] = {
    "qwen2.5-vl-3b": QwenVLShape("qwen2.5-vl-3b", 36, 2048, 11008, 16, 2, 151936, True, "Qwen/Qwen2.5-VL-3B-Instruct"),
    "qwen2.5-vl-7b": QwenVLShape("qwen2.5-vl-7b", 28, 3584, 18944, 28, 4, 152064, False, "Qwen/Qwen2.5-VL-7B-Instruct"),
    "qwen2.5-vl-72b": QwenVLShape("qwen2.5-vl-72b", 80, 8192, 29568, 64, 8, 152064, False, "Qwen/Qwen2.5-VL-72B-Instruct"),
    # Qwen3-VL (dense): text_config of the published config.json of Qwen/Qwen3-VL-{2B,4B,8B,32B}-Instruct (the LM
    # sizes of Qwen3-1.7B/4B/8B/32B; head_dim 128 in all four, so q/o are heads·128 wide, not `hidden`, on 4B and
    # 32B); vision: 16-px patches, 2×2 merge, temporal patch 2 (depth 24 width 1024 on 2B/4B, 27 × 1152 on 8B/32B),
    # the video bounded as a whole (QWEN3_VIDEO_*_PIXELS).
    **{
        name: QwenVLShape(name, layers, hidden, ffn, heads, 8, 151936, tied, hub, 16, 2, 2, 128,
                          QWEN3_VIDEO_MIN_PIXELS, QWEN3_VIDEO_MAX_PIXELS, True, "qwen3-vl")
        for name, layers, hidden, ffn, heads, tied, hub in (
            ("qwen3-vl-2b", 28, 2048, 6144, 16, True, "Qwen/Qwen3-VL-2B-Instruct"),
            ("qwen3-vl-4b", 36, 2560, 9728, 32, True, "Qwen/Qwen3-VL-4B-Instruct"),
            ("qwen3-vl-8b", 36, 4096, 12288, 32, False, "Qwen/Qwen3-VL-8B-Instruct"),
            ("qwen3-vl-32b", 64, 5120, 25600, 64, False, "Qwen/Qwen3-VL-32B-Instruct"),
        )
    },
}  # fmt: skip


def qwen_smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 28 * 28 * 1280
) -> tuple[int, int]:
    """Qwen's resize rule: both sides multiples of `factor` (patch × merge), the area within [min_pixels,
    max_pixels], the aspect ratio kept as closely as rounding allows. (height, width) → (H', W')."""
    if min(height, width) < 1 or max(height, width) / min(height, width) > 200:
        raise ValueError(f"a {height}×{width} frame cannot be resized: sides must be ≥ 1 px with aspect ratio ≤ 200")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen3_smart_resize(
    frames: int, height: int, width: int, factor: int = 32, temporal: int = 2,
    min_pixels: int = QWEN3_VIDEO_MIN_PIXELS, max_pixels: int = QWEN3_VIDEO_MAX_PIXELS,
) -> tuple[int, int]:  # fmt: skip
    """Qwen3-VL's video resize rule (its video processor's): sides below `factor` scaled up first, then both sides
    multiples of `factor` with t̄·H'·W' within [min_pixels, max_pixels], t̄ = round(frames/temporal)·temporal
    (Python's rounding, as the processor's). (frames, height, width) → (H', W')."""
    if frames < temporal:
        raise ValueError(f"a {frames}-frame video is shorter than one temporal patch ({temporal} frames)")
    if min(height, width) < 1:
        raise ValueError(f"a {height}×{width} frame cannot be resized: sides must be ≥ 1 px")
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"a {height}×{width} frame cannot be resized: aspect ratio must be ≤ 200")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    t_bar = round(frames / temporal) * temporal
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt(frames * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (frames * height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar
