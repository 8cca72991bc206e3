"""Benchmark the before-LLM compression of HoliTom (`holitom.outer.compress_video`), PruneVid and FastVID
side by side on CPU.

Each size runs in its own subprocess so its memory figure is clean. Inputs are synthetic but shaped like
real videos: x[t+1] = x[t] + s_p·noise with a per-position noise scale s_p (some positions static, some
moving) and a scene cut every 12 frames, so temporal merging finds windows of varying length.

Reported per size:
  time: median wall time of `compress_video` over --repeats calls after one warm-up call.
  extra peak: extra peak resident memory of those calls, i.e. ru_maxrss (the process's RSS high-water
        mark) after the calls minus ru_maxrss once the input was built. The input is not counted; one
        call's output and working tensors are, and so is memory the allocator keeps after a free.
  input: size of the feature tensor.

FastVID also takes its SigLIP head's per-frame attention and pooled output: stand-ins here (random attention,
each frame's mean token as its descriptor); the head itself is not part of the timed stage, as the SigLIP
attention probe is not part of HoliTom's.

Usage: python scripts/bench_outer.py [--methods holitom,prunevid,fastvid] [--threads N] [--repeats 5]
       [--scaling-frames 64,128,256,512,1024]
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

METHODS = ("holitom", "prunevid", "fastvid")


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


def compressor(args: argparse.Namespace, x: torch.Tensor):
    """The method's compression of this video as a call returning (tokens out, segments)."""
    gen = torch.Generator().manual_seed(1)
    attention = torch.rand(args.frames, args.tokens, generator=gen)
    newline = torch.randn(args.channels, generator=gen) if args.grid else None
    if args.method == "holitom":
        from holitom.outer import compress_video_with_info

        config = HoliTomConfig(retain_ratio=args.ratio, tau=args.tau)

        def run():
            info = compress_video_with_info(x, attention, config, newline)
            return info.num_tokens, len(info.segments)
    elif args.method == "prunevid":
        from holitom.baselines.prunevid import prunevid_compress_with_info
        from holitom.methods.prunevid import PruneVidConfig

        c = PruneVidConfig(retain_ratio=args.ratio)

        def run():
            info = prunevid_compress_with_info(x, c.retain_ratio, c.tau, c.prunevid_segment_ratio, c.knn, newline)
            return info.tokens.shape[0], len(info.segments)
    else:
        from holitom.baselines.fastvid import fastvid_compress_with_info
        from holitom.methods.fastvid import FastVIDConfig

        config = FastVIDConfig(retain_ratio=args.ratio)
        pooled_head = x.mean(dim=1)  # frame descriptors as correlated as the frames (the head's pooled output)

        def run():
            info = fastvid_compress_with_info(x, attention, pooled_head, config, newline)
            return info.tokens.shape[0], len(info.segments)

    return run


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    x = make_video(args.frames, args.tokens, args.channels)
    run = compressor(args, x)
    base = rss_peak_bytes()
    tokens_out, segments = run()  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    result = {
        "time_ms": statistics.median(times) * 1e3,
        "min_ms": min(times) * 1e3,
        "peak_extra_mib": (rss_peak_bytes() - base) / 2**20,
        "input_mib": x.numel() * x.element_size() / 2**20,
        "tokens_out": tokens_out,
        "segments": segments,
    }
    print(json.dumps(result))


def run_size(args: argparse.Namespace, method: str, frames: int, tokens: int, channels: int, grid: bool) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        f"--method={method}",
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
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--channels", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--grid", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(METHODS))
    if unknown or not chosen:
        parser.error(f"--methods: unknown {unknown or chosen}; valid: {', '.join(METHODS)}")

    print(
        f"torch {torch.__version__}, threads={args.threads}, ρ={args.ratio}, τ={args.tau}, repeats={args.repeats}"
    )
    header = f"{'case':<32}{'method':<10}{'time ms':>9}{'min ms':>9}{'extra peak MiB':>16}{'input MiB':>11}{'out':>7}{'segments':>10}"
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
        for method in chosen:  # the methods of one case back to back, so they share the machine's state
            r = run_size(args, method, frames, tokens, channels, grid)
            print(
                f"{name:<32}{method:<10}{r['time_ms']:>9.1f}{r['min_ms']:>9.1f}{r['peak_extra_mib']:>16.1f}"
                f"{r['input_mib']:>11.1f}{r['tokens_out']:>7}{r['segments']:>10}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
