"""The measurements of `holitom/tools/gpu_check.py`: correctness of every method on the device against the CPU, host
syncs per prefill, and latency at the published shapes (random weights), each method installed in turn on one
model. Each function returns plain data (JSON-ready); `gpu_check` orders them against its time budget.

Nothing here imports PyAV, decord, lmms-eval or matplotlib: it runs on a bare CUDA machine with torch and
transformers only.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from holitom.methods import all_methods, apply_method, remove, stats
from holitom.tools.timing import MethodSpec

SEED = 0
# Weight scales of the tiny correctness model (the tiny test checkpoints': well-separated logits, so greedy tokens
# are no near-ties) and of FastVID's MAP head on its 32-wide tower (attention far from uniform).
TINY_STD, TINY_HEAD_STD = 0.08, 0.5
# The tiny models' 4 decoder layers: where the paper's layer settings (stated for 28 layers) go instead.
TINY_LAYERS: dict[str, Any] = {
    "merge_layer": 2,
    "fastv_layer": 2,
    "pdrop_layers": (1, 2, 3),
    "dycoke_layer": 2,
}
FIRST = ("Vanilla", "HoliTom")  # the paper rows measured first, side by side: the speed claim itself


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


# ---------------------------------------------------------------------------------------------- methods


def paper_specs(
    shape: str,
    budget: float,
    num_layers: int,
    layout: str,
    tiny: bool = False,
    extra: dict[str, dict[str, Any]] | None = None,
    labels: tuple[str, ...] | None = None,
) -> list[MethodSpec]:
    """Every registered method at the paper's settings for `shape` and retention `budget` (the registry's
    `paper_settings`: the rows of Table 1), vanilla and HoliTom (K) first. `tiny`: on a tiny stand-in model,
    the layer settings go to `TINY_LAYERS`. `extra`: settings per method name (FastVID's head); `labels`: only
    these paper rows."""
    first: list[MethodSpec] = []
    rest: list[MethodSpec] = []
    for method in all_methods():
        own = {s.name for s in method.settings}
        for label in method.paper_labels:
            if labels is not None and label not in labels:
                continue
            values = method.paper_settings(label, shape, budget)
            if values is None:
                continue
            if tiny:  # a layer setting that is off (HoliTom w/o M: merge_layer None) stays off
                values.update(
                    {k: v for k, v in TINY_LAYERS.items() if k in own and values.get(k, 0) is not None}
                )
            values.update((extra or {}).get(method.name, {}))
            config = method.make_config(
                values, shape=None if tiny else shape, num_layers=num_layers, layout=layout
            )
            spec = MethodSpec(method.label(config, {}), method.name, method.config_dict(config), label)
            if any(s.label == spec.label for s in first + rest):
                continue  # the same row under two spellings (VisionZip / Visionzip)
            (first if label in FIRST else rest).append(spec)
    return sorted(first, key=lambda s: s.method != "vanilla") + rest


# ---------------------------------------------------------------------------------------------- host syncs


@contextlib.contextmanager
def cuda_sync_warnings(device: torch.device) -> Iterator[list | None]:
    """The CUDA runtime's own count: every synchronising call warns under `set_sync_debug_mode("warn")`.
    Yields the list the warnings land in (None off CUDA)."""
    if device.type != "cuda":
        yield None
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            torch.cuda.set_sync_debug_mode("default")


def prefill_syncs(model: Any, ids: torch.Tensor, frames: torch.Tensor, warm: bool = True) -> dict[str, Any]:
    """Host syncs of one multimodal prefill with the installed method (after a warm one unless `warm` is
    False: the method has just run): the calls `holitom.tools.syncs` counts and, on CUDA, the synchronisations the
    CUDA runtime reports."""
    from holitom.tools.syncs import count_host_syncs

    with torch.inference_mode():
        if warm:
            model(input_ids=ids, images=[frames], modalities=["video"], logits_to_keep=1)
        if frames.device.type == "cuda":
            torch.cuda.synchronize(frames.device)
        with cuda_sync_warnings(frames.device) as caught, count_host_syncs() as counter:
            model(input_ids=ids, images=[frames], modalities=["video"], logits_to_keep=1)
    cuda = None if caught is None else sum("synchroniz" in str(w.message) for w in caught)
    return {"counted": counter.total, "by_call": dict(counter.by_call), "cuda": cuda}


def syncs_section(device: torch.device, frames_n: int, specs: list[MethodSpec], log: Callable) -> list[dict]:
    """Host syncs per `frames_n`-frame prefill of every method on the tiny model, on `device`."""
    from holitom.tools.random_model import build_random_model
    from holitom.tools.synthetic import synthetic_pixels, synthetic_prompt

    model = build_random_model("tiny", device=device, seed=SEED)
    ids = synthetic_prompt(model.config.vocab_size, SEED).to(device)
    frames = synthetic_pixels(frames_n, model.get_vision_tower().config.image_size, SEED).to(device)
    rows = []
    for spec in specs:
        row: dict[str, Any] = {"label": spec.label, "method": spec.method}
        try:
            apply_method(model, spec.method, **spec.settings)
            row.update(prefill_syncs(model, ids, frames))
        except Exception as exc:  # noqa: BLE001 - one line per failed measurement, the check goes on
            row["error"] = _one_line(exc)
        finally:
            remove(model)
        rows.append(row)
        log(
            f"  syncs {spec.label}: {row.get('counted')} counted, {row.get('cuda')} CUDA {row.get('error', '')}"
        )
    return rows


# ---------------------------------------------------------------------------------------------- correctness


def _hf_inputs(ids: torch.Tensor, hf: Any, frames_n: int) -> torch.Tensor:
    """The llava prompt in transformers' layout: the placeholder → F·N + 1 video tokens."""
    from holitom.hosts.hf_onevision_io import expand_video_tokens, tokens_per_frame
    from llava.constants import IMAGE_TOKEN_INDEX

    video = hf.config.video_token_id
    ids = torch.where(ids == IMAGE_TOKEN_INDEX, video, ids)
    return expand_video_tokens(ids, video, frames_n * tokens_per_frame(hf.config) + 1)


def _hosts(model: Any) -> dict[str, Any]:
    """Both host layouts on the same weights: our llava model, transformers' LlavaOnevisionForConditionalGeneration."""
    from holitom.hosts.hf_onevision_io import to_hf_onevision

    vocab = model.config.vocab_size
    return {"llava": model, "hf": to_hf_onevision(model, image_token_id=vocab - 2, video_token_id=vocab - 1)}


def _run_host(kind: str, model: Any, ids: torch.Tensor, frames: torch.Tensor, decode: int) -> dict[str, Any]:
    """One greedy generation: the first token's logits (float32, on the CPU), the prefill's token counts and
    the `decode` new tokens."""
    greedy = {
        "max_new_tokens": decode,
        "do_sample": False,
        "return_dict_in_generate": True,
        "output_logits": True,
    }
    with torch.inference_mode():
        if kind == "llava":  # returns the new tokens only (generation from embeddings)
            out = model.generate(ids, images=[frames], modalities=["video"], **greedy)
            new = out.sequences
        else:  # returns the caller's prompt, then the new tokens
            hf_ids = _hf_inputs(ids, model, frames.shape[0])
            out = model.generate(input_ids=hf_ids, pixel_values_videos=frames[None], **greedy)
            new = out.sequences[:, hf_ids.shape[1] :]
    counts = stats(model)
    return {
        "logits": out.logits[0][0].float().cpu(),
        "counts": [counts.pooled_tokens, counts.visual_tokens, counts.visual_after, counts.prompt_tokens],
        "greedy": new[0].tolist(),
    }


def _each_method(
    models: dict[str, Any], specs: list[MethodSpec], ids, frames, decode
) -> dict[tuple[str, str], Any]:
    """(host, label) → `_run_host` result or the one-line error."""
    out: dict[tuple[str, str], Any] = {}
    for spec in specs:
        for kind, model in models.items():
            try:
                apply_method(model, spec.method, **spec.settings)
                out[kind, spec.label] = _run_host(kind, model, ids, frames, decode)
            except Exception as exc:  # noqa: BLE001
                out[kind, spec.label] = _one_line(exc)
            finally:
                remove(model)
    return out


def correctness_section(
    device: torch.device,
    frames_n: int,
    decode: int,
    specs: list[MethodSpec],
    log: Callable,
    halves: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16),
) -> dict[str, Any]:
    """Every method on both host layouts of a tiny random checkpoint: on `device` in float32 the kept-token
    counts and greedy tokens must equal the CPU run's; float16 and bfloat16 on `device` must complete, and their
    first-token logits are compared with float32's (max |Δ|). On a CPU-only dry run the device run is the CPU
    run itself."""
    from holitom.tools.random_model import build_random_model, fill_random_
    from holitom.tools.synthetic import synthetic_pixels, synthetic_prompt

    base = fill_random_(build_random_model("tiny", seed=SEED), SEED, std=TINY_STD)
    ids = synthetic_prompt(base.config.vocab_size - 2, SEED)  # the last two ids are <image> / <video> for hf
    frames = synthetic_pixels(frames_n, base.get_vision_tower().config.image_size, SEED)
    decode = max(decode, 1)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = (
        False  # fp32 means fp32 (the patch conv)
    )
    try:
        reference = _each_method(_hosts(base), specs, ids, frames, decode)
        log("  correctness: CPU float32 done")
        if device.type == "cpu":
            on_device = reference
        else:
            on_device = _each_method(
                _hosts(copy.deepcopy(base).to(device)), specs, ids.to(device), frames.to(device), decode
            )
            log(f"  correctness: {device} float32 done")
        lower = {}
        for dtype in halves:
            model = copy.deepcopy(base).to(device=device, dtype=dtype)
            lower[str(dtype).split(".")[-1]] = _each_method(
                _hosts(model), specs, ids.to(device), frames.to(device, dtype), decode
            )
            del model
            log(f"  correctness: {device} {dtype} done")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32

    rows = []
    for spec in specs:
        for kind in ("llava", "hf"):
            ref, dev = reference[kind, spec.label], on_device[kind, spec.label]
            row: dict[str, Any] = {"host": kind, "label": spec.label, "method": spec.method}
            errors = [r for r in (ref, dev) if isinstance(r, str)]
            if errors:
                row.update(ok=False, error=errors[0])
            else:
                row.update(
                    counts_cpu=ref["counts"],
                    counts_device=dev["counts"],
                    greedy_cpu=ref["greedy"],
                    greedy_device=dev["greedy"],
                    counts_equal=ref["counts"] == dev["counts"],
                    greedy_equal=ref["greedy"] == dev["greedy"],
                    max_abs_dlogits_fp32=float((ref["logits"] - dev["logits"]).abs().max()),
                )
                row["ok"] = row["counts_equal"] and row["greedy_equal"]
                for name, runs in lower.items():
                    half = runs[kind, spec.label]
                    if isinstance(half, str):
                        row[name] = {"error": half}
                        row["ok"] = False
                    else:
                        row[name] = {
                            "max_abs_dlogits": float((half["logits"] - dev["logits"]).abs().max()),
                            "counts_equal": half["counts"] == dev["counts"],
                            "greedy_equal": half["greedy"] == dev["greedy"],
                        }
            rows.append(row)
    return {
        "model": "tiny random OneVision (4 LM layers, 2 SigLIP layers), weights normal-ish, std 0.08",
        "frames": frames_n,
        "decode_tokens": decode,
        "device_is_reference": device.type == "cpu",
        "lower_precision": list(lower),
        "rows": rows,
        "ok": all(row["ok"] for row in rows),
    }


# ---------------------------------------------------------------------------------------------- latency


def free_device_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def per_run_seconds(results: list[dict[str, Any]]) -> float | None:
    """Wall seconds of one timed run (prefill + decode) of the slowest method measured so far."""
    times = [r["timings_ms"]["ttft_ms"] + r["timings_ms"]["decode_ms"] for r in results if "timings_ms" in r]
    return max(times) / 1e3 if times else None
