"""The one GPU check: `bash scripts/gpu_check.sh OUT_DIR` (= `python -m holitom.tools.gpu_check OUT_DIR`).

On one CUDA GPU with torch and transformers only (no network, no video decoders, no lmms-eval), in a time budget,
most important first: the environment; correctness of every method on the device against the CPU on tiny random
checkpoints (both host layouts; fp16/bf16 against fp32); host syncs per prefill; then latency at the published
shapes with random bf16 weights built on the GPU (speed does not depend on weight values): OneVision-7B
(vanilla vs HoliTom ρ=0.10 K=18 first, then every other method at the paper's settings), OneVision-0.5B, then
LLaVA-Video-7B at 64 frames. The JSON in OUT_DIR is rewritten after every measurement (a kill loses nothing);
the compact table is printed last. `--device cpu --tiny` is the dry mode CI runs (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from holitom.tools.gpu_report import format_table, goals

REPORT_JSON, REPORT_MD = "gpu_check.json", "gpu_check.md"
DRY_FRAMES = 4
SECTIONS = ("correctness", "syncs", "ov-7b", "ov-0.5b", "vid-7b")
# Per mode: the tiny model's frames and greedy tokens for correctness, its frames for the sync count; the latency
# runs' warm-up rounds, timed rounds and decode tokens (their frames: the paper's, from holitom.shapes; dry: 4).
GPU_SETTINGS = {
    "correctness_frames": 8,
    "correctness_decode": 8,
    "lower_precision": ("float16", "bfloat16"),
    "sync_frames": 32,
    "warmup": 2,
    "repeats": 5,
    "decode_tokens": 64,
    "caps": {"correctness": 90, "syncs": 30},
}  # seconds: a stuck check leaves time for the latency

# float16 matmuls on a CPU are slow (20 s here): the dry run checks the lower-precision path with bfloat16 only.
DRY_SETTINGS = {"correctness_frames": 2, "correctness_decode": 2, "lower_precision": ("bfloat16",),
                "sync_frames": 4, "warmup": 1, "repeats": 2, "decode_tokens": 3, "caps": {}}  # fmt: skip


class BudgetExceeded(BaseException):
    """Raised by the budget's alarm inside whatever runs; a BaseException so no `except Exception` eats it."""


class Budget:
    """Seconds left of --budget-s, and the alarm that enforces it."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    @contextmanager
    def alarm(self, cap_s: float | None = None) -> Iterator[None]:
        """SIGALRM when the budget (or this part's own cap) is spent: the measurement in flight stops with
        BudgetExceeded, what was saved before stays."""

        def fire(*_: Any) -> None:
            spent = "the time budget" if self.left() <= 0.5 else f"its own cap of {cap_s:.0f} s"
            raise BudgetExceeded(f"stopped: {spent} ran out during it")

        seconds = self.left() if cap_s is None else min(self.left(), cap_s)
        previous = signal.signal(signal.SIGALRM, fire)
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


class Report:
    """The JSON report, rewritten whole after every measurement (write + rename: never half a file)."""

    def __init__(self, out_dir: str, data: dict[str, Any]) -> None:
        self.path, self.data = os.path.join(out_dir, REPORT_JSON), data

    def save(self) -> None:
        with open(self.path + ".part", "w", encoding="utf-8") as fh:
            json.dump(self.data, fh, indent=1, default=str)
        os.replace(self.path + ".part", self.path)

    def error(self, where: str, exc: BaseException) -> str:
        from holitom.tools.gpu_measure import _one_line

        line = f"{where}: {_one_line(exc)}"
        self.data["errors"].append(line)
        return line


# ---------------------------------------------------------------------------------------------- sections


def environment(device: Any, dtype: Any) -> dict[str, Any]:
    import torch

    from holitom.tools.provenance import cpu_name
    from holitom.tools.provenance import environment as versions

    env: dict[str, Any] = {
        "versions": versions(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "attn": "sdpa",
        "latency_dtype": str(dtype).split(".")[-1],
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            cudnn=torch.backends.cudnn.version(),
            sdpa_backends={
                "flash": torch.backends.cuda.flash_sdp_enabled(),
                "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                "math": torch.backends.cuda.math_sdp_enabled(),
            },
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        )
    return env


@dataclasses.dataclass(frozen=True)
class ModelRun:
    """One latency model: the published shape, the retention of its paper rows, which rows (None: all)."""

    name: str
    budget: float
    labels: tuple[str, ...] | None = None
    more: tuple[tuple[str, float], ...] = ()  # (paper row, retention) measured after the main rows
    dry_labels: tuple[str, ...] | None = None  # the rows of a dry run (None: as on the GPU)


def model_runs() -> list[ModelRun]:
    from holitom import paper

    video = next(
        r["budget"]
        for r in paper.result_rows()
        if r["table"] == "table2_llava_video7b" and r["method"] == "HoliTom"
    )
    return [
        ModelRun("ov-7b", 0.10),
        # the published 0.5B slowdown was at ρ = 0.25; a dry run's stand-in is the 7B's, so only the first rows
        ModelRun("ov-0.5b", 0.10, more=(("HoliTom", 0.25),), dry_labels=("Vanilla", "HoliTom")),
        ModelRun("vid-7b", video, labels=("Vanilla", "HoliTom")),
    ]


def latency_section(
    run: ModelRun, opts: dict[str, Any], budget: Budget, report: Report, log: Callable
) -> None:
    """Build the model once, time its methods group by group (vanilla + HoliTom first), save after each."""
    import torch

    from holitom.shapes import SHAPES, get_shape
    from holitom.tools import gpu_measure as gm
    from holitom.tools.random_model import (
        build_random_model,
        estimated_bytes,
        shape_config,
        write_random_map_head,
    )
    from holitom.tools.synthetic import synthetic_pixels, synthetic_prompt
    from holitom.tools.timing import bench_methods

    device, dtype, tiny = opts["device"], opts["dtype"], opts["tiny"]
    published = SHAPES[run.name]
    build = ("tiny-video" if published.kind == "video" else "tiny") if tiny else run.name
    frames_n = opts["frames"] or published.frames
    config = shape_config(build)
    entry: dict[str, Any] = {
        "name": run.name,
        "shape": build,
        "built": f"{build} (stand-in for {run.name})" if tiny else f"{run.name}, random weights",
        "frames": frames_n,
        "dtype": str(dtype).split(".")[-1],
        "layers": config.num_hidden_layers,
        "results": [],
        "skipped": [],
    }
    report.data["latency"].append(entry)
    if device.type == "cuda":
        need, have = estimated_bytes(config, dtype), torch.cuda.get_device_properties(device).total_memory
        entry["weights_gib"] = round(need / 2**30, 1)
        if need > 0.8 * have:
            entry["skipped"].append(
                {"label": "all", "reason": f"~{need / 2**30:.0f} GiB of weights do not fit"}
            )
            return
    start = time.perf_counter()
    model = build_random_model(build, device=device, dtype=dtype, seed=gm.SEED)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    entry["build_s"] = round(time.perf_counter() - start, 2)
    log(f"  built {entry['built']} in {entry['build_s']} s")
    report.save()
    tower = model.get_vision_tower().config
    ids = synthetic_prompt(config.vocab_size, gm.SEED).to(device)
    frames = synthetic_pixels(frames_n, tower.image_size, gm.SEED).to(device=device, dtype=dtype)
    shape = dataclasses.replace(get_shape(config.to_dict()), name=run.name, frames=frames_n)
    with tempfile.TemporaryDirectory() as head_dir:
        head = {"fastvid": {"fastvid_siglip": write_random_map_head(head_dir, tower, gm.SEED)}}
        layout = getattr(config, "mm_newline_position", None) or "one_token"
        labels = run.dry_labels if tiny and run.dry_labels else run.labels
        specs = gm.paper_specs(run.name, run.budget, config.num_hidden_layers, layout, tiny, head, labels)
        for label, rho in run.more:
            specs += gm.paper_specs(run.name, rho, config.num_hidden_layers, layout, tiny, head, (label,))
        # vanilla + HoliTom side by side (round-robin), then every other method on its own
        queue = [specs[:2], *[[spec] for spec in specs[2:]]]
        rounds = opts["warmup"] + opts["repeats"]
        try:
            while queue:
                group = queue.pop(0)
                per_run = gm.per_run_seconds(entry["results"])
                need = None if per_run is None else 1.3 * per_run * rounds * len(group) + 2
                if need is not None and need > budget.left():
                    why = f"time budget (~{need:.0f} s needed, {budget.left():.0f} s left)"
                    entry["skipped"] += [{"label": spec.label, "reason": why} for spec in group]
                    continue
                try:
                    results = bench_methods(
                        model, ids, frames, group, opts["repeats"], opts["warmup"], opts["decode_tokens"]
                    )
                except Exception as exc:  # noqa: BLE001 - one line, then the next method
                    line = report.error(f"{run.name} {' + '.join(spec.label for spec in group)}", exc)
                    if len(group) > 1:  # time them one by one: the one that works still counts
                        queue[:0] = [[spec] for spec in group]
                    else:
                        entry["skipped"].append({"label": group[0].label, "reason": line})
                    report.save()
                    continue
                for result, spec in zip(results, group):
                    try:
                        result["syncs"] = _syncs_of(model, spec, ids, frames)
                    except Exception as exc:  # noqa: BLE001
                        result["syncs"] = {"error": report.error(f"{run.name} {spec.label} syncs", exc)}
                entry["results"] += results
                _accounting(entry, shape, published, tower, device)
                report.save()
                log(
                    "  "
                    + "; ".join(f"{r['label']}: TTFT {r['timings_ms']['ttft_ms']:.1f} ms" for r in results)
                )
        finally:
            del model, frames
            gm.free_device_memory()


def _accounting(entry: dict[str, Any], shape: Any, published: Any, tower: Any, device: Any) -> None:
    """FLOPs and ratios against the vanilla row (holitom.tools.timing), and the GPU targets' check, in place."""
    from holitom.tools.timing import add_accounting, check_targets

    if not any(r["method"] == "vanilla" for r in entry["results"]):
        return  # nothing to compare with: the rows stay without ratios
    add_accounting(entry["results"], shape, entry["frames"])
    model = {
        "shape": entry["shape"],
        "layers": entry["layers"],
        "layers_full": published.num_layers,
        "vision_layers": tower.num_hidden_layers,
        "vision_layers_full": tower.num_hidden_layers,
        "frames": entry["frames"],
    }
    entry["targets"] = check_targets(
        {"results": entry["results"], "model": model, "device": {"type": device.type}}
    )


def _syncs_of(model: Any, spec: Any, ids: Any, frames: Any) -> dict[str, Any]:
    from holitom.methods import apply_method, remove
    from holitom.tools.gpu_measure import prefill_syncs

    apply_method(model, spec.method, **spec.settings)
    try:
        return prefill_syncs(model, ids, frames, warm=False)
    finally:
        remove(model)


# ---------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", help="folder for gpu_check.json and gpu_check.md (created)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (cpu needs --tiny)")
    p.add_argument("--tiny", action="store_true", help="tiny stand-ins for the real shapes (the dry mode)")
    p.add_argument(
        "--budget-s",
        type=float,
        default=420.0,
        help="stop cleanly after this many seconds (default %(default)s)",
    )
    p.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {', '.join(SECTIONS)}")
    for key in ("warmup", "repeats", "decode_tokens", "frames"):
        p.add_argument(
            "--" + key.replace("_", "-"), type=int, default=None, help=f"override the {key} of the mode"
        )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cuda", "cpu"):
        print(f"gpu_check: --device={args.device!r}: must be cuda, cuda:N or cpu", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: --device {args.device}: CUDA is not available here (torch {torch.__version__}); "
              "the dry mode is --device cpu --tiny", file=sys.stderr)  # fmt: skip
        return 2
    if device.type == "cpu" and not args.tiny:
        print(
            "gpu_check: --device cpu runs only with --tiny (the real shapes take hours on a CPU)",
            file=sys.stderr,
        )
        return 2
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(SECTIONS) or args.budget_s <= 0:
        print(f"gpu_check: --skip takes {', '.join(SECTIONS)}; --budget-s must be > 0", file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    if device.type == "cpu":  # one thread: on a busy machine, OpenMP siblings waiting on each other cost 10×
        torch.set_num_threads(1)
    budget = Budget(args.budget_s)
    opts: dict[str, Any] = dict(
        DRY_SETTINGS if args.tiny else GPU_SETTINGS, frames=DRY_FRAMES if args.tiny else None
    )
    opts.update(
        {
            k: getattr(args, k)
            for k in ("warmup", "repeats", "decode_tokens", "frames")
            if getattr(args, k) is not None
        }
    )
    opts.update(
        device=device, tiny=args.tiny, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32
    )

    def log(text: str) -> None:
        print(f"[{budget.elapsed():6.1f}s] {text}", flush=True)

    report = Report(args.out_dir, {
        "tool": "holitom gpu_check", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else list(argv), "tiny": args.tiny, "budget_s": args.budget_s, "elapsed_s": 0.0,
        "settings": {k: v for k, v in opts.items() if k in GPU_SETTINGS or k == "frames"},
        "note": "latency models have random weights: speed does not depend on weight values",
        "environment": environment(device, opts["dtype"]), "correctness": None, "syncs": None, "latency": [],
        "goals": [], "not_run": {name: "--skip" for name in SECTIONS if name in skip}, "errors": [],
    })  # fmt: skip
    report.save()
    log(f"environment: {report.data['environment'].get('gpu', 'CPU')}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        opts["tmp"] = tmp
        for name in SECTIONS:
            if name in skip:
                continue
            if budget.left() <= 1:
                report.data["not_run"][name] = "time budget"
                continue
            log(f"{name} ...")
            try:
                with budget.alarm(opts["caps"].get(name)):
                    _run_section(name, opts, budget, report, log)
            except BudgetExceeded as exc:
                report.data["not_run"][name] = str(exc)
                log(str(exc))
            except Exception as exc:  # noqa: BLE001 - one line, the next section runs
                log(report.error(name, exc))
            report.data["elapsed_s"] = budget.elapsed()
            report.save()
    report.data["goals"] = goals(report.data)
    report.data["elapsed_s"] = budget.elapsed()
    report.save()
    table = format_table(report.data)
    with open(os.path.join(args.out_dir, REPORT_MD), "w", encoding="utf-8") as fh:
        fh.write(table + "\n")
    print(f"wrote {report.path} and {REPORT_MD}\n")
    print(table, flush=True)
    return 0


def _run_section(name: str, opts: dict[str, Any], budget: Budget, report: Report, log: Callable) -> None:
    import torch

    from holitom.tools import gpu_measure as gm

    device = opts["device"]
    if name in ("correctness", "syncs"):
        from holitom.tools.random_model import shape_config, write_random_map_head
        from llava.model.multimodal_encoder.siglip_encoder import tower_config

        config = shape_config("tiny")
        head_dir = os.path.join(opts["tmp"], "tiny_head")  # FastVID's MAP head for the tiny tower
        head = write_random_map_head(head_dir, tower_config(config), gm.SEED, gm.TINY_HEAD_STD)
        layers = config.num_hidden_layers
        specs = gm.paper_specs(
            "ov-7b", 0.10, layers, "one_token", tiny=True, extra={"fastvid": {"fastvid_siglip": head}}
        )
        if name == "correctness":
            frames = opts["correctness_frames"]
            lower = tuple(getattr(torch, name) for name in opts["lower_precision"])
            report.data["correctness"] = gm.correctness_section(
                device, frames, opts["correctness_decode"], specs, log, lower
            )
        else:
            report.data["syncs"] = {
                "frames": opts["sync_frames"],
                "rows": gm.syncs_section(device, opts["sync_frames"], specs, log),
            }
        return
    run = next(r for r in model_runs() if r.name == name)
    latency_section(run, opts, budget, report, log)


if __name__ == "__main__":
    sys.exit(main())
