#!/usr/bin/env python
"""Peak memory of the vision path (tower → projector → pooling → video tokens) against the number of frames.

    python scripts/bench_vision_memory.py [--frames 256 1024] [--hidden 896] [--threads 2]

Each case runs in its own process on CPU: a random model with the tiny SigLIP tower (2 kept layers, width 32)
and a language-model width of `--hidden` (0.5B's 896 by default), `model.video_tokens(frames)` under
`torch.no_grad`, vanilla and with HoliTom's outer merge (its attention probe included), with the frames in
chunks of 16 (the default) and all at once. Reported: the growth of the process's peak RSS during the call
(the input frames are allocated before and not counted) and its slope in MiB per frame between the two sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one(frames: int, chunk: int, method: str, hidden: int) -> dict:
    sys.path[:0] = [REPO]
    import torch

    import holitom
    from holitom.tools.random_model import fill_random_, shape_config
    from holitom.tools.synthetic import synthetic_pixels
    from llava.model.language_model.llava_qwen import LlavaQwenForCausalLM

    config = shape_config("tiny", layers=1)
    config.hidden_size, config.intermediate_size = hidden, hidden
    config.num_attention_heads, config.num_key_value_heads = 8, 2
    model = fill_random_(LlavaQwenForCausalLM(config).eval())
    if method == "holitom":
        holitom.apply_method(model, "holitom", retain_ratio=0.1, merge_layer=None)
    model.vision_chunk_frames = chunk
    # the input filled in place, 16 frames at a time, so that making it sets no high-water mark of its own
    pixels = torch.empty(frames, 3, 384, 384)
    for start in range(0, frames, 16):
        pixels[start : start + 16] = synthetic_pixels(min(16, frames - start), seed=start)
    with torch.no_grad():
        model.video_tokens(synthetic_pixels(2, seed=1))  # warm up allocator and kernels
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        tokens = model.video_tokens(pixels)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mib": (after - before) / 1024, "seconds": seconds, "tokens": int(tokens.shape[0])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs=2, default=[256, 1024])
    parser.add_argument("--hidden", type=int, default=896)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # frames chunk method: a child run
    args = parser.parse_args()
    if args.one:
        import torch

        torch.set_num_threads(args.threads)
        frames, chunk, method = int(args.one[0]), int(args.one[1]), args.one[2]
        print(json.dumps(one(frames, chunk, method, args.hidden)))
        return 0
    small, large = args.frames
    print(f"vision path peak memory, tiny SigLIP + projector to width {args.hidden}, {args.threads} thread(s)")
    print(f"{'method':8s} {'chunks':>10s} {small:>7d} f MiB {large:>7d} f MiB  slope MiB/frame  ({large} f: s)")
    for method in ("vanilla", "holitom"):
        for label, chunk in (("16 frames", 16), ("all", 0)):
            runs = {}
            for frames in (small, large):
                cmd = [sys.executable, __file__, "--hidden", str(args.hidden), "--threads", str(args.threads)]
                cmd += ["--one", str(frames), str(chunk or frames), method]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                runs[frames] = json.loads(out)
            slope = (runs[large]["peak_mib"] - runs[small]["peak_mib"]) / (large - small)
            print(
                f"{method:8s} {label:>10s} {runs[small]['peak_mib']:13.0f} {runs[large]['peak_mib']:13.0f}  "
                f"{slope:15.2f}  ({runs[large]['seconds']:.1f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
