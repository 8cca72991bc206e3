"""Outer-LLM merging of HoliTom (spec §1–2): temporal windows, then spatial merging per segment.

`compress_video` maps pooled frame tokens (F, N, C) and their received-attention scores (F, N) to the
visual token sequence fed to the LM. Token counts follow the paper's Python code (`holitom.counts`): per-frame
budget b = math.ceil(n·ρ'), dominant = round(b·(1-D)) and static centres = round(n_static·ρ') with Python's
built-in round() on the float product (round half to even: round(2.5) == 2). Similarities and distances are
computed in float32; static means and β-merges are accumulated in float32; tokens are returned in
the input dtype. Tokens that are kept unmerged are bit-exact copies of the input.
With `config.reference_compat` the frame similarities, static means and β-merges run in the features'
dtype with the authors' arithmetic (fp16 in the paper's runs); DPC-KNN distances stay float32, as theirs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from holitom import counts
from holitom.methods.holitom import HoliTomConfig
from holitom.spatial import cluster_merge, select_top_scores
from holitom.temporal import check_features, frame_similarity, segment_frames

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

    @property
    def num_dynamic_kept(self) -> int:
        return self.num_dominant + self.num_contextual

    @property
    def num_tokens(self) -> int:
        return self.tokens.shape[0]


def _validate(features: Tensor, attention: Tensor, config: HoliTomConfig, newline: Tensor | None) -> int:
    """Checks the inputs; returns the grid side (0 for the one_token layout)."""
    num_frames, num_tokens, channels = check_features(features)
    if num_frames == 0 or num_tokens == 0 or channels == 0:
        raise ValueError(f"features must have F, N, C > 0, got shape {tuple(features.shape)}")
    if not isinstance(attention, Tensor) or tuple(attention.shape) != (num_frames, num_tokens):
        shape = tuple(attention.shape) if isinstance(attention, Tensor) else type(attention).__name__
        raise ValueError(f"attention must have shape (F, N) = {(num_frames, num_tokens)}, got {shape}")
    if not isinstance(config, HoliTomConfig):
        raise ValueError(f"config must be a HoliTomConfig, got {type(config).__name__}")
    if newline is None:
        return 0
    if not isinstance(newline, Tensor) or tuple(newline.shape) != (channels,):
        shape = tuple(newline.shape) if isinstance(newline, Tensor) else type(newline).__name__
        raise ValueError(f"newline must have shape (C,) = ({channels},), got {shape}")
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"features: the grid layout (newline given) needs N = side², got N={num_tokens}")
    return side


def _long(values: range | list[int], device: torch.device) -> Tensor:
    return torch.as_tensor(values, dtype=torch.long, device=device)


def compress_video_with_info(
    features: Tensor, attention: Tensor, config: HoliTomConfig, newline: Tensor | None = None
) -> OuterResult:
    """Spec §1–2 outer-LLM merging with bookkeeping; see `compress_video` for the arguments."""
    side = _validate(features, attention, config, newline)
    num_frames, num_tokens, channels = features.shape
    device = features.device

    reference = config.reference_compat
    similarity = frame_similarity(features, reference)  # (F-1, N) float32 (reference: the features' dtype)
    segments, reduced = segment_frames(similarity, config.tau, config.max_window_size)
    total = num_frames * num_tokens
    rho = min(config.retain_ratio / ((total - reduced) / total), 1.0)
    stable = similarity > config.tau  # (F-1, N)
    scores = attention.to(device=device, dtype=torch.float32)
    all_positions = torch.arange(num_tokens, device=device)

    tokens: list[Tensor] = []
    positions: list[Tensor] = []
    frames: list[Tensor] = []
    kinds: list[Tensor] = []

    def emit(x: Tensor, pos: Tensor, frame: Tensor, kind: Tensor) -> None:
        """Appends tokens x (..., C) with their positions, frames and kinds (all shaped like x[..., 0])."""
        tokens.append(x.reshape(-1, channels))
        positions.append(pos.reshape(-1))
        frames.append(frame.reshape(-1))
        kinds.append(kind.reshape(-1))

    for start, end in segments:
        width = end - start + 1
        clip = features[start : end + 1]  # (w, N, C) view

        # Static tokens: mean over the window of each position stable across it, then DPC-KNN merged.
        if width > 1:
            static_mask = stable[start:end].all(0)
            dynamic_pos = (~static_mask).nonzero().squeeze(1)
            static_pos = static_mask.nonzero().squeeze(1)
            num_centres = counts.round_share(static_pos.numel(), rho)
            if num_centres > 0:
                if reference:  # the authors' mean, in the features' dtype
                    static = clip[:, static_pos].mean(0)
                else:  # float32 accumulation without a float32 copy of the window
                    static = clip.mean(0, dtype=torch.float32)[static_pos].to(features.dtype)  # (n_static, C)
                k = min(config.knn, num_centres)
                merged, centres = cluster_merge(static, num_centres, k, config.beta, reference)
                emit(
                    merged,
                    static_pos[centres],
                    torch.full_like(centres, start),
                    torch.full_like(centres, STATIC),
                )
        else:
            dynamic_pos = all_positions

        # Dynamic tokens, all frames of the segment at once: (w, n) with the same n per frame.
        n = dynamic_pos.numel()
        budget = counts.ceil_share(n, rho)
        dominant, contextual = counts.split_budget(budget, config.contextual_share)
        if budget == 0:
            continue
        rows = torch.arange(width, device=device).unsqueeze(1)  # (w, 1)
        dyn_scores = scores[start : end + 1, dynamic_pos]  # (w, n)
        top = select_top_scores(dyn_scores, dominant)  # (w, dominant) indices into dynamic_pos
        kept_pos = dynamic_pos[top]
        kept = clip[rows, kept_pos]  # (w, dominant, C) exact copies
        kept_kinds = [DOMINANT] * dominant
        if contextual > 0:
            chosen = torch.zeros(width, n, dtype=torch.bool, device=device).scatter_(1, top, True)
            # row-major nonzero keeps each frame's remaining tokens in ascending position order
            rest = (~chosen).nonzero()[:, 1].view(width, n - dominant)
            rest_pos = dynamic_pos[rest]
            rest_tokens = clip[rows, rest_pos]  # (w, n - dominant, C)
            merged, centres = cluster_merge(rest_tokens, contextual, min(config.knn, contextual), config.beta, reference)
            kept = torch.cat([kept, merged], 1)
            kept_pos = torch.cat([kept_pos, rest_pos.gather(1, centres)], 1)
            kept_kinds += [CONTEXTUAL] * contextual
        frame_ids = (rows + start).expand(width, budget)
        emit(kept, kept_pos, frame_ids, _long(kept_kinds, device).expand(width, budget))

    out = torch.cat(tokens) if tokens else features.new_zeros(0, channels)
    out_pos = torch.cat(positions) if positions else _long([], device)
    out_frames = torch.cat(frames) if frames else _long([], device)
    out_kinds = torch.cat(kinds) if kinds else _long([], device)
    num_newlines = 0
    if side:
        out, out_pos, out_frames, out_kinds = grid_layout(out, out_pos, out_frames, out_kinds, newline, side)
        num_newlines = int((out_kinds == NEWLINE).sum())
    return OuterResult(
        tokens=out,
        positions=out_pos,
        frames=out_frames,
        kinds=out_kinds,
        segments=segments,
        reduced=reduced,
        adjusted_ratio=rho,
        num_input=total,
        num_static=int((out_kinds == STATIC).sum()),
        num_dominant=int((out_kinds == DOMINANT).sum()),
        num_contextual=int((out_kinds == CONTEXTUAL).sum()),
        num_newlines=num_newlines,
    )


def grid_layout(
    tokens: Tensor, positions: Tensor, frames: Tensor, kinds: Tensor, newline: Tensor, side: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """LLaVA-Video layout: per frame group, tokens by grid position, a newline after each non-empty row.

    tokens (M, C), positions/frames/kinds (M,). Returns the same four with newlines inserted.
    """
    # (frame, position) pairs are unique within the video, so one global sort orders every group.
    key = frames * (side * side) + positions
    order = key.argsort()
    tokens, positions, frames, kinds, key = (t[order] for t in (tokens, positions, frames, kinds, key))
    row = key // side  # unique id of (frame group, grid row)
    row_ends = torch.ones_like(row, dtype=torch.bool)
    row_ends[:-1] = row[1:] != row[:-1]
    # each token moves right by the number of newlines before it
    token_slot = torch.arange(row.numel(), device=row.device) + row_ends.long().cumsum(0) - row_ends.long()
    newline_slot = token_slot[row_ends] + 1
    size = row.numel() + newline_slot.numel()

    out = tokens.new_empty(size, tokens.shape[1])
    out[token_slot] = tokens
    out[newline_slot] = newline.to(device=tokens.device, dtype=tokens.dtype)

    def place(values: Tensor, fill: Tensor | int) -> Tensor:
        placed = values.new_empty(size)
        placed[token_slot] = values
        placed[newline_slot] = fill
        return placed

    return out, place(positions, -1), place(frames, frames[row_ends]), place(kinds, NEWLINE)


def compress_video(
    features: Tensor, attention: Tensor, config: HoliTomConfig, newline: Tensor | None = None
) -> Tensor:
    """HoliTom outer-LLM merging (spec §1–2).

    features: (F, N, C) pooled projected frame tokens; attention: (F, N) pooled received-attention scores;
    newline: (C,) → LLaVA-Video `grid` layout (N must be a square; a newline after every non-empty grid
    row of every frame group); None → OneVision `one_token` layout (the caller appends its single
    trailing newline). Returns (M, C) in the dtype of features.
    """
    return compress_video_with_info(features, attention, config, newline).tokens
