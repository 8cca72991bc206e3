#!/usr/bin/env python
"""Measure, on a tiny random checkpoint, what `reference_compat` (the authors' runs) changes against the
default (the paper's description): prints the numbers docs/reproduce.md quotes.

    python scripts/compat_effects.py [--frames 6] [--seed 0]

1. Layer K−1 without a causal mask in the prefill: hidden states after layer K−1, logits, kept tokens.
2. r = 0 (nothing merged): the default equals the unmerged model, compat does not.
3. Counts: the reference's rounding of the float product vs a 9-decimal snap.
4. Merge arithmetic in the model dtype (bfloat16 / float16 on a half-precision copy): which kept token
   absorbs each dropped one, and the outer merge's output.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile

import torch

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import holitom  # noqa: E402
from holitom import counts  # noqa: E402
from holitom.inner import merge_dropped, select_kept  # noqa: E402
from holitom.outer import compress_video_with_info  # noqa: E402
from holitom.tools.synthetic import synthetic_pixels, video_prompt  # noqa: E402
from holitom.tools.tiny import make_tiny  # noqa: E402
from llava.model.builder import load_pretrained_model  # noqa: E402

K = 2


def layer_outputs(model, ids, frames):
    seen = []
    handles = [
        layer.register_forward_hook(lambda _m, _a, out: seen.append(out[0] if isinstance(out, tuple) else out))
        for layer in model.get_model().layers
    ]
    with torch.no_grad():
        logits = model(input_ids=ids, images=[frames], modalities=["video"]).logits
    for handle in handles:
        handle.remove()
    return seen, logits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    path = make_tiny(os.path.join(tempfile.mkdtemp(), "tiny"), kind="onevision")
    tokenizer, model, _, _ = load_pretrained_model(path, None, None, device_map="cpu", torch_dtype="float32")
    ids, frames = video_prompt(tokenizer), synthetic_pixels(args.frames, seed=args.seed)
    print(f"tiny OneVision checkpoint (4 LM layers, d=64), {args.frames} frames, K={K}, float32")

    # 1. bidirectional layer K−1 (no outer merging: ρ=1, τ>1, so both modes see the same sequence)
    base = dict(retain_ratio=1.0, tau=1.5, merge_layer=K, merge_ratio=0.5)
    result = {}
    for compat in (False, True):
        holitom.apply(model, holitom.HoliTomConfig(**base, reference_compat=compat))
        outs, logits = layer_outputs(model, ids, frames)
        result[compat] = (outs, logits, model.sequence_state.survivors.clone())
    (d_out, d_logits, d_kept), (c_out, c_logits, c_kept) = result[False], result[True]
    before = max(float((a - b).abs().max()) for a, b in zip(d_out[: K - 1], c_out[: K - 1]))
    at = (d_out[K - 1] - c_out[K - 1]).abs()
    print("1. layer K−1 bidirectional in the prefill (compat) vs causal (default):")
    print(f"   max |Δ| of the hidden states leaving layers < K−1: {before:.3g}")
    print(f"   max |Δ| leaving layer K−1: {float(at.max()):.3g} (rms of the states {float(d_out[K - 1].pow(2).mean().sqrt()):.3g}); "
          f"positions changed: {int((at.amax(-1) > 0).sum())} of {at.shape[1]} (the last one: {float(at[0, -1].max()):.2g})")
    print(f"   kept tokens identical: {bool(torch.equal(d_kept, c_kept))}; max |Δ logits| {float((d_logits - c_logits).abs().max()):.3g}; "
          f"argmax of the last logits equal: {bool(d_logits[0, -1].argmax() == c_logits[0, -1].argmax())}")

    # 2. r = 0
    with torch.no_grad():
        holitom.remove(model)
        vanilla = model(input_ids=ids, images=[frames], modalities=["video"]).logits
    for compat in (False, True):
        holitom.apply(model, holitom.HoliTomConfig(**(base | {"merge_ratio": 0.0}), reference_compat=compat))
        _, logits = layer_outputs(model, ids, frames)
        name = "compat " if compat else "default"
        print(f"2. r=0, {name}: max |Δ logits| vs the unmerged model {float((logits - vanilla).abs().max()):.3g}")
    holitom.remove(model)

    # 3. counts
    print("3. inner keep count round(n·(1−r)), reference (float product) vs a 9-decimal snap:")
    for n, r in ((45, 0.3), (110, 0.45), (30, 0.55), (165, 0.3)):
        snapped = round(round(n * (1 - r), 9))
        print(f"   n={n}, r={r}: n·(1−r) = {n * (1 - r)!r} → reference {counts.merge_keep_count(n, r)}, snapped {snapped}")
    rho = 0.15 / ((32 * 196 - 896) / (32 * 196))
    print(f"   outer budget ceil(n·ρ'), ρ'={rho!r}: n=40 → reference {counts.ceil_share(40, rho)}, "
          f"snapped {math.ceil(round(40 * rho, 9))}")

    # 4. model-dtype arithmetic
    g = torch.Generator().manual_seed(args.seed)
    for dtype in (torch.bfloat16, torch.float16):
        hidden = torch.randn(400, 64, generator=g)
        scores = torch.rand(400, generator=g)
        kept, dropped = select_kept(scores, 200)
        ref = merge_dropped(hidden.to(dtype), kept, dropped, "sequential", scores[kept])
        default = merge_dropped(hidden.to(dtype), kept, dropped, "sequential")
        frames_x = torch.randn(8, 196, 64, generator=g).cumsum(0).to(dtype)  # temporally correlated
        attn = torch.rand(8, 196, generator=g)
        cfg = holitom.HoliTomConfig(retain_ratio=0.15, tau=0.8, merge_layer=None)
        a = compress_video_with_info(frames_x, attn, cfg)
        b = compress_video_with_info(frames_x, attn, cfg.replace(reference_compat=True))
        rows = int((ref != default).any(-1).sum())
        print(f"4. {str(dtype).split('.')[-1]}: inner merge, rows that differ from the float32 rule: {rows} of {ref.shape[0]} "
              f"(max |Δ| {float((ref.float() - default.float()).abs().max()):.3g}); outer merge: "
              f"{a.num_tokens} vs {b.num_tokens} tokens, {len(a.segments)} vs {len(b.segments)} segments, "
              f"max |Δ| {float((a.tokens.float() - b.tokens.float()).abs().max()) if a.num_tokens == b.num_tokens else float('nan'):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
