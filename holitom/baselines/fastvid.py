"""FastVID (Shen et al., "FastVID: Dynamic Density Pruning for Fast Video Large Language Models", 2025,
arXiv 2503.11187; official code LunarShen/FastVID), as pure tensor functions on the pooled frame tokens.

Inputs per video: X (F, N, C) pooled projected frame tokens; A (F, N) the attention of the original SigLIP
attention-pooling (MAP) head over the patches, pooled like the features; G (F, C_v) the head's pooled
output per frame (`map_head_outputs` on the tower's features).
1. Dynamic temporal segmentation (`dynamic_segments`): cut after the c−1 least similar consecutive frame
   pairs (cosine of G) and after every pair below τ.
2. Per frame budget R (ceil(N·ρ), or the official int(N·ρ)); Cn = int(R·d) contextual, S = R − Cn salient.
   Salient tokens: the S highest-attention tokens of every frame, kept unchanged.
3. Anchor frames (`anchor_budgets`): a segment's last frame and every p-th frame before it; the segment's
   L·Cn contextual tokens are split evenly over them (remainder: last anchor first), so a segment keeps
   exactly L·R tokens and the video F·R.
4. Each anchor's centres: its top-b non-salient tokens by density-peak score (`density_peak_scores`, k = 4).
   Every non-salient token of the segment joins, for each anchor, that anchor's centre of highest cosine
   similarity (`merge_segments`); with n members (the centre itself among them) a centre becomes
   w·c + (1−w)·mean(members), w = max(1/(n+1), β); a centre without members stays as it is.
5. Output: kept tokens in (frame, position) order, merged tokens at their centre's position
   (`fastvid_compress_with_info`); the LLaVA-Video `grid` layout adds row newlines (`outer.grid_layout`).
The head (`holitom.baselines.siglip_head`): `load_map_head` reads it from a SigLIP checkpoint (LLaVA
checkpoints lack it), `map_head_outputs` applies it. Where this differs from the official code, and why: docs/methods.md.

`config` is any object with the `FastVIDSettings` fields: the registry's `FastVIDConfig` (which validates them)
has them all; this module knows no config class.

Determinism (the official code adds unseeded U(0,1)·1e-6 noise to densities and uses topk ties): equal
attention or score → lower position first (stable sorts); equal density → the lower position is the
"higher" one; equal similarity → the centre of lower position. Similarities, distances and merges are in
float32; kept tokens are bit-exact copies of the input. Memory is linear in F: the per-segment similarity
work is chunked (`merge_segments`), never an anchors × (segment tokens) × C tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from holitom import counts
from holitom.counts import check_int, frame_budget
from holitom.outer import CONTEXTUAL, DOMINANT, grid_layout, grid_side
from holitom.spatial import select_top_scores

# Neighbours of the density estimate: hard-coded k = 4 in both official versions (itself included).
DPC_NEIGHBOURS = 4
# Values per chunk of the chunked steps (float32 elements): small on CPU (cache), larger on accelerators.
_CPU_CHUNK_VALUES = 1 << 22
_DEVICE_CHUNK_VALUES = 1 << 26


class FastVIDSettings(Protocol):
    """What FastVID reads of its config (its knobs: `holitom.methods.fastvid.FastVIDConfig`)."""

    retain_ratio: float
    fastvid_segments: int
    fastvid_tau: float
    fastvid_contextual: float
    fastvid_anchor_stride: int
    fastvid_beta: float
    fastvid_rounding: str


def _chunk_values(device: torch.device) -> int:
    return _CPU_CHUNK_VALUES if device.type == "cpu" else _DEVICE_CHUNK_VALUES


def _shape(value: object) -> object:
    return tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__




# ---------------------------------------------------------------------------------------------- segmentation


def dynamic_segments(global_features: Tensor, min_segments: int, tau: float) -> list[tuple[int, int]]:
    """FastVID's dynamic temporal segmentation (DySeg).

    global_features: (F, C) one vector per frame (the MAP head's pooled output). s_t = cosine(g_t, g_t+1)
    in float32 (norms clamped at 1e-12) for t = 0..F−2. A segment ends at frame t when s_t is one of the
    min(c−1, F−1) smallest similarities (equal ones: lower t first) or s_t < τ. Returns the segments as
    inclusive (start, end) frame pairs in order. F ≤ c: every frame is its own segment; F = 1: [(0, 0)].
    The F−1 similarities are copied to the host once; the cuts are chosen there.
    """
    if not isinstance(global_features, Tensor) or global_features.dim() != 2 or not global_features.is_floating_point():
        raise ValueError(f"global_features must be a floating (F, C) tensor, got {_shape(global_features)}")
    num_frames = global_features.shape[0]
    if num_frames == 0:
        raise ValueError("global_features: has no frames")
    check_int("min_segments", min_segments, 1)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau):
        raise ValueError(f"tau={tau!r}: must be a finite number")
    unit = global_features.float()
    unit = unit / torch.linalg.vector_norm(unit, dim=-1, keepdim=True).clamp_min(1e-12)
    similarity = (unit[:-1] * unit[1:]).sum(-1).cpu().numpy()  # (F−1,) on the host
    cut = similarity < tau
    cut[np.argsort(similarity, kind="stable")[: min(min_segments - 1, num_frames - 1)]] = True
    ends = [*np.flatnonzero(cut).tolist(), num_frames - 1]
    return [(start, end) for start, end in zip([0, *(e + 1 for e in ends[:-1])], ends)]


# ---------------------------------------------------------------------------------------------- budgets


def split_frame_budget(budget: int, contextual_share: float) -> tuple[int, int]:
    """(salient, contextual) of a per-frame budget R: contextual = int(R·d), salient = R − contextual
    (the official split, `counts.floor_share`)."""
    contextual = counts.floor_share(check_int("budget", budget, 0), contextual_share)
    return budget - contextual, contextual


def anchor_budgets(lengths: Sequence[int], contextual: int, capacity: int, stride: int) -> np.ndarray:
    """Contextual tokens of every frame: a segment of length L spends L·Cn on its anchor frames.

    lengths: segment lengths in frame order (sum F); contextual: Cn per frame; capacity: the non-salient
    tokens of a frame (N − S), the most centres an anchor can hold; stride: p. Anchors are the frames at
    L−1, L−1−q, L−1−2q, ... ≥ 0 of the segment (its last frame and every q-th before it), a = ceil(L/q);
    each gets (L·Cn) // a and the remainder goes one each to the anchors counted from the last frame.
    q = p, except where a·capacity < L·Cn: q is the largest value ≤ p whose anchors can hold the segment's
    budget (q = 1 always can). The official code (a = ceil(L/p) anchors of (L·Cn) // a each) crashes there
    only when (L·Cn) // a > capacity; when (L·Cn) // a == capacity it runs and loses L·Cn − a·capacity
    tokens (docs/methods.md, FastVID difference 5). Host-side integers (a plan, no device): returns (F,)
    int64, summing to F·Cn.
    """
    check_int("contextual", contextual, 0)
    check_int("capacity", capacity, contextual)
    check_int("stride", stride, 1)
    if len(lengths) == 0 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in lengths):
        raise ValueError(f"lengths={list(lengths)!r}: must be segment lengths ≥ 1")
    seg_len = np.asarray(lengths, dtype=np.int64)
    total = int(seg_len.sum())
    if contextual == 0:
        return np.zeros(total, dtype=np.int64)
    spacing = np.ones_like(seg_len)
    # fits is monotone in q, so the last fitting candidate is the largest; q ≥ L all mean one anchor
    for candidate in range(2, min(stride, int(seg_len.max())) + 1):
        fits = -(-seg_len // candidate) * capacity >= seg_len * contextual
        spacing = np.where(fits, candidate, spacing)
    segment = np.repeat(np.arange(seg_len.size), seg_len)
    length, q = seg_len[segment], spacing[segment]
    back = (np.cumsum(seg_len) - 1)[segment] - np.arange(total)  # frames to the segment's last frame
    anchors = -(-length // q)
    share, extra = (length * contextual) // anchors, (length * contextual) % anchors
    return np.where(back % q == 0, share + (back // q < extra), 0).astype(np.int64)


# ---------------------------------------------------------------------------------------------- clustering


def pairwise_distances(x: Tensor) -> Tensor:
    """dist(i, j) = ||x_i − x_j|| / sqrt(C) in float32 for x (B, m, C) → (B, m, m), from the Gram matrix
    (what `torch.cdist` computes for m > 25, without its copies), clamped at 0, with an exact zero diagonal."""
    xf = x.float()
    scale = 1.0 / x.shape[-1]
    squares = torch.linalg.vector_norm(xf, dim=-1).square_()  # (B, m)
    # (|x_i|² + |x_j|² − 2 x_i·x_j) / C in one matmul pass
    dist = torch.baddbmm(squares.unsqueeze(2) + squares.unsqueeze(1), xf, xf.transpose(1, 2), beta=scale, alpha=-2.0 * scale)
    dist.diagonal(dim1=1, dim2=2).zero_()
    return dist.clamp_(min=0.0).sqrt_()



def density_peak_scores(tokens: Tensor, k: int = DPC_NEIGHBOURS) -> Tensor:
    """Density-peak scores of the tokens of each item (the official per-frame DPC, without its noise).

    tokens: (B, m, C). dist(i, j) = ||x_i − x_j|| / sqrt(C) (float32); density_i = exp(−mean squared
    distance to its min(k, m) nearest tokens, itself included); delta_i = min dist to a "higher" token
    (higher density; equal densities: the lower position is higher), or the item's largest distance for
    its highest token; score = delta · density. Returns (B, m) float32; items are processed in chunks.
    """
    if not isinstance(tokens, Tensor) or tokens.dim() != 3 or not tokens.is_floating_point():
        raise ValueError(f"tokens must be a floating (B, m, C) tensor, got {_shape(tokens)}")
    check_int("k", k, 1)
    batch, m, width = tokens.shape
    scores = torch.empty(batch, m, dtype=torch.float32, device=tokens.device)
    if batch == 0 or m == 0:
        return scores
    step = max(1, _chunk_values(tokens.device) // (m * (4 * m + width)))
    positions = torch.arange(m, device=tokens.device)
    for start in range(0, batch, step):
        dist = pairwise_distances(tokens[start : start + step])  # (b, m, m), zero diagonal
        nearest = dist.topk(min(k, m), dim=-1, largest=False).values
        density = (-nearest.square().mean(-1)).exp()  # (b, m)
        order = torch.sort(density, dim=-1, descending=True, stable=True).indices
        rank = torch.empty_like(order).scatter_(-1, order, positions.expand_as(order))
        higher = rank.unsqueeze(1) < rank.unsqueeze(2)  # [b, i, j]: j is higher than i
        farthest = dist.flatten(1).max(-1).values.view(-1, 1, 1)
        scores[start : start + step] = torch.where(higher, dist, farthest).min(-1).values * density
    return scores


def select_centres(scores: Tensor, budgets: Tensor, width: int) -> Tensor:
    """The budgets[i] highest scores of each row (equal scores: lower index first), in ascending index
    order, padded with −1. scores: (A, m); budgets: (A,) integer tensor with values in [0, width] (not read
    back: it may live on the device); width ≤ m. Returns (A, width) long."""
    if not isinstance(scores, Tensor) or scores.dim() != 2:
        raise ValueError(f"scores must be an (A, m) tensor, got {_shape(scores)}")
    rows, m = scores.shape
    if not isinstance(budgets, Tensor) or tuple(budgets.shape) != (rows,) or budgets.is_floating_point():
        raise ValueError(f"budgets must be an integer tensor of shape ({rows},), got {_shape(budgets)}")
    if isinstance(width, bool) or not isinstance(width, int) or not 0 <= width <= m:
        raise ValueError(f"width={width!r}: must be an integer in [0, {m}]")
    order = torch.sort(scores.float(), dim=-1, descending=True, stable=True).indices[:, :width]
    unused = torch.arange(width, device=scores.device) >= budgets.to(scores.device).unsqueeze(1)
    chosen = order.masked_fill(unused, m).sort(dim=-1).values
    return chosen.masked_fill(chosen == m, -1)


def merge_segments(
    features: Tensor,
    members: Tensor,
    starts: Tensor,
    length: int,
    centre_frames: Tensor,
    centre_positions: Tensor,
    beta: float,
    host_starts: Sequence[int] | None = None,
) -> Tensor:
    """FastVID's merge for G segments of the same length L, each with a anchor frames.

    features: (F, N, C); members: (F, N) bool, the tokens that are merged (the non-salient ones);
    starts: (G,) long, first frame of each segment (frames start..start+L−1); centre_frames: (G, a) long,
    the anchor frames; centre_positions: (G, a, B) long, each anchor's centres (positions in its frame,
    −1 = none). For every anchor separately, every member of its segment joins the anchor's centre of
    highest cosine similarity (equal: lower slot); a centre with n members (itself included when it is a
    member) becomes w·c + (1−w)·sum/n, w = max(1/(n+1), β), and stays bit-exact when n = 0.
    host_starts: the same starts as host ints (optional; one-segment chunks then read views of features
    instead of copies). Returns (G, a, B, C) in features' dtype (zeros where there is no centre). The
    similarity work is done in chunks of segments, member frames and anchors, so memory stays bounded for
    any L; nothing is read back from the device.
    """
    num_frames, num_tokens, width = features.shape
    groups, anchors, slots = centre_positions.shape
    if tuple(centre_frames.shape) != (groups, anchors) or tuple(starts.shape) != (groups,):
        raise ValueError(
            f"starts {_shape(starts)}, centre_frames {_shape(centre_frames)} and centre_positions "
            f"{_shape(centre_positions)} disagree"
        )
    if host_starts is not None and len(host_starts) != groups:
        raise ValueError(f"host_starts has {len(host_starts)} values for {groups} segments")
    if tuple(members.shape) != (num_frames, num_tokens) or members.dtype != torch.bool:
        raise ValueError(f"members must be a bool tensor of shape {(num_frames, num_tokens)}, got {_shape(members)}")
    valid = centre_positions >= 0
    flat = features.reshape(num_frames * num_tokens, width)
    centre_index = centre_frames.unsqueeze(-1) * num_tokens + centre_positions.clamp(min=0)
    centres = flat.index_select(0, centre_index.reshape(-1)).view(groups, anchors, slots, width)
    unit = centres.float()
    unit = unit / torch.linalg.vector_norm(unit, dim=-1, keepdim=True).clamp_min(1e-12)
    sums = torch.zeros(groups, anchors, slots, width, dtype=torch.float32, device=features.device)
    sizes = torch.zeros(groups, anchors, slots, dtype=torch.float32, device=features.device)

    # chunk sizes: anchors per step, member frames per segment per step, segments per step
    budget = _chunk_values(features.device)
    per_frame = num_tokens * (width + anchors * slots)
    anchor_step = anchors if per_frame <= budget else max(1, (budget // num_tokens - width) // max(1, slots))
    per_frame = num_tokens * (width + anchor_step * slots)
    frame_step = min(length, max(1, budget // per_frame))
    group_step = max(1, budget // (length * per_frame)) if frame_step == length else 1
    offsets = torch.arange(length, device=features.device)
    for g0 in range(0, groups, group_step):
        g1 = min(g0 + group_step, groups)
        for l0 in range(0, length, frame_step):
            if g1 - g0 == 1 and host_starts is not None:  # one segment: a slice (no copy in float32)
                first = int(host_starts[g0]) + l0
                x = features[first : first + frame_step].float().reshape(1, -1, width)
                weight = members[first : first + frame_step].reshape(1, -1).float()
            else:
                frames = (starts[g0:g1, None] + offsets[l0 : l0 + frame_step]).flatten()  # g·l frames
                x = features.index_select(0, frames).float().view(g1 - g0, -1, width)  # (g, l·N, C)
                weight = members.index_select(0, frames).view(g1 - g0, -1).float()  # (g, l·N)
            for j0 in range(0, anchors, anchor_step):
                j1 = min(j0 + anchor_step, anchors)
                step_slots = (j1 - j0) * slots
                targets = unit[g0:g1, j0:j1].flatten(1, 2)  # (g, j·B, C)
                similarity = x @ targets.transpose(1, 2)  # (g, l·N, j·B); |x| does not change the argmax
                similarity.masked_fill_(~valid[g0:g1, j0:j1].flatten(1).unsqueeze(1), -torch.inf)
                choice = similarity.view(g1 - g0, -1, j1 - j0, slots).argmax(-1)  # (g, l·N, j)
                slot = (choice + torch.arange(0, step_slots, slots, device=x.device)).transpose(1, 2)  # (g, j, l·N)
                onehot = torch.zeros(g1 - g0, step_slots, x.shape[1], device=x.device)
                onehot.scatter_(1, slot, weight.unsqueeze(1).expand_as(slot))
                sums[g0:g1, j0:j1] += (onehot @ x).view(g1 - g0, j1 - j0, slots, width)
                sizes[g0:g1, j0:j1] += (
                    torch.zeros(g1 - g0, step_slots, device=x.device)
                    .scatter_add_(1, slot.flatten(1), weight.repeat(1, j1 - j0))
                    .view(g1 - g0, j1 - j0, slots)
                )
    own = torch.clamp(1.0 / (sizes + 1.0), min=beta).unsqueeze(-1)
    merged = own * centres.float() + (1.0 - own) * sums / sizes.clamp(min=1.0).unsqueeze(-1)
    keep = (sizes > 0).unsqueeze(-1)
    out = torch.where(keep, merged.to(features.dtype), centres)
    return out.masked_fill(~valid.unsqueeze(-1), 0)


# ---------------------------------------------------------------------------------------------- the video


@dataclass(frozen=True)
class FastVIDResult:
    """Output of `fastvid_compress_with_info`.

    tokens: (M, C) in the input dtype; positions: (M,) long grid position 0..N−1 (−1 for newlines);
    frames: (M,) long frame of each token; kinds: (M,) long DOMINANT (salient, unchanged), CONTEXTUAL
    (merged centre) or NEWLINE (`holitom.outer` constants). segments: inclusive (start, end) frame pairs
    (empty when nothing was pruned); anchors: the anchor frames.
    """

    tokens: Tensor
    positions: Tensor
    frames: Tensor
    kinds: Tensor
    segments: list[tuple[int, int]]
    anchors: list[int]
    num_input: int
    num_salient: int
    num_contextual: int
    num_newlines: int

    @property
    def num_tokens(self) -> int:
        return self.tokens.shape[0]


def _validate(
    features: Tensor, attention: Tensor | None, global_features: Tensor | None, config: FastVIDSettings, newline: Tensor | None
) -> int:
    """Checks the inputs (attention/global_features only when given); returns the grid side (0: one_token)."""
    if not isinstance(features, Tensor) or features.dim() != 3 or not features.is_floating_point():
        raise ValueError(f"features must be a floating (F, N, C) tensor, got {_shape(features)}")
    num_frames, num_tokens, width = features.shape
    if min(num_frames, num_tokens, width) == 0:
        raise ValueError(f"features must have F, N, C > 0, got shape {tuple(features.shape)}")
    missing = [name for name in FastVIDSettings.__annotations__ if not hasattr(config, name)]
    if missing:
        raise ValueError(
            f"config must be a FastVIDConfig or have its settings (missing: {', '.join(missing)}), "
            f"got {type(config).__name__}"
        )
    if attention is not None and (not isinstance(attention, Tensor) or tuple(attention.shape) != (num_frames, num_tokens)):
        raise ValueError(f"attention must have shape (F, N) = {(num_frames, num_tokens)}, got {_shape(attention)}")
    if global_features is not None and (
        not isinstance(global_features, Tensor) or global_features.dim() != 2 or global_features.shape[0] != num_frames
    ):
        raise ValueError(f"global_features must have shape (F, C') with F = {num_frames}, got {_shape(global_features)}")
    return grid_side(num_tokens, width, newline)


def _assemble(
    features: Tensor,
    kept: Tensor,
    count: int,
    merged_flat: Tensor,
    merged: Tensor,
    salient: Tensor,
    newline: Tensor | None,
    side: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """The `count` kept tokens in (frame, position) order, merged values written over their centres.

    kept: (F·N + 1,) bool, the last entry a spare slot (True) that padding entries of merged_flat point to;
    merged_flat: (K,) flat indices of merged (K, C) values. No value is read back from the device (the grid
    layout reads its newline count)."""
    num_frames, num_tokens, width = features.shape
    total = num_frames * num_tokens
    # a stable sort puts the kept entries first, in ascending order (no nonzero)
    index = torch.sort((~kept[:total]).to(torch.int8), stable=True).indices[:count]
    buffer = features.new_empty(count + 1, width)  # the last row takes the padding writes
    buffer[:count] = features.reshape(total, width).index_select(0, index)
    if merged.shape[0]:
        buffer[kept.long().cumsum(0)[merged_flat] - 1] = merged.to(features.dtype)
    tokens = buffer[:count]
    positions, frames = index % num_tokens, index // num_tokens
    kinds = torch.where(salient.flatten()[index], DOMINANT, CONTEXTUAL)
    if newline is None:
        return tokens, positions, frames, kinds, 0
    # the first four outputs of grid_layout (some versions also return the newline count)
    tokens, positions, frames, kinds = grid_layout(tokens, positions, frames, kinds, newline, side)[:4]
    return tokens, positions, frames, kinds, tokens.shape[0] - count


@dataclass(frozen=True)
class _Group:
    """Host-side plan of the segments of one length: their anchors (indices into the anchor list, frame
    order, a per segment), first frames and the most centres an anchor of theirs holds."""

    length: int
    anchors: np.ndarray
    starts: np.ndarray
    per_segment: int
    slots: int


def _plan_groups(segments: list[tuple[int, int]], anchor_frames: np.ndarray, anchor_budget: np.ndarray) -> list[_Group]:
    """Anchors grouped by the length of their segment (equal lengths are merged as one batch)."""
    starts = np.array([s for s, _ in segments], dtype=np.int64)
    lengths = np.array([e - s + 1 for s, e in segments], dtype=np.int64)
    segment_of = np.repeat(np.arange(len(segments)), lengths)[anchor_frames]
    groups = []
    for length in np.unique(lengths[segment_of]).tolist():
        chosen = np.flatnonzero(lengths[segment_of] == length)  # frame order, so grouped by segment
        first = np.unique(starts[segment_of[chosen]])
        groups.append(_Group(length, chosen, first, chosen.size // first.size, int(anchor_budget[chosen].max())))
    return groups


def fastvid_compress_with_info(
    features: Tensor,
    attention: Tensor | None,
    global_features: Tensor | None,
    config: FastVIDSettings,
    newline: Tensor | None = None,
) -> FastVIDResult:
    """FastVID on one video's pooled tokens, with bookkeeping.

    features: (F, N, C) pooled projected frame tokens; attention: (F, N) the MAP head's attention pooled
    like the features; global_features: (F, C') the head's pooled output per frame; newline: (C,) →
    LLaVA-Video `grid` layout (a newline after every grid row holding a kept token, per frame), None →
    OneVision `one_token` (the caller appends its trailing newline). The video keeps exactly F·R tokens
    before newlines, R = ceil(N·ρ) (`fastvid_rounding` floor: int(N·ρ)). When R = N nothing is pruned:
    the input is returned unchanged in its original order, and attention/global_features may be None.
    Host and device: the frame similarities are copied to the host once (segmentation), the anchors and
    budgets are planned there and uploaded in one transfer; the grid layout reads one count.
    """
    side = _validate(features, attention, global_features, config, newline)
    num_frames, num_tokens, width = features.shape
    total = num_frames * num_tokens
    device = features.device
    budget = frame_budget(num_tokens, config.retain_ratio, config.fastvid_rounding)
    if budget == 0:
        raise ValueError(
            f"retain_ratio={config.retain_ratio!r} keeps int({num_tokens}·ρ) = 0 tokens per frame "
            "(fastvid_rounding floor): raise retain_ratio or use ceil"
        )
    if budget == num_tokens:
        everything = torch.ones(total + 1, dtype=torch.bool, device=device)
        none = torch.zeros(0, dtype=torch.long, device=device)
        tokens, positions, frames, kinds, newlines = _assemble(
            features, everything, total, none, features.new_zeros(0, width), everything[:total], newline, side
        )
        return FastVIDResult(tokens, positions, frames, kinds, [], [], total, total, 0, newlines)
    if attention is None or global_features is None:
        raise ValueError("attention and global_features (the MAP head's outputs) are required when tokens are pruned")

    # host: segments, per-frame budgets, anchors and their groups; one upload
    segments = dynamic_segments(global_features, config.fastvid_segments, config.fastvid_tau)
    num_salient, contextual = split_frame_budget(budget, config.fastvid_contextual)
    capacity = num_tokens - num_salient
    lengths = [end - start + 1 for start, end in segments]
    per_frame = anchor_budgets(lengths, contextual, capacity, config.fastvid_anchor_stride)
    anchor_frames = np.flatnonzero(per_frame)
    anchor_budget = per_frame[anchor_frames]
    groups = _plan_groups(segments, anchor_frames, anchor_budget) if anchor_frames.size else []
    parts = [anchor_frames, anchor_budget, *(g.anchors for g in groups), *(g.starts for g in groups)]
    uploaded = torch.split(
        torch.as_tensor(np.concatenate(parts).astype(np.int64), device=device), [p.size for p in parts]
    )
    anchor_frames_t, anchor_budget_t = uploaded[0], uploaded[1]
    group_anchors, group_starts = uploaded[2 : 2 + len(groups)], uploaded[2 + len(groups) :]

    # device: salient tokens, density peaks of the anchors' open tokens, merges
    salient = torch.zeros(num_frames, num_tokens, dtype=torch.bool, device=device)
    salient.scatter_(1, select_top_scores(attention.to(device), num_salient), True)
    members = ~salient
    kept = torch.cat([salient.flatten(), torch.ones(1, dtype=torch.bool, device=device)])
    merged_flat = torch.zeros(0, dtype=torch.long, device=device)
    merged = features.new_zeros(0, width)
    if groups:
        # every frame's open (non-salient) positions, ascending: a stable sort puts them first
        open_positions = torch.sort(salient.to(torch.int8), dim=1, stable=True).indices[:, :capacity]
        anchor_positions = open_positions[anchor_frames_t]  # (A, N − S)
        gather = (anchor_frames_t.unsqueeze(1) * num_tokens + anchor_positions).flatten()
        anchor_tokens = features.reshape(total, width).index_select(0, gather).view(-1, capacity, width)
        scores = density_peak_scores(anchor_tokens, DPC_NEIGHBOURS)
        local = select_centres(scores, anchor_budget_t, int(anchor_budget.max()))  # into the open tokens
        centre_positions = anchor_positions.gather(1, local.clamp(min=0)).masked_fill(local < 0, -1)
        pieces_flat, pieces = [], []
        for group, chosen, starts in zip(groups, group_anchors, group_starts):
            shape = (group.starts.size, group.per_segment)
            frames_g = anchor_frames_t[chosen].view(shape)
            positions_g = centre_positions[chosen, : group.slots].view(*shape, group.slots)
            out = merge_segments(
                features, members, starts, group.length, frames_g, positions_g, config.fastvid_beta, group.starts.tolist()
            )
            flat = torch.where(positions_g >= 0, frames_g.unsqueeze(-1) * num_tokens + positions_g, total)
            pieces_flat.append(flat.flatten())
            pieces.append(out.reshape(-1, width))
        merged_flat, merged = torch.cat(pieces_flat), torch.cat(pieces)
        kept.index_fill_(0, merged_flat, True)
    count = num_frames * budget
    tokens, positions, frames, kinds, newlines = _assemble(
        features, kept, count, merged_flat, merged, salient, newline, side
    )
    return FastVIDResult(
        tokens,
        positions,
        frames,
        kinds,
        segments,
        anchor_frames.tolist(),
        total,
        num_frames * num_salient,
        num_frames * contextual,
        newlines,
    )


def fastvid_compress(
    features: Tensor,
    attention: Tensor | None,
    global_features: Tensor | None,
    config: FastVIDSettings,
    newline: Tensor | None = None,
) -> Tensor:
    """FastVID's token sequence for one video: (M, C); see `fastvid_compress_with_info`."""
    return fastvid_compress_with_info(features, attention, global_features, config, newline).tokens
