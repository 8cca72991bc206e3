"""The timing core of `holitom bench`: one model, every method installed in turn, timed side by side.

One run = one multimodal prefill + a fixed number of greedy decode steps on preprocessed frames (no video
decoding inside the timed part). Time marks split it: on CUDA, events recorded on the stream (the device is
synchronised before the first and after the last, never in between, so the marks add no host syncs of their
own); on CPU, perf_counter.

    start ─ vision tower (SigLIP, projector, 2×2 pooling) ─ compressor call ─ LLM prefill ─ first token
            └ the attention probe runs inside the tower: it is timed by hooks around it and moved to
              "compression", where it belongs (vanilla has no probe)

- compression: the method's video compressor (vanilla: its newline layout) + the probe.
- prefill: splicing into the prompt and the LM forward over it, reductions inside the LLM included.
- TTFT = vision + compression + prefill; decode tok/s = decode steps / their time (KV cache, greedy,
  no early stop).
Methods run round-robin (each round runs every method once, so slow drifts hit all alike); the first
`warmup` rounds are discarded and the reported numbers are medians over the `repeats` timed rounds.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from holitom.flops import method_flops, schedule_flops
from holitom.shapes import ModelShape
from llava.model.cache_compat import CACHE_KEYWORD, output_cache


@dataclass(frozen=True)
class MethodSpec:
    """One configuration to time: a label, the method name and its full settings (for `apply_method`)."""

    label: str
    method: str
    settings: dict[str, Any]
    text: str


# ---------------------------------------------------------------------------------------------- timing


class _Clock:
    """Time marks: CUDA events on the current stream (no host sync: the run's own syncs are all there is),
    perf_counter on CPU. `ms(a, b)` is read after `finish()`, which waits for the device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"

    def __call__(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            return event
        return time.perf_counter()

    def finish(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def ms(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) if self.cuda else 1e3 * (end - start)


class _TimedCompressor:
    """Stands in as the host's video compressor: marks entry/exit around the method's compressor (or, for
    vanilla, the vanilla newline layout the model would build)."""

    def __init__(self, inner: Callable | None, host: Any, clock: _Clock, marks: dict[str, Any]) -> None:
        self.inner, self.host, self.clock, self.marks = inner, host, clock, marks

    def __call__(self, pooled: torch.Tensor) -> torch.Tensor:
        from llava.model.llava_arch import add_video_newlines

        self.marks["compress_start"] = self.clock()
        if self.inner is not None:
            tokens = self.inner(pooled)
        else:
            tokens = add_video_newlines(pooled, self.host.image_newline, self.host.newline_layout)
        self.marks["compress_end"] = self.clock()
        return tokens


def _probe_timer(layer: nn.Module, clock: _Clock, marks: dict[str, Any]) -> list:
    """Pre-hooks just before and just after the attention probe's pre-hook on the last SigLIP layer; every
    (start, stop) pair lands in marks["probe"] (the tower may run a video in chunks: one pair per chunk)."""

    def start(*_: Any) -> None:
        marks["probe_start"] = clock()

    def stop(*_: Any) -> None:
        marks.setdefault("probe", []).append((marks.pop("probe_start"), clock()))

    return [layer.register_forward_pre_hook(start, prepend=True), layer.register_forward_pre_hook(stop)]


@torch.inference_mode()
def time_run(model: nn.Module, ids: torch.Tensor, frames: torch.Tensor, decode_tokens: int) -> dict[str, Any]:
    """One timed prefill + `decode_tokens` greedy steps with the method currently installed on `model`.

    ids (1, L) with one IMAGE_TOKEN_INDEX; frames (F, 3, H, W) on the model's device and dtype.
    Returns milliseconds per stage, decode tokens/s, token counts and (CUDA) peak memory.
    """
    from holitom.hosts import host_for
    from holitom.methods import installed, stats
    from holitom.patch.vision import VisionAttentionProbe

    device = frames.device
    clock = _Clock(device)
    marks: dict[str, Any] = {}
    host = host_for(model)
    installation = installed(model)
    original = host.video_compressor
    host.video_compressor = _TimedCompressor(original, host, clock, marks)
    probes = [p for p in (installation.parts if installation else []) if isinstance(p, VisionAttentionProbe)]
    handles = [h for probe in probes for h in _probe_timer(probe.layer, clock, marks)]
    if clock.cuda:
        torch.cuda.reset_peak_memory_stats(device)
    try:
        clock.finish()  # an idle device: the first mark is "now"
        start = clock()
        out = model(input_ids=ids, images=[frames], modalities=["video"], use_cache=True, logits_to_keep=1)
        first = clock()
        token = out.logits[:, -1:].argmax(-1)
        cache, length = output_cache(out), int(host.sequence.prompt_lengths[0])
        decode_start = clock()
        for step in range(decode_tokens):
            mask = torch.ones(1, length + step + 1, dtype=torch.long, device=device)
            out = model(
                input_ids=token, attention_mask=mask, use_cache=True, logits_to_keep=1, **{CACHE_KEYWORD: cache}
            )
            token, cache = out.logits[:, -1:].argmax(-1), output_cache(out)
        decode_end = clock()
        clock.finish()
    finally:
        for handle in handles:
            handle.remove()
        host.video_compressor = original
    if "compress_start" not in marks:
        raise RuntimeError("the video compressor did not run: the prompt needs one <image> placeholder")

    probe = sum(clock.ms(a, b) for a, b in marks.get("probe", ()))
    vision = clock.ms(start, marks["compress_start"]) - probe
    compressor = clock.ms(marks["compress_start"], marks["compress_end"])
    prefill = clock.ms(marks["compress_end"], first)
    decode = clock.ms(decode_start, decode_end)
    reduction = stats(model)
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
            "pooled": reduction.pooled_tokens,
            "llm_input": reduction.visual_tokens,
            "after_inner": reduction.visual_after,
            "inner_layer": reduction.stages[0]["layer"] if reduction.stages else None,
            "schedule": [list(step) for step in reduction.schedule],
            "sequence": reduction.prompt_tokens,
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
        paper = method_flops(shape, frames=frames, method=res["method"], **res["settings"])
        actual = schedule_flops(shape, tuple(tuple(step) for step in res["tokens"]["schedule"]))
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


