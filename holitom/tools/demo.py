"""`holitom demo`: the whole path on a machine with no downloads — a tiny random checkpoint, a
synthetic video, then `holitom generate` with the vanilla model and with HoliTom, side by side.
(The answers of a random model are gibberish; the token counts and timings are the point.)"""

from __future__ import annotations

import argparse
import os

from holitom.tools.generate import add_generate_arguments, run_generate


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="outputs/demo", help="folder for the tiny checkpoint and the video (default: %(default)s)"
    )
    parser.add_argument("--kind", choices=("onevision", "video"), default="onevision", help="default: %(default)s")
    parser.add_argument("--frames", type=int, default=16, help="frames sampled from the video (default: %(default)s)")


def run_demo(args: argparse.Namespace) -> int:
    from holitom.tools.synthetic import write_synthetic_video
    from holitom.tools.tiny import make_tiny

    # every check before anything is written
    if isinstance(args.frames, bool) or not isinstance(args.frames, int) or args.frames < 1:
        raise ValueError(f"--frames={args.frames}: must be ≥ 1")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out={args.out!r} exists and is not a directory")
    checkpoint = os.path.join(args.out, f"tiny-{args.kind}")
    if not os.path.isfile(os.path.join(checkpoint, "config.json")):
        make_tiny(checkpoint, kind=args.kind)
    video = os.path.join(args.out, "moving_square.mp4")
    if not os.path.isfile(video):
        write_synthetic_video(video, num_frames=48, size=(128, 96), fps=8)
    print(f"tiny {args.kind} checkpoint: {checkpoint}\nsynthetic video: {video}\n")
    runs = [
        ["--method", "vanilla"],
        ["--method", "holitom", "--retain-ratio", "0.10", "--tau", "0.65", "--merge-layer", "none"],
        ["--method", "holitom", "--retain-ratio", "0.10", "--tau", "0.65", "--merge-layer", "2", "--merge-ratio", "0.5"],
    ]
    for extra in runs:
        parser = argparse.ArgumentParser()
        add_generate_arguments(parser)
        gen_args = parser.parse_args(
            ["--model", checkpoint, "--video", video, "--frames", str(args.frames), "--max-new-tokens", "8", "--device", "cpu", *extra]
        )
        print("$ holitom generate " + " ".join(extra))
        run_generate(gen_args)
        print()
    return 0
