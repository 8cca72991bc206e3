"""`--model_args` of the `holitom_llava` lmms-eval model: the valid names, their types, and validation.

Pure Python (no torch): the sweep runner validates every configured run with `parse_model_args` before
launching anything, and the model calls the same function, so a typo fails in seconds with a message
listing the valid names instead of an hour into a sweep.

lmms-eval hands model args over already converted by its own parser ("0.25" → 0.25, "18" → 18,
"true" → True, anything else stays a string), so values arrive as int/float/bool/str.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from holitom import methods

POOL_MODES = ("bilinear", "average", "max")
NEWLINE_POSITIONS = ("one_token", "grid", "frame", "no_token")
DTYPES = ("float16", "bfloat16", "float32", "auto")
VIDEO_BACKENDS = ("auto", "decord", "pyav")
NONE_WORDS = ("none", "null", "off", "")

DEFAULT_PRETRAINED = "lmms-lab/llava-onevision-qwen2-7b-ov"

# The method registry decides which model args configure which method (passed on to holitom.apply_method).
METHODS = methods.METHODS
METHOD_ARGS: dict[str, tuple[str, ...]] = {m.name: tuple(s.name for s in m.settings) for m in methods.all_methods()}
METHOD_ARG_NAMES = tuple(sorted(methods.all_settings()))

# Everything else the model understands (method-independent), with its meaning.
GENERAL_ARGS: dict[str, str] = {
    "pretrained": f"checkpoint directory or hub id (default {DEFAULT_PRETRAINED})",
    "method": f"token reduction: {', '.join(METHODS)} (default vanilla)",
    "max_frames_num": "frames sampled uniformly per video (default 32)",
    "video_fps": "sample at this many frames per second instead, at most max_frames_num (lmms-eval's llava_vid "
    "rule; the authors' LLaVA-Video runs used 1); default none: uniform",
    "conv_template": "llava conversation template (default qwen_1_5)",
    "mm_spatial_pool_mode": f"override the checkpoint's pooling: {', '.join(POOL_MODES)}",
    "mm_spatial_pool_stride": "override the checkpoint's pooling stride",
    "mm_newline_position": f"override the newline layout: {', '.join(NEWLINE_POSITIONS)}",
    "device": "cpu, cuda, cuda:N (default: cuda if available; per-rank GPU under accelerate launch)",
    "device_map": "'auto' shards one model over all visible GPUs (single process, e.g. 72B)",
    "torch_dtype": f"{', '.join(DTYPES)} (default float16 on GPU, float32 on CPU)",
    "attn_implementation": "sdpa (default), eager or flash_attention_2",
    "video_backend": f"video decoder: {', '.join(VIDEO_BACKENDS)} (default auto = decord, else PyAV)",
    "video_decode_backend": "alias of video_backend (lmms-eval's stock name)",
    "stats_dir": "folder for per-sample visual-token / FLOPs records (default: $HOLITOM_STATS_DIR, else none)",
    "model_name": "accepted for compatibility with lmms-eval's llava wrappers; unused",
    "batch_size": "must be 1",
    "max_batch_size": "ignored (lmms-eval passes it to every model)",
}
VALID_ARGS = tuple(sorted(set(GENERAL_ARGS) | set(METHOD_ARG_NAMES)))

_INT_ARGS = {"max_frames_num", "mm_spatial_pool_stride"}


@dataclass(frozen=True)
class PluginSettings:
    """Validated model args. `method_settings` go to `apply_method(model, method, **method_settings)`;
    `overwrite_config` to `load_pretrained_model(..., overwrite_config=...)`."""

    pretrained: str = DEFAULT_PRETRAINED
    method: str = "vanilla"
    method_settings: dict[str, Any] = field(default_factory=dict)
    max_frames_num: int = 32
    conv_template: str = "qwen_1_5"
    overwrite_config: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    device_map: str | None = None
    torch_dtype: str | None = None
    attn_implementation: str = "sdpa"
    video_backend: str = "auto"
    video_fps: float | None = None
    stats_dir: str | None = None

    def method_config(self) -> Any:
        """The method's config from the given settings and its defaults (before the model's presets)."""
        return methods.get(self.method).make_config(self.method_settings)


def describe_valid_args() -> str:
    """One line per valid model arg, for error messages and docs."""
    lines = [f"  {name}: {text}" for name, text in GENERAL_ARGS.items()]
    for method, names in METHOD_ARGS.items():
        if names:
            lines.append(f"  {method}: {', '.join(names)}")
    return "\n".join(lines)


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS)


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r}: must be an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    if isinstance(value, int):
        return value
    raise ValueError(f"{name}={value!r}: must be an integer")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}={value!r}: valid values are {', '.join(choices)}")
    return value


def _check_method_settings(method: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Typed method settings (values as lmms-eval passes them), validated by the method's config."""
    spec = methods.get(method)
    try:
        typed = {name: spec.setting(name).parse(value) for name, value in settings.items()}
        spec.make_config(typed)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        if spec.config_class is not None:
            text = text.replace(f"{spec.config_class.__name__}.", "")
        raise ValueError(f"method {method}: {text}") from None
    return typed


def parse_model_args(args: Mapping[str, Any]) -> PluginSettings:
    """Validate `holitom_llava` model args (as lmms-eval passes them) into PluginSettings.

    Raises ValueError naming the bad argument: unknown names (listing the valid ones), an unknown
    method (listing the methods), a method arg given to a method that does not use it, bad values.
    """
    args = dict(args)
    unknown = sorted(set(args) - set(VALID_ARGS))
    if unknown:
        raise ValueError(
            f"unknown model_args {unknown} for holitom_llava; valid model_args:\n{describe_valid_args()}"
        )
    method = args.pop("method", "vanilla")
    if method not in METHODS:
        raise ValueError(f"method={method!r}: unknown method; valid methods: {', '.join(METHODS)}")

    given = {name: args.pop(name) for name in METHOD_ARG_NAMES if name in args}
    foreign = sorted(set(given) - set(METHOD_ARGS[method]))
    if foreign:
        takes = ", ".join(METHOD_ARGS[method]) or "no settings"
        raise ValueError(f"model_args {foreign} do not apply to method {method!r} (it takes: {takes})")
    method_settings = _check_method_settings(method, given)

    batch_size = args.pop("batch_size", 1)
    if _is_none(batch_size) or str(batch_size).strip() != "1":
        raise ValueError(
            f"batch_size={batch_size!r}: holitom_llava evaluates one sample at a time; use --batch_size 1"
        )
    args.pop("max_batch_size", None)
    args.pop("model_name", None)

    frames = _as_int("max_frames_num", args.pop("max_frames_num", 32))
    if frames < 1:
        raise ValueError(f"max_frames_num={frames!r}: must be an integer ≥ 1")
    overwrite: dict[str, Any] = {}
    for name, choices in (("mm_spatial_pool_mode", POOL_MODES), ("mm_newline_position", NEWLINE_POSITIONS)):
        value = args.pop(name, None)
        if not _is_none(value):
            overwrite[name] = _choice(name, value, choices)
    stride = args.pop("mm_spatial_pool_stride", None)
    if not _is_none(stride):
        stride = _as_int("mm_spatial_pool_stride", stride)
        if stride < 1:
            raise ValueError(f"mm_spatial_pool_stride={stride!r}: must be an integer ≥ 1")
        overwrite["mm_spatial_pool_stride"] = stride

    video_fps = args.pop("video_fps", None)
    if not _is_none(video_fps):
        try:
            video_fps = float(video_fps)
        except (TypeError, ValueError):
            raise ValueError(f"video_fps={video_fps!r}: must be a positive number or none") from None
        if not video_fps > 0:
            raise ValueError(f"video_fps={video_fps!r}: must be a positive number or none")
    else:
        video_fps = None

    backend = args.pop("video_backend", None)
    alias = args.pop("video_decode_backend", None)
    if backend is not None and alias is not None and backend != alias:
        raise ValueError(f"video_backend={backend!r} and video_decode_backend={alias!r} disagree; give one")
    backend = _choice("video_backend", backend or alias or "auto", VIDEO_BACKENDS)

    dtype = args.pop("torch_dtype", None)
    dtype = None if _is_none(dtype) else _choice("torch_dtype", dtype, DTYPES)

    def text(name: str, default: str | None = None) -> str | None:
        value = args.pop(name, None)
        if _is_none(value):
            return default
        if not isinstance(value, str):
            raise ValueError(f"{name}={value!r}: must be a string")
        return value

    settings = PluginSettings(
        pretrained=text("pretrained", DEFAULT_PRETRAINED),
        method=method,
        method_settings=method_settings,
        max_frames_num=frames,
        conv_template=text("conv_template", "qwen_1_5"),
        overwrite_config=overwrite,
        device=text("device"),
        device_map=text("device_map"),
        torch_dtype=dtype,
        attn_implementation=text("attn_implementation", "sdpa"),
        video_backend=backend,
        video_fps=video_fps,
        stats_dir=text("stats_dir"),
    )
    assert not args, f"unhandled model_args {sorted(args)}"  # every VALID_ARGS name is consumed above
    return settings


def format_model_args(args: Mapping[str, Any]) -> str:
    """`k=v,k=v` for lmms-eval's --model_args; None → "none", lists → "a/b/c". Values cannot hold ',' or '='."""
    parts = []
    for name, value in args.items():
        if value is None:
            text = "none"
        elif isinstance(value, float):
            text = repr(value)
        elif isinstance(value, (list, tuple)):
            text = "/".join(repr(v) if isinstance(v, float) else str(v) for v in value)
        else:
            text = str(value)
        if "," in text or "=" in text or "," in str(name) or "=" in str(name):
            raise ValueError(f"model arg {name}={text!r}: names and values cannot contain ',' or '='")
        parts.append(f"{name}={text}")
    return ",".join(parts)
