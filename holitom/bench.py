"""`holitom bench`: time-to-first-token and decode speed, vanilla vs token-reduction methods, in one process.

One model instance is built once (random weights at a named real shape, or a checkpoint) and every method is
installed on it in turn with `apply_method`, round-robin: each round runs every method once, so slow drifts
(clocks, caches) hit all methods alike. The first `warmup` rounds are discarded; the reported numbers are
medians over the `repeats` timed rounds.

One run = one multimodal prefill + a fixed number of greedy decode steps on synthetic preprocessed frames
(no video decoding inside the timed part). Time marks (after `torch.cuda.synchronize` on CUDA) split it:

    start ─ vision tower (SigLIP, projector, 2×2 pooling) ─ compressor call ─ LLM prefill ─ first token
            └ the attention probe runs inside the tower: it is timed by hooks around it and moved to
              "compression", where it belongs (vanilla has no probe)

- compression: the method's `video_token_compressor` call (vanilla: its newline layout) + the probe.
- prefill: splicing into the prompt and the LM forward over it, inner-LLM merging (HoliTom, FastV) included.
- TTFT = vision + compression + prefill; decode tok/s = decode steps / their time (KV cache, greedy,
  no early stop).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from holitom.config import PRESETS, HoliTomConfig, paper_tau
from holitom.flops import ModelShape, actual_prefill_flops, get_shape, method_flops

SIGLIP_SO400M = "google/siglip-so400m-patch14-384"
INIT_STD = 0.02  # Qwen2 / SigLIP initializer_range
PROMPT_TEXT_BEFORE = 14  # qwen_1_5 template tokens before <image> ("<|im_start|>system\nYou are ... user\n")
PROMPT_TEXT_AFTER = 24  # "\n" + a ~18-token question + "<|im_end|>\n<|im_start|>assistant\n"
QUESTION = "Describe what happens in this video in detail."


@dataclass(frozen=True)
class LMShape:
    """Qwen2 LM sizes of a published LLaVA model (the vision tower is SigLIP-so400m for all of them)."""

    hidden: int
    ffn: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    kind: str  # holitom.tiny kind: "onevision" (one_token, bilinear) or "video" (grid, average)


# From the published config.json files (lmms-lab/llava-onevision-qwen2-{0.5b,7b,72b}-ov, LLaVA-Video-7B-Qwen2).
SHAPES: dict[str, LMShape] = {
    "ov-0.5b": LMShape(896, 4864, 24, 14, 2, 151936, True, "onevision"),
    "ov-7b": LMShape(3584, 18944, 28, 28, 4, 152064, False, "onevision"),
    "vid-7b": LMShape(3584, 18944, 28, 28, 4, 152064, False, "video"),
    "ov-72b": LMShape(8192, 29568, 80, 64, 8, 152064, False, "onevision"),
}
SHAPE_CHOICES = ("tiny", *SHAPES)

DEFAULT_METHODS = "vanilla,holitom@0.10,holitom@0.10:K=none,visionzip@0.10,fastv"
DEFAULT_METHODS_GRID = "vanilla,holitom@0.10,holitom@0.10:K=none,fastv"  # VisionZip has no grid layout
# CPU: ov-0.5b widths at reduced depth and frames: `holitom bench --device cpu` takes ~1.5–2 min on 2 cores.
CPU_DEFAULTS: dict[str, Any] = {
    "shape": "ov-0.5b",
    "layers": 6,
    "vision_layers": 1,
    "frames": 8,
    "repeats": 3,
    "warmup": 1,
    "decode_tokens": 4,
}
GPU_DEFAULTS: dict[str, Any] = {
    "shape": "ov-7b",
    "layers": None,
    "vision_layers": None,
    "frames": None,
    "repeats": 5,
    "warmup": 2,
    "decode_tokens": 64,
}

# --methods keys → apply_method setting names, per method.
_KEYS: dict[str, dict[str, str]] = {
    "vanilla": {},
    "holitom": {
        "K": "merge_layer",
        "merge_layer": "merge_layer",
        "r": "merge_ratio",
        "merge_ratio": "merge_ratio",
        "tau": "tau",
        "beta": "beta",
        "D": "contextual_share",
        "contextual_share": "contextual_share",
        "knn": "knn",
        "W": "max_window_size",
        "max_window_size": "max_window_size",
        "update": "inner_update",
        "inner_update": "inner_update",
    },
    "visionzip": {"D": "contextual_share", "contextual_share": "contextual_share"},
    "fastv": {
        "K": "fastv_layer",
        "fastv_layer": "fastv_layer",
        "R": "fastv_keep",
        "fastv_keep": "fastv_keep",
    },
}
_INT_SETTINGS = ("merge_layer", "knn", "max_window_size", "fastv_layer")
_STR_SETTINGS = ("inner_update",)


# ---------------------------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class MethodSpec:
    """One entry of --methods: a label, the method name and the settings passed to `apply_method`."""

    label: str
    method: str
    settings: dict[str, Any]
    text: str


def default_merge_layer(preset: str | None, num_layers: int, full_layers: int | None = None) -> int:
    """HoliTom's K for a model of `num_layers` decoder layers.

    The paper's K for the preset (18 of 28 for 7B, 60 of 80 for 72B) when the model has its full depth;
    on a truncated model (or without a preset: 18/28 of the depth) the same relative depth, rounded and
    kept in [1, num_layers − 1] so that inner merging happens.
    """
    if num_layers < 2:
        raise ValueError(f"num_layers={num_layers}: inner merging needs at least 2 decoder layers")
    if preset in PRESETS and full_layers is not None:
        k, full = PRESETS[preset]["merge_layer"], full_layers
    else:
        k, full = 18, 28
    if num_layers == full:
        return k
    return min(max(round(k * num_layers / full), 1), num_layers - 1)


def _setting(key: str, raw: str, item: str) -> Any:
    if key in _STR_SETTINGS:
        return raw
    if key == "merge_layer" and raw.lower() in ("none", "off", "no"):
        return None
    try:
        return int(raw) if key in _INT_SETTINGS else float(raw)
    except ValueError:
        kind = "an integer" if key in _INT_SETTINGS else "a number"
        raise ValueError(f"--methods item {item!r}: {key}={raw!r} is not {kind}") from None


def parse_methods(
    text: str,
    num_layers: int,
    preset: str | None = None,
    full_layers: int | None = None,
    newline_position: str = "one_token",
) -> list[MethodSpec]:
    """Parse --methods: comma-separated `NAME[@RHO][:KEY=VALUE]...` items.

    NAME: vanilla | holitom | visionzip | fastv. RHO: retention ρ (holitom, visionzip; default 0.10).
    holitom keys: K (merge layer; `none` = HoliTom w/o M; default: the paper's K at this depth, see
    `default_merge_layer`), r (default 0.5), tau (default: the paper's τ for the preset), beta, D, knn, W,
    update. visionzip keys: D. fastv keys: K (default 2), R (kept share, default 0.5).
    vanilla is put first when missing: every ratio is against the vanilla run of the same process.
    """
    from holitom.baselines.fastv import FASTV_DEFAULT_KEEP, FASTV_DEFAULT_LAYER
    from holitom.baselines.visionzip import visionzip_budget

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"--methods={text!r}: give a comma-separated list, e.g. {DEFAULT_METHODS!r}")
    specs: list[MethodSpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise ValueError(f"--methods={text!r}: empty item")
        head, *pairs = item.split(":")
        name, _, rho_text = head.partition("@")
        name = name.strip()
        if name not in _KEYS:
            raise ValueError(f"--methods item {item!r}: unknown method {name!r}; valid: {', '.join(_KEYS)}")
        settings: dict[str, Any] = {}
        if rho_text:
            if name not in ("holitom", "visionzip"):
                raise ValueError(f"--methods item {item!r}: @ρ applies to holitom and visionzip, not {name}")
            settings["retain_ratio"] = _setting("retain_ratio", rho_text, item)
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or key not in _KEYS[name]:
                valid = ", ".join(k for k in _KEYS[name]) or "none"
                raise ValueError(
                    f"--methods item {item!r}: bad setting {pair!r} for {name}; valid keys: {valid}"
                )
            settings[_KEYS[name][key]] = _setting(_KEYS[name][key], value, item)

        given = set(settings)
        if name == "holitom":
            rho = settings.setdefault("retain_ratio", 0.10)
            if "merge_layer" not in settings:
                settings["merge_layer"] = default_merge_layer(preset, num_layers, full_layers)
            k = settings["merge_layer"]
            if k is not None and (k < 1 or k >= num_layers):
                raise ValueError(
                    f"--methods item {item!r}: K={k} must be in [1, {num_layers - 1}] for a {num_layers}-layer LM "
                    "(K=none: no inner merging)"
                )
            if k is not None:
                settings.setdefault("merge_ratio", 0.5)
            if preset in PRESETS and "tau" not in settings and isinstance(rho, float):
                settings["tau"] = paper_tau(preset, rho)
            try:
                HoliTomConfig(**settings)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"--methods item {item!r}: {exc}") from None
            if k is None:
                label = f"holitom w/o M ρ={rho:.2f}"
            else:
                label = f"holitom ρ={rho:.2f} K={k} r={settings['merge_ratio']}"
            label += "".join(
                f" {key}={settings[key]}"
                for key in sorted(given - {"retain_ratio", "merge_layer", "merge_ratio"})
            )
        elif name == "visionzip":
            if newline_position != "one_token":
                raise ValueError(
                    f"--methods item {item!r}: VisionZip is implemented for the 'one_token' layout (OneVision), "
                    f"this model uses {newline_position!r}"
                )
            rho = settings.setdefault("retain_ratio", 0.10)
            try:
                visionzip_budget(1, rho, settings.get("contextual_share", 0.0))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"--methods item {item!r}: {exc}") from None
            label = f"visionzip ρ={rho:.2f}" + (
                f" D={settings['contextual_share']}" if "contextual_share" in settings else ""
            )
        elif name == "fastv":
            k = settings.setdefault("fastv_layer", FASTV_DEFAULT_LAYER)
            keep = settings.setdefault("fastv_keep", FASTV_DEFAULT_KEEP)
            if k < 1 or k >= num_layers:
                raise ValueError(
                    f"--methods item {item!r}: K={k} must be in [1, {num_layers - 1}] for a {num_layers}-layer LM"
                )
            if not 0.0 < keep <= 1.0:
                raise ValueError(f"--methods item {item!r}: R={keep} must be in (0, 1]")
            label = f"fastv K={k} R={keep}"
        else:
            label = "vanilla"
        if any(spec.label == label for spec in specs):
            raise ValueError(f"--methods={text!r}: {label!r} is listed twice")
        specs.append(MethodSpec(label, name, settings, item))
    if not any(spec.method == "vanilla" for spec in specs):
        specs.insert(0, MethodSpec("vanilla", "vanilla", {}, "vanilla"))
    return specs


# ---------------------------------------------------------------------------------------------- models


def shape_config(shape: str, layers: int | None = None, vision_layers: int | None = None, attn: str = "sdpa"):
    """LlavaQwenConfig of a named shape (the published config.json fields), optionally truncated.

    layers: Qwen2 decoder layers (default: full depth); vision_layers: kept SigLIP layers (default 26 for
    so400m, 2 for tiny). `tiny` is holitom.tiny's OneVision config.
    """
    from holitom.tiny import tiny_config
    from llava.model.language_model.llava_qwen import LlavaQwenConfig
    from llava.model.multimodal_encoder.siglip_encoder import KNOWN_TOWERS

    if shape not in SHAPE_CHOICES:
        raise ValueError(f"--shape={shape!r}: valid shapes are {', '.join(SHAPE_CHOICES)}")
    raw = tiny_config(SHAPES[shape].kind if shape in SHAPES else "onevision")
    raw.pop("model_type")
    if shape in SHAPES:
        lm = SHAPES[shape]
        raw.update(
            hidden_size=lm.hidden,
            intermediate_size=lm.ffn,
            num_hidden_layers=lm.layers,
            num_attention_heads=lm.heads,
            num_key_value_heads=lm.kv_heads,
            vocab_size=lm.vocab,
            tie_word_embeddings=lm.tied,
            max_window_layers=lm.layers,
            mm_hidden_size=KNOWN_TOWERS[SIGLIP_SO400M]["hidden_size"],
            mm_vision_tower=SIGLIP_SO400M,
            torch_dtype="bfloat16",
        )
        tower = dict(KNOWN_TOWERS[SIGLIP_SO400M])
    else:
        tower = dict(raw["mm_vision_tower_config"])
    full_layers, full_vision = raw["num_hidden_layers"], tower["num_hidden_layers"] - 1
    for name, value, full in (
        ("--layers", layers, full_layers),
        ("--vision-layers", vision_layers, full_vision),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= full
        ):
            raise ValueError(f"{name}={value!r}: must be an integer in [1, {full}] for --shape {shape}")
    if layers is not None:
        raw["num_hidden_layers"] = raw["max_window_layers"] = layers
    if vision_layers is not None:
        tower["num_hidden_layers"] = vision_layers + 1  # select layer −2: the last layer is dropped
    # Explicit, so that a truncated tower is built (the full one is known by name).
    raw["mm_vision_tower_config"] = tower
    config = LlavaQwenConfig(**raw)
    config._attn_implementation = attn
    return config


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@torch.no_grad()
def fill_random_(model: nn.Module, seed: int = 0, std: float = INIT_STD) -> nn.Module:
    """Random weights in place, fast: uniform with standard deviation `std` (≈6× faster than normal_ on
    CPU); norm weights 1, biases 0, the newline vector unit scale. Shared (tied) tensors are filled once."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    bound = std * math.sqrt(3.0)
    for name, param in model.named_parameters():  # named_parameters() yields a tied tensor once
        if name.endswith("bias"):
            param.zero_()
        elif param.dim() == 1 and "norm" in name:
            param.fill_(1.0)
        elif name.endswith("image_newline"):
            param.uniform_(-math.sqrt(3.0), math.sqrt(3.0), generator=gen)
        else:
            param.uniform_(-bound, bound, generator=gen)
    return model


def build_random_model(
    shape: str,
    layers: int | None = None,
    vision_layers: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    attn: str = "sdpa",
    seed: int = 0,
) -> nn.Module:
    """A `LlavaQwenForCausalLM` with random weights at a named shape, built directly on `device` in `dtype`
    without transformers' (slow) initialisation and without any download."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5
        from transformers.modeling_utils import no_init_weights

    from llava.model.language_model.llava_qwen import LlavaQwenForCausalLM

    config = shape_config(shape, layers, vision_layers, attn)
    with no_init_weights(), torch.device(device), _default_dtype(dtype):
        model = LlavaQwenForCausalLM(config)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.get_model().embed_tokens.weight
    return fill_random_(model, seed).eval()


def synthetic_frames(num_frames: int, size: int = 384, seed: int = 0) -> torch.Tensor:
    """Preprocessed frames (F, 3, size, size) in [-1, 1]: a shared random background with per-frame noise,
    so neighbouring frames are similar (temporal merging has something to merge)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, size, size, generator=gen) * 2 - 1
    drift = torch.rand(num_frames, 3, size, size, generator=gen) * 2 - 1
    return (0.8 * base + 0.2 * drift).clamp(-1, 1)


def synthetic_prompt(vocab_size: int, seed: int = 0) -> torch.Tensor:
    """(1, L) ids shaped like the qwen_1_5 video prompt: text, one <image> placeholder, text."""
    from llava.constants import IMAGE_TOKEN_INDEX

    gen = torch.Generator().manual_seed(seed)
    text = torch.randint(0, vocab_size, (PROMPT_TEXT_BEFORE + PROMPT_TEXT_AFTER,), generator=gen)
    image = torch.tensor([IMAGE_TOKEN_INDEX])
    return torch.cat([text[:PROMPT_TEXT_BEFORE], image, text[PROMPT_TEXT_BEFORE:]])[None]


def checkpoint_prompt(tokenizer) -> torch.Tensor:
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.conversation import conv_templates
    from llava.mm_utils import tokenizer_image_token

    conv = conv_templates["qwen_1_5"].copy()
    conv.append_message(conv.roles[0], "<image>\n" + QUESTION)
    conv.append_message(conv.roles[1], None)
    return tokenizer_image_token(conv.get_prompt(), tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt")[None]


# ---------------------------------------------------------------------------------------------- timing


class _Clock:
    """perf_counter after a device synchronisation (CUDA work is asynchronous)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


class _TimedCompressor:
    """Stands in as `video_token_compressor`: marks entry/exit around the method's compressor (or, for
    vanilla, the vanilla newline layout that `video_tokens` would build)."""

    def __init__(self, inner: Callable | None, clock: _Clock, marks: dict[str, float]) -> None:
        self.inner, self.clock, self.marks = inner, clock, marks

    def __call__(self, model: nn.Module, pooled: torch.Tensor) -> torch.Tensor:
        from llava.model.llava_arch import add_video_newlines

        self.marks["compress_start"] = self.clock()
        if self.inner is not None:
            tokens = self.inner(model, pooled)
        else:
            position = getattr(model.config, "mm_newline_position", None) or "one_token"
            tokens = add_video_newlines(pooled, model.get_model().image_newline, position)
        self.marks["compress_end"] = self.clock()
        return tokens


def _probe_timer(layer: nn.Module, clock: _Clock, marks: dict[str, float]) -> list:
    """Pre-hooks just before and just after the attention probe's pre-hook on the last SigLIP layer."""

    def start(*_: Any) -> None:
        marks["probe_start"] = clock()

    def stop(*_: Any) -> None:
        marks["probe_ms"] = marks.get("probe_ms", 0.0) + 1e3 * (clock() - marks["probe_start"])

    return [layer.register_forward_pre_hook(start, prepend=True), layer.register_forward_pre_hook(stop)]


@torch.inference_mode()
def time_run(model: nn.Module, ids: torch.Tensor, frames: torch.Tensor, decode_tokens: int) -> dict[str, Any]:
    """One timed prefill + `decode_tokens` greedy steps with the method currently installed on `model`.

    ids (1, L) with one IMAGE_TOKEN_INDEX; frames (F, 3, H, W) on the model's device and dtype.
    Returns milliseconds per stage, decode tokens/s, token counts and (CUDA) peak memory.
    """
    from holitom.methods import installed

    device = frames.device
    clock = _Clock(device)
    marks: dict[str, float] = {}
    state = installed(model)
    model.video_token_compressor = _TimedCompressor(
        model.__dict__.get("video_token_compressor"), clock, marks
    )
    handles = (
        _probe_timer(state.probe.layer, clock, marks) if state is not None and state.probe is not None else []
    )
    if clock.cuda:
        torch.cuda.reset_peak_memory_stats(device)
    try:
        start = clock()
        out = model(input_ids=ids, images=[frames], modalities=["video"], use_cache=True, logits_to_keep=1)
        first = clock()
        token = out.logits[:, -1:].argmax(-1)
        cache, length = out.past_key_values, int(model.mm_state["prompt_length"][0])
        decode_start = clock()
        for step in range(decode_tokens):
            mask = torch.ones(1, length + step + 1, dtype=torch.long, device=device)
            out = model(
                input_ids=token, past_key_values=cache, attention_mask=mask, use_cache=True, logits_to_keep=1
            )
            token, cache = out.logits[:, -1:].argmax(-1), out.past_key_values
        decode_end = clock()
    finally:
        for handle in handles:
            handle.remove()
        original = model.video_token_compressor.inner
        if original is None:
            model.__dict__.pop("video_token_compressor", None)
        else:
            model.video_token_compressor = original
    if "compress_start" not in marks:
        raise RuntimeError("the video compressor did not run: the prompt needs one <image> placeholder")

    probe = marks.get("probe_ms", 0.0)
    vision = 1e3 * (marks["compress_start"] - start) - probe
    compressor = 1e3 * (marks["compress_end"] - marks["compress_start"])
    prefill = 1e3 * (first - marks["compress_end"])
    decode = 1e3 * (decode_end - decode_start)
    mm = model.mm_state
    llm_in = int(sum(mm["visual_tokens"]))
    inner = mm.get("inner") if mm.get("kept_positions") is not None else None
    return {
        "vision_ms": vision,
        "probe_ms": probe,
        "compressor_ms": compressor,
        "compression_ms": compressor + probe,
        "prefill_ms": prefill,
        "ttft_ms": vision + compressor + probe + prefill,
        "decode_ms": decode,
        "decode_tokens_per_s": decode_tokens / (decode / 1e3) if decode_tokens else None,
        "peak_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if clock.cuda else None,
        "tokens": {
            "pooled": int(sum(mm["pooled_tokens"])),
            "llm_input": llm_in,
            "after_inner": int(inner["visual_kept"]) if inner else llm_in,
            "inner_layer": int(inner["layer"]) if inner else None,
            "sequence": int(mm["prompt_length"][0]),
        },
    }


_STAGES = ("vision_ms", "probe_ms", "compressor_ms", "compression_ms", "prefill_ms", "ttft_ms", "decode_ms")


def bench_methods(
    model: nn.Module,
    ids: torch.Tensor,
    frames: torch.Tensor,
    specs: Sequence[MethodSpec],
    repeats: int,
    warmup: int,
    decode_tokens: int,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Round-robin over `specs` (warm-up rounds discarded); per method the medians and every timed run."""
    from holitom.methods import apply_method, remove

    runs: dict[str, list[dict[str, Any]]] = {spec.label: [] for spec in specs}
    try:
        for round_index in range(warmup + repeats):
            timed = round_index >= warmup
            for spec in specs:
                apply_method(model, spec.method, **spec.settings)
                run = time_run(model, ids, frames, decode_tokens)
                if timed:
                    runs[spec.label].append(run)
            if log is not None:
                what = (
                    f"run {round_index - warmup + 1}/{repeats}"
                    if timed
                    else f"warm-up {round_index + 1}/{warmup}"
                )
                log(f"  {what} done")
    finally:
        remove(model)

    results = []
    for spec in specs:
        done = runs[spec.label]
        medians = {key: statistics.median(run[key] for run in done) for key in _STAGES}
        tokens = [run["tokens"] for run in done]
        result: dict[str, Any] = {
            "label": spec.label,
            "method": spec.method,
            "settings": dict(spec.settings),
            "spec": spec.text,
            "tokens": tokens[-1],
            "token_counts_stable": all(t == tokens[-1] for t in tokens),
            "timings_ms": medians,
            "decode_tokens_per_s": decode_tokens / (medians["decode_ms"] / 1e3) if decode_tokens else None,
            "peak_memory_mib": max((run["peak_memory_mib"] for run in done), default=None)
            if done[0]["peak_memory_mib"] is not None
            else None,
            "runs_ms": {key: [run[key] for run in done] for key in _STAGES},
        }
        results.append(result)
    return results


# ---------------------------------------------------------------------------------------------- accounting


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def add_accounting(results: list[dict[str, Any]], shape: ModelShape, frames: int) -> None:
    """FLOPs (paper accounting for the settings, and from the run's token counts) and ratios vs vanilla,
    all from the vanilla entry of the same `results` (in place)."""
    for res in results:
        settings, method, tokens = res["settings"], res["method"], res["tokens"]
        kwargs = {}
        if method in ("holitom", "visionzip"):
            kwargs["retain_ratio"] = settings["retain_ratio"]
        if method == "holitom" and settings.get("merge_layer") is not None:
            kwargs.update(merge_layer=settings["merge_layer"], merge_ratio=settings["merge_ratio"])
        if method == "fastv":
            kwargs.update(fastv_layer=settings["fastv_layer"], fastv_keep=settings["fastv_keep"])
        paper = method_flops(shape, frames=frames, method=method, **kwargs)
        inner = tokens["inner_layer"]
        actual = actual_prefill_flops(
            shape, tokens["llm_input"], tokens["after_inner"] if inner else None, inner
        )
        res["flops"] = {
            "paper_tflops": paper.tflops,
            "paper_percent_of_vanilla": paper.percent_of_vanilla,
            "paper_visual_tokens": [paper.n_visual_in, paper.n_visual_after],
            "actual_tflops": actual / 1e12,
        }
    vanilla = next(res for res in results if res["method"] == "vanilla")
    base_t, base_f = vanilla["timings_ms"], vanilla["flops"]["actual_tflops"]
    for res in results:
        t = res["timings_ms"]
        res["flops"]["actual_percent_of_vanilla"] = 100.0 * res["flops"]["actual_tflops"] / base_f
        res["compression_overhead_ms"] = t["compression_ms"] - base_t["compression_ms"]
        res["speedup"] = {
            "ttft": _ratio(base_t["ttft_ms"], t["ttft_ms"]),
            "prefill": _ratio(base_t["prefill_ms"], t["prefill_ms"]),
            "decode": _ratio(res["decode_tokens_per_s"], vanilla["decode_tokens_per_s"]),
            "flops": _ratio(base_f, res["flops"]["actual_tflops"]),
        }


TARGETS = {"compression_overhead_ms": 10.0, "ttft_speedup": 2.5, "decode_speedup": 1.32}


def check_targets(report: dict[str, Any]) -> dict[str, Any] | None:
    """The issue's GPU targets, for the HoliTom entry at ρ=0.10, r=0.5 with inner merging (if any).
    `paper_setting` says whether the run is the one the targets are stated for (ov-7b, full depth,
    32 frames, K=18, on CUDA)."""
    for res in report["results"]:
        s = res["settings"]
        if (
            res["method"] == "holitom"
            and math.isclose(s["retain_ratio"], 0.10)
            and s.get("merge_layer")
            and s.get("merge_ratio") == 0.5
        ):
            model = report["model"]
            paper_setting = (
                model["shape"] == "ov-7b"
                and model["layers"] == model["layers_full"]
                and model["vision_layers"] == model["vision_layers_full"]
                and model["frames"] == 32
                and s["merge_layer"] == 18
                and report["device"]["type"] == "cuda"
            )
            overhead, ttft, decode = (
                res["compression_overhead_ms"],
                res["speedup"]["ttft"],
                res["speedup"]["decode"],
            )
            return {
                "label": res["label"],
                "paper_setting": paper_setting,
                "compression_overhead_ms": overhead,
                "compression_overhead_ok": overhead <= TARGETS["compression_overhead_ms"],
                "ttft_speedup": ttft,
                "ttft_speedup_ok": ttft is not None and ttft >= TARGETS["ttft_speedup"],
                "decode_speedup": decode,
                "decode_speedup_ok": decode is not None and decode >= TARGETS["decode_speedup"],
            }
    return None


# ---------------------------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def format_table(report: dict[str, Any]) -> str:
    """Markdown table of the report (one row per method) plus the target check."""
    cuda = report["device"]["type"] == "cuda"
    head = [
        "method",
        "visual tokens (LLM in → after inner)",
        "vision ms",
        "compression ms (probe)",
        "prefill ms",
        "TTFT ms",
        "TTFT ×",
        "decode tok/s",
        "decode ×",
        "TFLOPs paper / run",
        "% vanilla",
    ] + (["peak MiB"] if cuda else [])
    rows = [head, ["---"] * len(head)]
    for res in report["results"]:
        t, tok, f, sp = res["timings_ms"], res["tokens"], res["flops"], res["speedup"]
        after = (
            f"{tok['llm_input']} → {tok['after_inner']} (L{tok['inner_layer']})"
            if tok["inner_layer"]
            else f"{tok['llm_input']}"
        )
        row = [
            res["label"],
            after,
            _fmt(t["vision_ms"]),
            f"{t['compression_ms']:.1f} ({t['probe_ms']:.1f})",
            _fmt(t["prefill_ms"]),
            _fmt(t["ttft_ms"]),
            _fmt(sp["ttft"], ".2f", "×"),
            _fmt(res["decode_tokens_per_s"]),
            _fmt(sp["decode"], ".2f", "×"),
            f"{f['paper_tflops']:.3g} / {f['actual_tflops']:.3g}",
            f"{f['actual_percent_of_vanilla']:.1f}",
        ] + ([_fmt(res["peak_memory_mib"], ".0f")] if cuda else [])
        rows.append(row)
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    targets = report.get("targets")
    if targets:
        mark = {True: "✓", False: "✗"}
        where = (
            "paper setting"
            if targets["paper_setting"]
            else "NOT the paper setting (targets are for ov-7b, full depth, 32 frames, K=18, CUDA)"
        )
        lines.append(
            f"\ntargets for {targets['label']} ({where}): compression overhead {targets['compression_overhead_ms']:.1f} ms "
            f"≤ 10 {mark[targets['compression_overhead_ok']]}, TTFT {_fmt(targets['ttft_speedup'], '.2f')}× ≥ 2.5 "
            f"{mark[targets['ttft_speedup_ok']]}, decode {_fmt(targets['decode_speedup'], '.2f')}× ≥ 1.32 "
            f"{mark[targets['decode_speedup_ok']]}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of `holitom bench`. Defaults marked 'GPU/CPU' depend on --device."""
    g, c = GPU_DEFAULTS, CPU_DEFAULTS
    parser.add_argument(
        "--shape",
        choices=SHAPE_CHOICES,
        default=None,
        help=f"random weights at a published shape, no download (default: {g['shape']} on GPU, {c['shape']} on CPU)",
    )
    parser.add_argument("--model", default=None, help="a checkpoint directory or hub id instead of --shape")
    parser.add_argument(
        "--layers",
        type=int,
        default=None,
        help=f"LM decoder layers to keep (default: all; {c['layers']} for a published shape on CPU)",
    )
    parser.add_argument(
        "--vision-layers",
        type=int,
        default=None,
        help=f"SigLIP layers to keep (default: all 26; {c['vision_layers']} for a published shape on CPU)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help=f"video frames (default: 32 OV / 64 LLaVA-Video on GPU, {c['frames']} on CPU)",
    )
    parser.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help="comma-separated NAME[@RHO][:KEY=VALUE]...; holitom keys K (or none), r, tau, beta, D, knn, W, update; "
        "visionzip D; fastv K, R. vanilla is always included. Default: %(default)s (without visionzip for "
        "LLaVA-Video's grid layout)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed runs per method (default {g['repeats']} GPU / {c['repeats']} CPU)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help=f"discarded runs per method (default {g['warmup']} GPU / {c['warmup']} CPU)",
    )
    parser.add_argument(
        "--decode-tokens",
        type=int,
        default=None,
        help=f"greedy decode steps timed (default {g['decode_tokens']} GPU / {c['decode_tokens']} CPU)",
    )
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if available)")
    parser.add_argument(
        "--dtype",
        choices=("float16", "bfloat16", "float32"),
        default=None,
        help="default: float16 on GPU, float32 on CPU",
    )
    parser.add_argument(
        "--attn",
        choices=("sdpa", "eager", "flash_attention_2"),
        default="sdpa",
        help="LM attention implementation",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice); 1 gives stable numbers on a busy machine",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights, frames and prompt")
    parser.add_argument(
        "--json", default=None, metavar="OUT", help="write the full report (every run) as JSON"
    )
    return parser


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r}: must be an integer ≥ {low}")


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Validated settings with the device-dependent defaults filled in."""
    device_text = getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device_text)
    except RuntimeError as exc:
        raise ValueError(f"--device={device_text!r}: {exc}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device={device_text!r}: must be cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device={device_text!r}: CUDA is not available here (use --device cpu)")
    defaults = GPU_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    model_path, shape = getattr(args, "model", None), getattr(args, "shape", None)
    if model_path and shape:
        raise ValueError(f"--model={model_path!r} and --shape={shape!r}: give one of them")
    shape = None if model_path else (shape or defaults["shape"])
    # On CPU a real shape runs at reduced depth unless told otherwise (full ov-0.5b at 32 frames takes minutes).
    reduced = device.type == "cpu" and shape in SHAPES
    out = {
        "device": device,
        "model_path": model_path,
        "shape": shape,
        "layers": getattr(args, "layers", None)
        if getattr(args, "layers", None) is not None
        else (defaults["layers"] if reduced else None),
        "vision_layers": getattr(args, "vision_layers", None)
        if getattr(args, "vision_layers", None) is not None
        else (defaults["vision_layers"] if reduced else None),
        "frames": getattr(args, "frames", None),
        "methods": getattr(args, "methods", None) or DEFAULT_METHODS,
        "attn": getattr(args, "attn", None) or "sdpa",
        "seed": getattr(args, "seed", 0) or 0,
        "json": getattr(args, "json", None),
        "threads": getattr(args, "threads", None),
    }
    if out["frames"] is None and device.type == "cpu":
        out["frames"] = defaults["frames"]
    for key in ("repeats", "warmup", "decode_tokens"):
        value = getattr(args, key, None)
        out[key] = defaults[key] if value is None else value
    _check_int("--repeats", out["repeats"], 1)
    _check_int("--warmup", out["warmup"], 0)
    _check_int("--decode-tokens", out["decode_tokens"], 0)
    if out["frames"] is not None:
        _check_int("--frames", out["frames"], 1)
    _check_int("--seed", out["seed"], 0)
    if out["threads"] is not None:
        _check_int("--threads", out["threads"], 1)
    if model_path and (out["layers"] is not None or out["vision_layers"] is not None):
        raise ValueError(
            "--layers/--vision-layers: only for --shape (random weights); a checkpoint runs at its own depth"
        )
    if out["shape"] is not None and out["shape"] not in SHAPE_CHOICES:
        raise ValueError(f"--shape={out['shape']!r}: valid shapes are {', '.join(SHAPE_CHOICES)}")
    dtype_name = getattr(args, "dtype", None) or ("float16" if device.type == "cuda" else "float32")
    if dtype_name not in ("float16", "bfloat16", "float32"):
        raise ValueError(f"--dtype={dtype_name!r}: must be float16, bfloat16 or float32")
    out["dtype"] = getattr(torch, dtype_name)
    if out["attn"] not in ("sdpa", "eager", "flash_attention_2"):
        raise ValueError(f"--attn={out['attn']!r}: must be sdpa, eager or flash_attention_2")
    if out["json"]:
        folder = os.path.dirname(os.path.abspath(out["json"]))
        if not os.path.isdir(folder):
            raise ValueError(f"--json={out['json']!r}: folder {folder!r} does not exist")
    return out


def _preset_of(config) -> str | None:
    """The named shape a checkpoint's config matches (for the paper's K and τ), if any."""
    newline = getattr(config, "mm_newline_position", None) or "one_token"
    for name, lm in SHAPES.items():
        if (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (
            lm.hidden,
            lm.ffn,
            lm.layers,
        ) and (newline == "grid") == (lm.kind == "video"):
            return name
    return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _kept_vision_layers(config) -> int:
    from llava.model.multimodal_encoder.siglip_encoder import kept_layers, tower_config

    return kept_layers(
        tower_config(config).num_hidden_layers, int(getattr(config, "mm_vision_select_layer", -2))
    )


def _estimated_bytes(config, dtype: torch.dtype) -> int:
    """Parameter bytes of a LlavaQwen config (LM + tower + projector), to refuse what cannot fit."""
    d, m, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = d // config.num_attention_heads * config.num_key_value_heads
    lm = n * (2 * d * d + 2 * d * kv + 3 * d * m) + config.vocab_size * d * (
        1 if config.tie_word_embeddings else 2
    )
    tower = config.mm_vision_tower_config
    v, vm = tower["hidden_size"], tower["intermediate_size"]
    vision = (tower["num_hidden_layers"] - 1) * (4 * v * v + 2 * v * vm) + v * d + d * d
    return (lm + vision) * torch.finfo(dtype).bits // 8


def run_bench(args: argparse.Namespace) -> int:
    """Build the model, time every method, print the table and write the JSON report."""
    import transformers

    import holitom

    opts = _resolve(args)
    device, dtype = opts["device"], opts["dtype"]
    if opts["threads"] is not None:
        torch.set_num_threads(opts["threads"])

    # Config first: --methods is checked before any weights are built or loaded.
    if opts["model_path"]:
        from llava.model.builder import load_config

        try:
            config = full_config = load_config(opts["model_path"])
        except OSError as exc:
            raise FileNotFoundError(f"--model={opts['model_path']!r}: {exc}") from None
        preset, source = _preset_of(config), opts["model_path"]
    else:
        config = shape_config(opts["shape"], opts["layers"], opts["vision_layers"], opts["attn"])
        full_config = shape_config(opts["shape"])
        preset = opts["shape"] if opts["shape"] in SHAPES else None
        source = f"random weights, shape {opts['shape']}"
    num_layers, full_layers = config.num_hidden_layers, full_config.num_hidden_layers
    full_vision = _kept_vision_layers(full_config)
    newline = getattr(config, "mm_newline_position", None) or "one_token"
    frames_n = opts["frames"] or (64 if newline == "grid" else 32)
    if opts["methods"] == DEFAULT_METHODS and newline != "one_token":
        opts["methods"] = DEFAULT_METHODS_GRID
    specs = parse_methods(opts["methods"], num_layers, preset, full_layers, newline)
    shape = dataclasses.replace(get_shape(config.to_dict()), name=opts["shape"] or source, frames=frames_n)

    build_start = time.perf_counter()
    if opts["model_path"]:
        from llava.model.builder import load_pretrained_model

        tokenizer, model, _, _ = load_pretrained_model(
            opts["model_path"],
            None,
            None,
            device_map=str(device),
            torch_dtype=dtype,
            attn_implementation=opts["attn"],
        )
        ids = checkpoint_prompt(tokenizer)
    else:
        if device.type == "cuda":
            need = _estimated_bytes(config, dtype)
            have = torch.cuda.get_device_properties(device).total_memory
            if need > 0.9 * have:
                raise ValueError(
                    f"--shape={opts['shape']}: ~{need / 2**30:.0f} GiB of {str(dtype).split('.')[-1]} weights "
                    f"do not fit in {have / 2**30:.0f} GiB; truncate with --layers N"
                )
        model = build_random_model(
            opts["shape"], opts["layers"], opts["vision_layers"], device, dtype, opts["attn"], opts["seed"]
        )
        ids = synthetic_prompt(config.vocab_size, opts["seed"])
    build_s = time.perf_counter() - build_start
    tower = model.get_vision_tower()
    frames = synthetic_frames(frames_n, tower.config.image_size, opts["seed"]).to(device=device, dtype=dtype)
    ids = ids.to(device)

    print(
        f"holitom bench: {source}; LM {num_layers}/{full_layers} layers (d={config.hidden_size}, ffn={config.intermediate_size}), "
        f"SigLIP {len(tower.encoder_layers)}/{full_vision} layers, {frames_n} frames, {device} {str(dtype).split('.')[-1]}; "
        f"built in {build_s:.1f}s; {opts['warmup']} warm-up + {opts['repeats']} timed rounds over {len(specs)} methods"
    )
    results = bench_methods(
        model, ids, frames, specs, opts["repeats"], opts["warmup"], opts["decode_tokens"], log=print
    )
    add_accounting(results, shape, frames_n)

    device_info: dict[str, Any] = {
        "type": device.type,
        "name": _cpu_name(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        device_info["name"] = torch.cuda.get_device_name(device)
        device_info["model_memory_mib"] = torch.cuda.memory_allocated(device) / 2**20
    report = {
        "tool": "holitom bench",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "holitom": holitom.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "cuda": torch.version.cuda,
        },
        "device": device_info,
        "dtype": str(dtype).split(".")[-1],
        "attn": opts["attn"],
        "model": {
            "source": source,
            "shape": opts["shape"] or preset,
            "layers": num_layers,
            "layers_full": full_layers,
            "vision_layers": len(tower.encoder_layers),
            "vision_layers_full": full_vision,
            "hidden": config.hidden_size,
            "ffn": config.intermediate_size,
            "vocab": config.vocab_size,
            "frames": frames_n,
            "tokens_per_frame": shape.tokens_per_frame,
            "prompt_text_tokens": int(ids.shape[1]) - 1,
            "build_s": build_s,
        },
        "settings": {
            "repeats": opts["repeats"],
            "warmup": opts["warmup"],
            "decode_tokens": opts["decode_tokens"],
            "seed": opts["seed"],
            "methods": opts["methods"],
        },
        "results": results,
    }
    report["targets"] = check_targets(report)
    print(format_table(report))
    if opts["json"]:
        with open(opts["json"], "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
        print(f"wrote {opts['json']}")
    return 0
