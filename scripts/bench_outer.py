"""Benchmark HoliTom outer-LLM merging (`holitom.outer.compress_video`) on CPU.

Each size runs in its own subprocess so its memory figure is clean. Inputs are synthetic but shaped like
real videos: x[t+1] = x[t] + s_p·noise with a per-position noise scale s_p (some positions static, some
moving) and a scene cut every 12 frames, so temporal merging finds windows of varying length.

Reported per size:
  time: median wall time of `compress_video` over --repeats calls after one warm-up call.
  extra peak: extra peak resident memory of those calls, i.e. ru_maxrss (the process's RSS high-water
        mark) after the calls minus ru_maxrss once the input was built. The input is not counted; one
        call's output and working tensors are, and so is memory the allocator keeps after a free.
  input: size of the feature tensor.

Usage: python scripts/bench_outer.py [--threads N] [--repeats 5] [--scaling-frames 64,128,256,512,1024]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from holitom.config import HoliTomConfig  # noqa: E402
from holitom.outer import compress_video_with_info  # noqa: E402


def make_video(num_frames: int, num_tokens: int, channels: int, seed: int = 0, cut: int = 12) -> torch.Tensor:
    """(F, N, C) float32 correlated frames, built in place so building it adds no temporary copies."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.empty(num_tokens, 1).uniform_(0.2, 1.5, generator=gen)
    x = torch.empty(num_frames, num_tokens, channels)
    for t in range(num_frames):
        x[t].normal_(generator=gen)
        if t % cut:
            x[t].mul_(scale).add_(x[t - 1])
    return x


def rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    x = make_video(args.frames, args.tokens, args.channels)
    attention = torch.rand(args.frames, args.tokens, generator=torch.Generator().manual_seed(1))
    newline = torch.randn(args.channels) if args.grid else None
    config = HoliTomConfig(retain_ratio=args.ratio, tau=args.tau)
    base = rss_peak_bytes()
    info = compress_video_with_info(x, attention, config, newline)  # warm-up
    stats = {
        "tokens_out": info.num_tokens,
        "segments": len(info.segments),
        "windows": sum(1 for s, e in info.segments if e > s),
        "reduced": info.reduced,
        "adjusted_ratio": info.adjusted_ratio,
    }
    del info  # only one call's output is alive at a time
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        compress_video_with_info(x, attention, config, newline)
        times.append(time.perf_counter() - start)
    result = {
        "time_ms": statistics.median(times) * 1e3,
        "min_ms": min(times) * 1e3,
        "peak_extra_mib": (rss_peak_bytes() - base) / 2**20,
        "input_mib": x.numel() * x.element_size() / 2**20,
        **stats,
    }
    print(json.dumps(result))


def run_size(args: argparse.Namespace, frames: int, tokens: int, channels: int, grid: bool) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        f"--frames={frames}",
        f"--tokens={tokens}",
        f"--channels={channels}",
        f"--threads={args.threads}",
        f"--repeats={args.repeats}",
        f"--ratio={args.ratio}",
        f"--tau={args.tau}",
    ] + (["--grid"] if grid else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per size (median reported)")
    parser.add_argument("--ratio", type=float, default=0.10, help="retain_ratio ρ")
    parser.add_argument("--tau", type=float, default=0.80, help="temporal threshold τ")
    parser.add_argument("--scaling-frames", default="64,128,256,512,1024", help="frame counts at d=896")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--channels", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--grid", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0

    print(
        f"torch {torch.__version__}, threads={args.threads}, ρ={args.ratio}, τ={args.tau}, repeats={args.repeats}"
    )
    header = f"{'case':<34}{'time ms':>9}{'min ms':>9}{'extra peak MiB':>16}{'input MiB':>11}{'out':>7}{'windows':>9}"
    print(header)
    cases = [
        ("OV-7B 32x196x3584 one_token", 32, 196, 3584, False),
        ("Video-7B 64x169x3584 grid", 64, 169, 3584, True),
    ]
    cases += [
        (f"scaling {f}x196x896 one_token", f, 196, 896, False)
        for f in map(int, args.scaling_frames.split(","))
    ]
    for name, frames, tokens, channels, grid in cases:
        r = run_size(args, frames, tokens, channels, grid)
        print(
            f"{name:<34}{r['time_ms']:>9.1f}{r['min_ms']:>9.1f}{r['peak_extra_mib']:>16.1f}{r['input_mib']:>11.1f}"
            f"{r['tokens_out']:>7}{r['windows']:>5}/{r['segments']:<3}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
