"""Outer-LLM merging of HoliTom (spec §1–2): temporal windows, then spatial merging per segment.

`compress_video` maps pooled frame tokens (F, N, C) and their received-attention scores (F, N) to the
visual token sequence fed to the LM. Token counts follow the paper's Python code (`holitom.counts`): per-frame
budget b = math.ceil(n·ρ'), dominant = round(b·(1-D)) and static centres = round(n_static·ρ') with Python's
built-in round() on the float product (round half to even: round(2.5) == 2). Similarities and distances are
computed in float32; static means and β-merges are accumulated in float32; tokens are returned in
the input dtype. Tokens that are kept unmerged are bit-exact copies of the input.
`config` is any object with the `OuterSettings` fields: the registry's `HoliTomConfig` (which validates them)
has them all; this module knows no config class.
With `config.reference_compat` the frame similarities, static means and β-merges run in the features'
dtype with the authors' arithmetic (fp16 in the paper's runs); DPC-KNN distances stay float32, as theirs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from holitom import counts
from holitom.spatial import cluster_merge, pairwise_distances, select_top_scores
from holitom.temporal import check_features, frame_similarity, segment_frames_with_runs


class OuterSettings(Protocol):
    """What outer merging reads of its config (HoliTom's knobs: `holitom.methods.holitom.HoliTomConfig`)."""

    retain_ratio: float
    tau: float
    beta: float
    contextual_share: float
    knn: int
    max_window_size: int
    reference_compat: bool


@dataclass(frozen=True)
class MergePlan:
    """The outer merge as weights: output token m = Σ_e weights[e] · input[sources[e]] over the entries e with
    targets[e] = m, inputs numbered frame·N + position. targets/sources (E,) long, weights (E,) float32, E ≤ F·N
    (every input token enters at most one output; dropped ones enter none). A kept token is one entry of weight
    1; a static token's entries carry 1/w per frame of its window times its cluster weight (β for a centre with
    members, (1−β)/count for a member, 1 for a memberless centre). `apply_merge_plan` applies it to other
    per-token features (Qwen3-VL's deepstack rows), so they follow the tokens with the very same weights."""

    targets: Tensor
    sources: Tensor
    weights: Tensor
    num_outputs: int
    num_inputs: int


def apply_merge_plan(plan: MergePlan, values: Tensor) -> Tensor:
    """values (F, N, C') or (F·N, C') per input token → (M, C'): the plan's weighted sums, accumulated in float32
    and returned in the values' dtype (a kept token's row is a bit-exact copy)."""
    flat = values.reshape(-1, values.shape[-1])
    if flat.shape[0] != plan.num_inputs:
        raise ValueError(f"values have {flat.shape[0]} token rows, the merge plan was made for {plan.num_inputs}")
    device = flat.device
    rows = flat[plan.sources.to(device)].float() * plan.weights.to(device)[:, None]
    out = torch.zeros(plan.num_outputs, flat.shape[-1], dtype=torch.float32, device=device)
    return out.index_add_(0, plan.targets.to(device), rows).to(values.dtype)


def cluster_weights(x: Tensor, centres: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """The weights `cluster_merge` gives x's tokens, from its own distances and nearest-centre rule.

    x (B, m, C); centres (B, c) its centre indices. Returns (slot (B, m) long: the centre 0..c−1 each token enters,
    weight (B, m) float32): β for a centre with members, 1 for one without, (1−β)/count for a member."""
    batch, m, _ = x.shape
    count = centres.shape[1]
    dist = pairwise_distances(x)
    assign = dist.gather(2, centres.unsqueeze(1).expand(batch, m, count)).argmin(-1)  # (B, m)
    is_centre = torch.zeros(batch, m, dtype=torch.bool, device=x.device).scatter_(1, centres, True)
    members = torch.zeros(batch, count, device=x.device).scatter_add_(1, assign, (~is_centre).float())
    slot = assign.scatter(1, centres, torch.arange(count, device=x.device).expand(batch, count))
    weight = ((1.0 - beta) / members.clamp(min=1.0)).gather(1, assign)
    centre_weight = torch.where(members > 0, torch.full_like(members, beta), torch.ones_like(members))
    return slot, weight.scatter(1, centres, centre_weight)


# Values of OuterResult.kinds.
STATIC, DOMINANT, CONTEXTUAL, NEWLINE = 0, 1, 2, 3


@dataclass(frozen=True)
class OuterResult:
    """Output of `compress_video_with_info`.

    tokens: (M, C) the visual token sequence, in the input dtype.
    positions: (M,) long, grid position 0..N-1 of each token (-1 for newline vectors).
    frames: (M,) long, frame of each token; static tokens carry their segment's first frame; a newline
        carries the frame group whose row it ends.
    kinds: (M,) long, STATIC / DOMINANT / CONTEXTUAL / NEWLINE.
    segments: inclusive (start, end) frame pairs of spec §1; reduced: dp[F-1].
    adjusted_ratio: ρ'. num_input: F·N. The num_* counts are the number of output tokens of each kind.
    """

    tokens: Tensor
    positions: Tensor
    frames: Tensor
    kinds: Tensor
    segments: list[tuple[int, int]]
    reduced: int
    adjusted_ratio: float
    num_input: int
    num_static: int
    num_dominant: int
    num_contextual: int
    num_newlines: int
    plan: MergePlan | None = None

    @property
    def num_dynamic_kept(self) -> int:
        return self.num_dominant + self.num_contextual

    @property
    def num_tokens(self) -> int:
        return self.tokens.shape[0]


def _validate(features: Tensor, attention: Tensor, config: OuterSettings, newline: Tensor | None) -> int:
    """Checks the inputs; returns the grid side (0 for the one_token layout)."""
    num_frames, num_tokens, channels = check_features(features)
    if num_frames == 0 or num_tokens == 0 or channels == 0:
        raise ValueError(f"features must have F, N, C > 0, got shape {tuple(features.shape)}")
    if not isinstance(attention, Tensor) or tuple(attention.shape) != (num_frames, num_tokens):
        shape = tuple(attention.shape) if isinstance(attention, Tensor) else type(attention).__name__
        raise ValueError(f"attention must have shape (F, N) = {(num_frames, num_tokens)}, got {shape}")
    missing = [name for name in OuterSettings.__annotations__ if not hasattr(config, name)]
    if missing:
        raise ValueError(
            f"config must be a HoliTomConfig or have its settings (missing: {', '.join(missing)}), "
            f"got {type(config).__name__}"
        )
    return grid_side(num_tokens, channels, newline)


@dataclass
class _Segment:
    """Host-side plan of one segment: its frames, static and dynamic positions and token counts."""

    start: int
    end: int
    static_pos: np.ndarray
    dynamic_pos: np.ndarray
    num_centres: int
    budget: int
    dominant: int
    contextual: int

    @property
    def width(self) -> int:
        return self.end - self.start + 1


def _plan(
    segments: list[tuple[int, int]], run: np.ndarray, num_tokens: int, rho: float, config: OuterSettings
) -> list[_Segment]:
    """Every count and position that does not depend on token values, from the run-length table alone
    (position p is static across window s..e iff run[e-1, p] >= e - s): no device reads."""
    every = np.arange(num_tokens)
    plan = []
    for start, end in segments:
        if end > start:
            static = run[end - 1] >= end - start
            static_pos, dynamic_pos = every[static], every[~static]
        else:
            static_pos, dynamic_pos = every[:0], every
        budget = counts.ceil_share(dynamic_pos.size, rho)
        dominant, contextual = counts.split_budget(budget, config.contextual_share)
        centres = counts.round_share(static_pos.size, rho)
        plan.append(_Segment(start, end, static_pos, dynamic_pos, centres, budget, dominant, contextual))
    return plan


def _dynamic_tokens(
    clip: Tensor,
    scores: Tensor,
    dynamic_pos: Tensor,
    dominant: int,
    contextual: int,
    config: OuterSettings,
    plans: list[tuple[Tensor, Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """The dominant and contextual tokens of w frames sharing their dynamic positions.

    clip (w, N, C) frames; scores (w, N) float32; dynamic_pos (n,) positions. Returns (tokens (w, budget, C),
    positions (w, budget)): per frame the dominant tokens in position order, then the contextual ones.
    plans: a list that receives the merge as (slot, position, weight), each (w, e): per frame the output slot
    0..budget−1 and grid position of every input token used, and its weight."""
    width, n = clip.shape[0], dynamic_pos.numel()
    rows = torch.arange(width, device=clip.device).unsqueeze(1)  # (w, 1)
    top = select_top_scores(scores[:, dynamic_pos], dominant)  # (w, dominant) indices into dynamic_pos
    kept_pos = dynamic_pos[top]
    kept = clip[rows, kept_pos]  # (w, dominant, C) exact copies
    ones = torch.ones(kept_pos.shape, device=clip.device)
    kept_slots = torch.arange(dominant, device=clip.device).expand(width, dominant)
    if contextual == 0:
        if plans is not None:
            plans.append((kept_slots, kept_pos, ones))
        return kept, kept_pos
    chosen = torch.zeros(width, n, dtype=torch.int8, device=clip.device).scatter_(1, top, 1)
    # a stable sort puts each frame's remaining tokens first, in ascending position order (no nonzero)
    rest = torch.sort(chosen, dim=1, stable=True).indices[:, : n - dominant]
    rest_pos = dynamic_pos[rest]
    knn = min(config.knn, contextual)
    rest = clip[rows, rest_pos]
    merged, centres = cluster_merge(rest, contextual, knn, config.beta, config.reference_compat)
    if plans is not None:
        slot, weight = cluster_weights(rest, centres, config.beta)
        plans.append((torch.cat([kept_slots, dominant + slot], 1), torch.cat([kept_pos, rest_pos], 1), torch.cat([ones, weight], 1)))
    return torch.cat([kept, merged], 1), torch.cat([kept_pos, rest_pos.gather(1, centres)], 1)


def compress_video_with_info(
    features: Tensor, attention: Tensor, config: OuterSettings, newline: Tensor | None = None, with_plan: bool = False
) -> OuterResult:
    """Spec §1–2 outer-LLM merging with bookkeeping; see `compress_video` for the arguments.

    with_plan: also return the merge as weights (`OuterResult.plan`, a `MergePlan`; layouts without per-row
    newlines only), made from the same centres and nearest-centre assignments as the tokens.

    Host and device: the similarities are copied to the host once (segmentation) and everything that does not
    depend on token values (static/dynamic positions, counts, frames, kinds) is planned there and copied back
    in one transfer; single-frame segments are processed as one batch, window segments one each; the grid
    layout reads one count. Nothing else waits for the device.
    """
    side = _validate(features, attention, config, newline)
    if with_plan and side:
        raise ValueError("a merge plan is made for layouts without newline rows only (newline=None)")
    num_frames, num_tokens, channels = features.shape
    device = features.device
    reference = config.reference_compat
    similarity = frame_similarity(features, reference)  # (F-1, N) float32 (reference: the features' dtype)
    segments, reduced, run = segment_frames_with_runs(similarity, config.tau, config.max_window_size)
    total = num_frames * num_tokens
    rho = min(config.retain_ratio / ((total - reduced) / total), 1.0)
    plan = _plan(segments, run, num_tokens, rho, config)

    # the host-side plan, uploaded at once: per window its static and dynamic positions, the single frames,
    # and the frame and kind of every output token
    windows = [seg for seg in plan if seg.width > 1]
    singles = [seg.start for seg in plan if seg.width == 1]
    out_frames, out_kinds = [], []
    for seg in plan:
        if seg.num_centres:
            out_frames.append(np.full(seg.num_centres, seg.start))
            out_kinds.append(np.full(seg.num_centres, STATIC))
        if seg.budget:
            out_frames.append(np.repeat(np.arange(seg.start, seg.end + 1), seg.budget))
            kinds = np.array([DOMINANT] * seg.dominant + [CONTEXTUAL] * seg.contextual)
            out_kinds.append(np.tile(kinds, seg.width))
    parts = [p for seg in windows for p in (seg.static_pos, seg.dynamic_pos)]
    parts += [np.array(singles, dtype=np.int64), *out_frames, *out_kinds]
    sizes = [int(p.size) for p in parts]
    uploaded = torch.as_tensor(np.concatenate(parts).astype(np.int64), device=device) if parts else None
    pieces = list(torch.split(uploaded, sizes)) if uploaded is not None else []
    window_pos = {seg.start: (pieces[2 * i], pieces[2 * i + 1]) for i, seg in enumerate(windows)}
    single_idx = pieces[2 * len(windows)]
    n_out = len(out_frames)
    frames_t = torch.cat(pieces[2 * len(windows) + 1 : 2 * len(windows) + 1 + n_out]) if n_out else single_idx[:0]
    kinds_t = torch.cat(pieces[2 * len(windows) + 1 + n_out :]) if n_out else single_idx[:0]

    scores = attention.to(device=device, dtype=torch.float32)
    blocks: dict[int, list[tuple[Tensor, Tensor]]] = {seg.start: [] for seg in plan}
    # with_plan: per segment (slot in its block of output tokens, input index frame·N + position, weight)
    entries: dict[int, list[tuple[Tensor, Tensor, Tensor]]] = {seg.start: [] for seg in plan}
    single = next((seg for seg in plan if seg.width == 1), None)  # every single frame has the same counts
    if single is not None and single.budget:
        every = torch.arange(num_tokens, device=device)
        parts_plan: list[tuple[Tensor, Tensor, Tensor]] | None = [] if with_plan else None
        tokens, positions = _dynamic_tokens(
            features[single_idx], scores[single_idx], every, single.dominant, single.contextual, config, parts_plan
        )
        for j, start in enumerate(singles):
            blocks[start].append((tokens[j], positions[j]))
        if parts_plan:
            slot, pos, weight = parts_plan[0]
            source = single_idx[:, None] * num_tokens + pos
            for j, start in enumerate(singles):
                entries[start].append((slot[j], source[j], weight[j]))
    for seg in windows:
        static_pos, dynamic_pos = window_pos[seg.start]
        clip = features[seg.start : seg.end + 1]  # (w, N, C) view
        if seg.num_centres:
            # static tokens: the mean over the window of each position stable across it, then DPC-KNN merged
            if reference:  # the authors' mean, in the features' dtype
                static = clip[:, static_pos].mean(0)
            else:  # float32 accumulation without a float32 copy of the window
                static = clip.mean(0, dtype=torch.float32)[static_pos].to(features.dtype)  # (n_static, C)
            knn = min(config.knn, seg.num_centres)
            merged, centres = cluster_merge(static, seg.num_centres, knn, config.beta, reference)
            blocks[seg.start].append((merged, static_pos[centres]))
            if with_plan:  # every frame of the window enters its static token's mean with 1/w
                slot, weight = cluster_weights(static[None], centres[None], config.beta)
                frames_w = torch.arange(seg.start, seg.end + 1, device=device)[:, None]
                source = frames_w * num_tokens + static_pos[None]  # (w, n_static)
                entries[seg.start].append(
                    (slot.expand_as(source).reshape(-1), source.reshape(-1), (weight / seg.width).expand_as(source).reshape(-1))
                )
        if seg.budget:
            parts_plan = [] if with_plan else None
            tokens, positions = _dynamic_tokens(
                clip, scores[seg.start : seg.end + 1], dynamic_pos, seg.dominant, seg.contextual, config, parts_plan
            )
            blocks[seg.start].append((tokens.reshape(-1, channels), positions.reshape(-1)))
            if parts_plan:
                slot, pos, weight = parts_plan[0]
                rows_w = torch.arange(seg.width, device=device)[:, None]
                slot = seg.num_centres + rows_w * seg.budget + slot
                source = (seg.start + rows_w) * num_tokens + pos
                entries[seg.start].append((slot.reshape(-1), source.reshape(-1), weight.reshape(-1)))

    ordered = [block for seg in plan for block in blocks[seg.start]]
    out = torch.cat([t for t, _ in ordered]) if ordered else features.new_zeros(0, channels)
    out_pos = torch.cat([p for _, p in ordered]) if ordered else frames_t.new_zeros(0)
    num_newlines = 0
    if side:
        before = out.shape[0]
        out, out_pos, frames_t, kinds_t = grid_layout(out, out_pos, frames_t, kinds_t, newline, side)
        num_newlines = out.shape[0] - before
    merge_plan = None
    if with_plan:
        targets, sources, weights = [], [], []
        offset = 0
        for seg in plan:
            for slot, source, weight in entries[seg.start]:
                targets.append(slot + offset)
                sources.append(source)
                weights.append(weight)
            offset += seg.num_centres + seg.budget * seg.width
        empty = torch.zeros(0, dtype=torch.long, device=device)
        merge_plan = MergePlan(
            targets=torch.cat(targets) if targets else empty,
            sources=torch.cat(sources) if sources else empty,
            weights=torch.cat(weights).float() if weights else empty.float(),
            num_outputs=out.shape[0],
            num_inputs=total,
        )
    num_static = sum(seg.num_centres for seg in plan)
    num_dominant = sum(seg.dominant * seg.width for seg in plan if seg.budget)
    return OuterResult(
        tokens=out,
        positions=out_pos,
        frames=frames_t,
        kinds=kinds_t,
        segments=segments,
        reduced=reduced,
        adjusted_ratio=rho,
        num_input=total,
        num_static=num_static,
        num_dominant=num_dominant,
        num_contextual=sum(seg.contextual * seg.width for seg in plan if seg.budget),
        num_newlines=num_newlines,
        plan=merge_plan,
    )


def append_newline(tokens: Tensor, newline: Tensor) -> Tensor:
    """OneVision's `one_token` layout: the video's tokens (M, C), then its one newline vector (C,) → (M+1, C)."""
    return torch.cat([tokens, newline[None].to(device=tokens.device, dtype=tokens.dtype)], dim=0)


def grid_side(num_tokens: int, channels: int, newline: Tensor | None) -> int:
    """The grid side of a frame's N tokens for the LLaVA-Video `grid` layout (a newline vector given), 0 for the
    `one_token` layout (None). Checks the newline is (C,) and N a square."""
    if newline is None:
        return 0
    if not isinstance(newline, Tensor) or tuple(newline.shape) != (channels,):
        shape = tuple(newline.shape) if isinstance(newline, Tensor) else type(newline).__name__
        raise ValueError(f"newline must have shape (C,) = ({channels},), got {shape}")
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"features: the grid layout (newline given) needs N = side², got N={num_tokens}")
    return side


def grid_layout(
    tokens: Tensor, positions: Tensor, frames: Tensor, kinds: Tensor, newline: Tensor, side: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """LLaVA-Video layout: per frame group, tokens by grid position, a newline after each non-empty row.

    tokens (M, C), positions/frames/kinds (M,). Returns the same four with newlines inserted. One value is read
    from the device (which rows hold tokens decides the output size).
    """
    # (frame, position) pairs are unique within the video, so one global sort orders every group.
    key = frames * (side * side) + positions
    order = key.argsort()
    tokens, positions, frames, kinds, key = (t[order] for t in (tokens, positions, frames, kinds, key))
    row = key // side  # unique id of (frame group, grid row)
    row_ends = torch.ones_like(row, dtype=torch.bool)
    row_ends[:-1] = row[1:] != row[:-1]
    ends = row_ends.nonzero().flatten()  # the one device read
    # each token moves right by the number of newlines before it
    before = row_ends.long().cumsum(0) - row_ends.long()
    token_slot = torch.arange(row.numel(), device=row.device) + before
    newline_slot = token_slot[ends] + 1
    size = row.numel() + ends.numel()

    out = tokens.new_empty(size, tokens.shape[1])
    out[token_slot] = tokens
    out[newline_slot] = newline.to(device=tokens.device, dtype=tokens.dtype)

    def place(values: Tensor, fill: Tensor | int) -> Tensor:
        placed = values.new_empty(size)
        placed[token_slot] = values
        placed[newline_slot] = fill
        return placed

    return out, place(positions, -1), place(frames, frames[ends]), place(kinds, NEWLINE)


def compress_video(
    features: Tensor, attention: Tensor, config: OuterSettings, newline: Tensor | None = None
) -> Tensor:
    """HoliTom outer-LLM merging (spec §1–2).

    features: (F, N, C) pooled projected frame tokens; attention: (F, N) pooled received-attention scores;
    newline: (C,) → LLaVA-Video `grid` layout (N must be a square; a newline after every non-empty grid
    row of every frame group); None → OneVision `one_token` layout (the caller appends its single
    trailing newline). Returns (M, C) in the dtype of features.
    """
    return compress_video_with_info(features, attention, config, newline).tokens
