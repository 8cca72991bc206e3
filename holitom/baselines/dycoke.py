"""DyCoke (Tao et al., "DyCoke: Dynamic Compression of Tokens for Fast Video Large Language Models", CVPR 2025,
arXiv 2411.15024), as its official code runs it (KD-TAO/DyCoke, on LLaVA-OneVision). Pure functions.

Stage 1, before the LLM (token temporal merging, TTM), on the pooled frame tokens X (F, N, C): frames are taken
in pairs (2j, 2j+1); the first of a pair stays whole, the second keeps only the `keep` positions LEAST similar
(cosine, per position) to the first. Then in quads i = 0, 4, 8, ... the third frame i+2 (whole after the pair
pass) is replaced by its `keep` positions least similar to frame i. A pruned frame's tokens come out in
ascending-similarity order (the official order; `order="position"` keeps grid order instead). keep =
int((1−K)·N) for the prune ratio K. Nothing is averaged: DyCoke only drops tokens.

Where the port differs from the official code (docs/methods.md has the reasons):
- `all_quads=True` runs the quad pass for every quad (the official bound `i < F−4` leaves the last quad's third
  frame whole, so the official minimum is 28.1 % of the tokens at 32 frames, above the paper's 25 % row);
  `all_quads=False` is the official bound.
- an odd last frame is pruned against the frame before it (the official code drops it silently);
- similarities are float32 and ties go to the lower position (the official code ranks fp16 values with topk).

Stage 2 (pruning the visual cache during decoding) is a model hook: `holitom.patch.decode`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from holitom.counts import dycoke_keep, dycoke_reference_frames, dycoke_token_count

__all__ = ["ORDERS", "dycoke_keep", "dycoke_merge", "dycoke_reference_frames", "dycoke_token_count"]

ORDERS = ("similarity", "position")


def dycoke_merge(
    features: torch.Tensor, prune: float, all_quads: bool = True, order: str = "similarity"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 1 (TTM) on one video.

    features: (F, N, C) pooled projected frame tokens. Returns (tokens (M, C) in features' dtype, frames (M,),
    positions (M,)) with frames in order; a whole frame's tokens in position order, a pruned frame's `keep`
    least-similar positions in ascending-similarity order (or position order with order="position").
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 3 or not features.is_floating_point():
        raise ValueError(f"features: expected a floating (F, N, C) tensor, got {getattr(features, 'shape', features)!r}")
    if order not in ORDERS:
        raise ValueError(f"order={order!r}: must be one of {ORDERS}")
    num_frames, n_tokens, channels = features.shape
    if num_frames == 0 or n_tokens == 0:
        raise ValueError(f"features: expected at least one frame and one token, got shape {tuple(features.shape)}")
    keep = dycoke_keep(n_tokens, prune)
    device = features.device
    refs = torch.tensor(dycoke_reference_frames(num_frames, all_quads), device=device)
    pruned = (refs >= 0).nonzero().flatten()  # (P,)
    # rows: per frame the positions it emits, padded to N; valid marks the real ones
    rows = torch.arange(n_tokens, device=device).expand(num_frames, n_tokens).clone()
    valid = torch.ones(num_frames, n_tokens, dtype=torch.bool, device=device)
    if pruned.numel():
        sim = F.cosine_similarity(features[pruned].float(), features[refs[pruned]].float(), dim=-1)  # (P, N)
        least = torch.sort(sim, dim=-1, stable=True).indices[:, :keep]  # ascending similarity, ties → lower position
        if order == "position":
            least = least.sort(dim=-1).values
        rows[pruned, :keep] = least
        valid[pruned, keep:] = False
    frames = torch.arange(num_frames, device=device)[:, None].expand(num_frames, n_tokens)[valid]
    positions = rows[valid]
    return features[frames, positions], frames, positions
