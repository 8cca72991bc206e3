"""Temporal merging of HoliTom (spec §1): frame similarity and the optimal window segmentation.

Pure tensor functions. `segment_frames` never builds an F×F×N tensor: the number of positions stable
across a window s..e is read off per-position run lengths of consecutive stable steps, so time is
O(F·(N + W)) and memory O(F·N).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# Similarities per chunk of `frame_similarity` are chosen so one chunk's float32 product holds about this
# many values: small chunks stay in cache and the video is never copied to float32 at once.
_CHUNK_VALUES = 1 << 20


def check_features(features: Tensor) -> tuple[int, int, int]:
    """ValueError unless features is a floating (F, N, C) tensor; returns (F, N, C)."""
    if not isinstance(features, Tensor) or features.dim() != 3:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"features must be a 3-D tensor (F, N, C), got {shape}")
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating-point tensor, got dtype {features.dtype}")
    num_frames, num_tokens, channels = features.shape
    return num_frames, num_tokens, channels


def frame_similarity(features: Tensor, reference: bool = False) -> Tensor:
    """Cosine similarity of each token with the same position in the next frame.

    features: (F, N, C) any floating dtype. Returns (F-1, N) float32 with
    S[t, p] = <X[t, p], X[t+1, p]> / (max(||X[t, p]||, eps) · max(||X[t+1, p]||, eps)), eps = 1e-12,
    i.e. the dot product of L2-normalised vectors (a zero vector has similarity 0), all in float32.
    reference=True: the authors' arithmetic instead, in the features' dtype (returned in it): each vector
    L2-normalised (`F.normalize`), then `F.cosine_similarity` of the normalised vectors (which normalises
    them again, eps 1e-8), every elementwise step rounded to that dtype.
    """
    num_frames, num_tokens, channels = check_features(features)
    dtype = features.dtype if reference else torch.float32
    out = torch.empty(max(num_frames - 1, 0), num_tokens, dtype=dtype, device=features.device)
    if num_frames < 2:
        return out
    budget = _CHUNK_VALUES if features.device.type == "cpu" else 64 * _CHUNK_VALUES  # fewer launches
    step = max(1, budget // max(1, num_tokens * channels))
    if reference:
        for start in range(0, num_frames - 1, step):
            stop = min(start + step, num_frames - 1)
            unit = F.normalize(features[start : stop + 1], dim=-1)
            out[start:stop] = F.cosine_similarity(unit[:-1], unit[1:], dim=-1)
        return out
    norms = torch.linalg.vector_norm(features, dim=-1, dtype=torch.float32).clamp_min_(1e-12)  # (F, N)
    for start in range(0, num_frames - 1, step):
        stop = min(start + step, num_frames - 1)
        # frames start..stop inclusive give similarities start..stop-1
        chunk = features[start : stop + 1].float()
        out[start:stop] = (chunk[:-1] * chunk[1:]).sum(-1)
    return out.div_(norms[:-1] * norms[1:])


def stable_run_lengths(stable: Tensor) -> Tensor:
    """Consecutive stable steps ending at each step.

    stable: (T, N) bool. Returns (T, N) int64 run[t, p] = number of consecutive True values of
    stable[:, p] ending at (and including) step t; 0 where stable[t, p] is False.
    """
    steps = torch.arange(stable.shape[0], device=stable.device).unsqueeze(1)
    # index of the latest unstable step at or before t (-1 if none); run = t - that index
    last_unstable = torch.where(stable, torch.full_like(steps, -1), steps).cummax(dim=0).values
    return steps - last_unstable


def segment_frames(similarity: Tensor, tau: float, max_window_size: int) -> tuple[list[tuple[int, int]], int]:
    """Partition frames into single frames and windows maximising the total temporal gain (spec §1).

    similarity: (F-1, N) float, S[t, p] between frames t and t+1. A position is stable across s..e when
    S[t, p] > tau for every t in s..e-1; gain(s, e) = (e - s) · #stable positions.
    DP: dp[i] = max(dp[i-1], max_{w=2..min(i+1, W)} dp[i-w] + gain(i-w+1, i)).
    Ties: a single frame is kept unless a window is strictly better; among windows the shortest one
    reaching the maximum wins (w grows from 2 and a longer window replaces only when strictly better).

    Returns (segments, reduced): inclusive (start, end) pairs covering 0..F-1 in order, and dp[F-1].
    """
    if not isinstance(similarity, Tensor) or similarity.dim() != 2:
        shape = tuple(similarity.shape) if isinstance(similarity, Tensor) else type(similarity).__name__
        raise ValueError(f"similarity must be a 2-D tensor (F-1, N), got {shape}")
    if isinstance(max_window_size, bool) or not isinstance(max_window_size, int) or max_window_size < 1:
        raise ValueError(f"max_window_size must be an integer >= 1, got {max_window_size!r}")
    segments, reduced, _ = segment_frames_with_runs(similarity, tau, max_window_size)
    return segments, reduced


def segment_frames_with_runs(
    similarity: Tensor, tau: float, max_window_size: int
) -> tuple[list[tuple[int, int]], int, np.ndarray]:
    """`segment_frames`, also returning the run lengths it used: (F-1, N) int64 numpy, run[t, p] = stable steps
    ending at step t, clamped to the longest window span (so position p is static across a window s..e iff
    run[e-1, p] >= e - s). One device-to-host copy of the stability mask; the DP runs on the host."""
    num_frames = similarity.shape[0] + 1
    longest = min(max_window_size, num_frames)
    if longest < 2:
        return [(i, i) for i in range(num_frames)], 0, np.zeros((num_frames - 1, similarity.shape[1]), np.int64)

    # run[t, p]: stable steps ending at step t. A window ending at frame e spanning k = e - s steps has
    # position p stable iff run[e-1, p] >= k. Clamp to the longest span we ever ask about.
    stable = (similarity.detach() > tau).cpu()  # the one device-to-host copy
    run = stable_run_lengths(stable).clamp_(max=longest - 1).numpy()
    num_positions = run.shape[1]
    spans = np.arange(1, longest, dtype=np.int64)

    # dp_shift[j] = dp[j-1] (dp[-1] = 0). The loop is over frames only; each step is vectorised over
    # window lengths, using O(N + W) memory.
    dp_shift = np.zeros(num_frames + 1, dtype=np.int64)
    choice = [1] * num_frames
    for i in range(1, num_frames):
        widest = min(i + 1, longest)
        # #{p : run[i-1, p] >= k} for k = 1..widest-1 from a histogram of run lengths
        below = np.bincount(run[i - 1], minlength=longest)[: widest - 1].cumsum()
        gains = (num_positions - below) * spans[: widest - 1]  # gains[k-1] = gain(i-k, i)
        # w = 2..widest ↔ dp[i-w] = dp_shift[i+1-w]; flip so index 0 is w=2
        candidates = dp_shift[i + 1 - widest : i][::-1] + gains
        best = int(candidates.argmax())  # first maximum = shortest window reaching it
        value = int(candidates[best])
        if value > dp_shift[i]:  # dp_shift[i] = dp[i-1]: a window must be strictly better than a single frame
            choice[i] = best + 2
        else:
            value = int(dp_shift[i])
        dp_shift[i + 1] = value

    segments: list[tuple[int, int]] = []
    end = num_frames - 1
    while end >= 0:
        start = end - choice[end] + 1
        segments.append((start, end))
        end = start - 1
    segments.reverse()
    return segments, int(dp_shift[num_frames]), run
