"""PruneVid (Huang et al., "PruneVid: Visual Token Pruning for Efficient Video Large Language Models",
arXiv 2412.16117, official code Visual-AI/PruneVid): its before-LLM stage on the pooled frame tokens,
with our budget rule so that exactly B = F·ceil(N·ρ) visual tokens enter the LLM.

As the official code runs it (PLLaVA), on pooled projected tokens X (F, N, C):
1. Frames are clustered with DPC-KNN on their mean token (int(F·γ) clusters) and the cluster labels are
   made contiguous in time (`contiguous_segments`): the segments.
2. Per segment of W frames and per position p, the mean cosine over all ordered frame pairs w ≠ t,
   s[p] = (‖Σ_w x̂_w[p]‖² − W) / (W(W−1)) (`segment_statistics`, linear in W). s[p] > τ: p is static.
3. A static position becomes one token, its mean over the segment's frames; the other positions stay in
   every frame (dynamic). Each static set (one per segment) and each dynamic set (one per frame) is
   reduced to plain cluster means by DPC-KNN (`reduce_sets`).
4. Order (one_token layout): per segment, [static tokens][frame s dynamic]…[frame e dynamic]; inside a set
   the clusters come in descending centre score.

Ours (the official code has no budget: it keeps int(size·0.5) of every set larger than 14):
- `restore_dynamic`: when the sets hold fewer than B tokens, the static positions of lowest s are turned
  back into dynamic ones (τ raised just enough; ties: earlier segment, lower position) until they hold ≥ B.
- `apportion`: set i keeps c_i of its size_i tokens, c_i = floor(size_i·B/P) plus one for the B − Σ floors
  sets of largest remainder (ties: earlier in the output order), P = Σ size_i; so Σ c_i = B exactly and
  every set keeps the same share ρ' = B/P up to one token (ρ' replaces the official cluster_ratio).
- A set keeping all its tokens is not clustered: they stay as they are, in raster order (as the official
  code passes small sets through), so ρ = 1 gives back the vanilla sequence.
- Ties are broken by index (the official code adds unseeded noise to the densities): of equal densities
  the lower index ranks higher; equal scores → lower index first; equally near centres → the centre of
  higher score. The same input always gives the same output.

Host and device: the frame labels and the segment similarities are read from the device once each; the
static mask, the budget rule, every set's count and the output order are planned on the host (numpy) and
uploaded; the grid layout reads one count. Distances follow `holitom.spatial.pairwise_distances`
(float32, ‖x_i − x_j‖/√C); similarities, means and cluster means are accumulated in float32 and returned
in the features' dtype; tokens kept unmerged are bit-exact copies. Nothing is quadratic in F·N: distance
matrices are per set (≤ N×N), computed in chunks of sets.

One module, about 600 lines, for the one algorithm (like `holitom.outer` for HoliTom): its steps share the
host-side plan, the checks and the result type, and each is a tested pure function; a third of the lines
are the docstrings that state shapes and tie rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from holitom import counts
from holitom.outer import NEWLINE, grid_layout, grid_side
from holitom.spatial import pairwise_distances
from holitom.temporal import check_features

# Values of PruneVidResult.kinds (NEWLINE is holitom.outer's, set by the grid layout).
STATIC, DYNAMIC = 0, 1
__all__ = [
    "DYNAMIC",
    "NEWLINE",
    "STATIC",
    "PruneVidResult",
    "apportion",
    "cluster_means",
    "contiguous_segments",
    "dpc_knn_clusters",
    "frame_cluster_labels",
    "frame_segments",
    "prunevid_compress",
    "prunevid_compress_with_info",
    "reduce_sets",
    "restore_dynamic",
    "segment_statistics",
]

# Float32 values one chunk of work may hold (segment sums, per-set distance matrices): bounds memory at any
# frame count while keeping chunks large enough to amortise kernel launches.
_CHUNK_VALUES = 1 << 24


def _shape(value: object) -> object:
    return tuple(value.shape) if isinstance(value, (Tensor, np.ndarray)) else type(value).__name__


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}={value!r}: must be an integer ≥ {low}")
    return int(value)


def _host(value: object, name: str) -> np.ndarray:
    """A host array from a numpy array, a sequence or a CPU tensor (the planning inputs)."""
    if isinstance(value, Tensor):
        if value.device.type != "cpu":
            raise ValueError(
                f"{name} must be on the host (numpy or a CPU tensor), got a {value.device} tensor"
            )
        return value.detach().numpy()
    return np.asarray(value)


# ---------------------------------------------------------------------------------------------- clustering


def _dpc_knn(dist: Tensor, valid: Tensor, n_centres: Tensor, k: int, c_max: int) -> tuple[Tensor, Tensor]:
    """`dpc_knn_clusters` without checks or device reads; c_max = max(n_centres) ≥ 1."""
    batch, n, _ = dist.shape
    device = dist.device
    dist = dist.float()
    positions = torch.arange(n, device=device)
    nearest = dist.masked_fill(~valid.unsqueeze(1), math.inf).topk(min(k, n), dim=-1, largest=False).values
    found = nearest.isfinite()  # a set of fewer than k tokens averages over those there are
    mean_square = torch.where(found, nearest.square(), 0.0).sum(-1) / found.sum(-1).clamp(min=1)
    density = torch.exp(-mean_square).masked_fill(~valid, -1.0)  # padding ranks below every token
    order = torch.sort(density, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(-1, order, positions.expand(batch, n))  # 0 = highest
    higher = rank.unsqueeze(1) < rank.unsqueeze(2)  # [b, i, j]: j ranks above i
    pair_ok = valid.unsqueeze(2) & valid.unsqueeze(1)
    dist_max = dist.masked_fill(~pair_ok, -math.inf).flatten(1).amax(-1).view(batch, 1, 1)
    delta = torch.where(higher, dist, dist_max).amin(-1)
    score = (delta * density).masked_fill(~valid, -math.inf)
    centres = torch.sort(score, dim=-1, descending=True, stable=True).indices[:, :c_max]

    slots = torch.arange(c_max, device=device)
    slot_ok = slots < n_centres.unsqueeze(1)  # (B, c_max)
    to_centres = dist.gather(2, centres.unsqueeze(1).expand(batch, n, c_max))
    assign = to_centres.masked_fill(~slot_ok.unsqueeze(1), math.inf).argmin(-1)  # first = higher score
    # Centres join their own cluster (only matters for duplicate tokens); filler slots write past the end.
    target = torch.where(slot_ok, centres, n + slots)
    extended = torch.cat([assign, assign.new_zeros(batch, c_max)], dim=1)
    assign = extended.scatter_(1, target, slots.expand(batch, c_max))[:, :n]
    return centres, assign.masked_fill(~valid | (n_centres == 0).unsqueeze(1), -1)


def dpc_knn_clusters(distances: Tensor, valid: Tensor, n_centres: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """DPC-KNN over the valid tokens of each row, centres in descending score order (PruneVid's order).

    distances: (B, n, n) pairwise distances (compared in float32); valid: (B, n) bool, the tokens of each
    row's set (the others are padding: nobody's neighbour, centre or member); n_centres: (B,) long,
    0 ≤ c_b ≤ #valid_b; k ≥ 1 neighbours (a set of fewer than k tokens uses all of them).
    density_i = exp(−mean squared distance to its k nearest tokens, itself included); delta_i = distance to
    the nearest token ranked higher by (density, −index) (the set's largest distance for the top one);
    score = delta·density. Each valid token joins its nearest centre (equally near: the higher-score one);
    every centre is in its own cluster.
    Returns (centres (B, c_max) long, c_max = max c_b: row b's first c_b entries are its centres, highest
    score first, the rest filler; assign (B, n) long: the slot in the row's centre list of each valid
    token's cluster, −1 for padding and for rows without centres).
    """
    if not isinstance(distances, Tensor) or distances.dim() != 3 or distances.shape[1] != distances.shape[2]:
        raise ValueError(f"distances must be a tensor of shape (B, n, n), got {_shape(distances)}")
    batch, n, _ = distances.shape
    if not isinstance(valid, Tensor) or valid.dtype != torch.bool or tuple(valid.shape) != (batch, n):
        raise ValueError(f"valid must be a bool tensor of shape {(batch, n)}, got {_shape(valid)}")
    if not isinstance(n_centres, Tensor) or n_centres.dtype != torch.long or n_centres.shape != (batch,):
        raise ValueError(f"n_centres must be a LongTensor of shape ({batch},), got {_shape(n_centres)}")
    _check_int("k", k, 1)
    if batch and (bool((n_centres < 0).any()) or bool((n_centres > valid.sum(-1)).any())):
        raise ValueError("n_centres must be in [0, number of valid tokens] for every row")
    c_max = int(n_centres.max()) if batch else 0
    if c_max == 0:
        none = torch.full((batch, n), -1, dtype=torch.long, device=distances.device)
        return torch.zeros(batch, 0, dtype=torch.long, device=distances.device), none
    return _dpc_knn(distances, valid, n_centres, k, c_max)


def _cluster_means(tokens: Tensor, assign: Tensor, n_clusters: int) -> Tensor:
    """`cluster_means` without checks."""
    batch, n, channels = tokens.shape
    members = assign.unsqueeze(1) == torch.arange(n_clusters, device=tokens.device).view(1, n_clusters, 1)
    sizes = members.sum(-1)  # (B, c)
    weights = members.float()  # (B, c, n)
    means = torch.bmm(weights, tokens.float()) / sizes.clamp(min=1).unsqueeze(-1)
    only = weights.argmax(-1, keepdim=True).expand(batch, n_clusters, channels)  # the member, if one
    return torch.where((sizes == 1).unsqueeze(-1), tokens.gather(1, only), means.to(tokens.dtype))


def cluster_means(tokens: Tensor, assign: Tensor, n_clusters: int) -> Tensor:
    """Plain mean of each cluster's members (a centre counts as one member, as in the official code).

    tokens: (B, n, C); assign: (B, n) long cluster slot of each token, −1 = in no cluster. Returns
    (B, n_clusters, C) in tokens' dtype, summed in float32; a one-member cluster is its token bit for bit;
    an empty cluster is zeros.
    """
    if not isinstance(tokens, Tensor) or tokens.dim() != 3 or not tokens.is_floating_point():
        raise ValueError(f"tokens must be a floating tensor of shape (B, n, C), got {_shape(tokens)}")
    if not isinstance(assign, Tensor) or assign.dtype != torch.long or assign.shape != tokens.shape[:2]:
        raise ValueError(
            f"assign must be a LongTensor of shape {tuple(tokens.shape[:2])}, got {_shape(assign)}"
        )
    _check_int("n_clusters", n_clusters, 0)
    if assign.numel() and (int(assign.min()) < -1 or int(assign.max()) >= n_clusters):
        raise ValueError(f"assign values must be −1 or in [0, {n_clusters})")
    return _cluster_means(tokens, assign, n_clusters)


def reduce_sets(tokens: Tensor, valid: object, n_keep: object, k: int) -> tuple[Tensor, Tensor]:
    """Reduce the valid tokens of each row (a set) to n_keep[b] tokens.

    tokens: (B, n, C) on any device; valid: (B, n) bool and n_keep: (B,) integers in [0, #valid_b], both on
    the host (numpy or CPU tensors: they decide every shape); k: DPC-KNN neighbours.
    A row keeping all its tokens keeps them as they are (bit-exact) in raster order; otherwise its tokens
    are clustered (`dpc_knn_clusters`) into n_keep[b] cluster means (`cluster_means`), highest centre score
    first, each at its centre's position. Returns (reduced (B, c_max, C) in tokens' dtype, positions
    (B, c_max) long), on tokens' device, c_max = max n_keep; slots beyond n_keep[b] have position −1.
    Distances are computed per chunk of rows, each row cut to its chunk's largest set.
    """
    if not isinstance(tokens, Tensor) or tokens.dim() != 3 or not tokens.is_floating_point():
        raise ValueError(f"tokens must be a floating tensor of shape (B, n, C), got {_shape(tokens)}")
    batch, n, channels = tokens.shape
    valid_h, keep_h = _host(valid, "valid"), _host(n_keep, "n_keep")
    if valid_h.dtype != np.bool_ or valid_h.shape != (batch, n):
        raise ValueError(f"valid must be a bool array of shape {(batch, n)}, got {_shape(valid_h)}")
    sizes = valid_h.sum(-1)
    if (
        keep_h.shape != (batch,)
        or keep_h.dtype.kind not in "iu"
        or (keep_h < 0).any()
        or (keep_h > sizes).any()
    ):
        raise ValueError(f"n_keep must be ({batch},) integers in [0, number of valid tokens] for every row")
    _check_int("k", k, 1)
    device = tokens.device
    keep_h = keep_h.astype(np.int64)
    raster = np.argsort(~valid_h, axis=-1, kind="stable")  # each row's valid positions first, ascending
    c_max = int(keep_h.max()) if batch else 0
    kept_pos = np.where(np.arange(c_max) < keep_h[:, None], raster[:, :c_max], -1)
    positions = torch.as_tensor(kept_pos, device=device)
    reduced = tokens.gather(1, positions.clamp(min=0).unsqueeze(-1).expand(batch, c_max, channels))

    clustered = np.flatnonzero((keep_h > 0) & (keep_h < sizes))
    if clustered.size:
        widest = int(sizes[clustered].max())
        rows_per_chunk = max(1, _CHUNK_VALUES // (widest * (widest + channels)))
        for chunk in np.array_split(clustered, math.ceil(clustered.size / rows_per_chunk)):
            width, kept = int(sizes[chunk].max()), int(keep_h[chunk].max())
            plan = np.concatenate([chunk, keep_h[chunk], sizes[chunk], raster[chunk, :width].ravel()])
            plan_d = torch.as_tensor(plan, device=device).split([chunk.size] * 3 + [chunk.size * width])
            rows, wanted, size, local = plan_d
            local = local.view(chunk.size, width)  # each row's set, then padding
            ok = torch.arange(width, device=device) < size.unsqueeze(1)
            x = tokens[rows.unsqueeze(1), local]  # (r, width, C)
            centres, assign = _dpc_knn(pairwise_distances(x), ok, wanted, k, kept)
            reduced[rows, :kept] = _cluster_means(x, assign, kept)
            slots_ok = torch.arange(kept, device=device) < wanted.unsqueeze(1)
            positions[rows, :kept] = torch.where(slots_ok, local.gather(1, centres), -1)
    return reduced, positions


# ---------------------------------------------------------------------------------------------- segments


def contiguous_segments(labels: Sequence[int]) -> list[tuple[int, int]]:
    """Temporal segments from per-frame cluster labels, by the official refinement rule.

    1. Split each label's frames into maximal runs. A label whose longest run is one frame loses all its
       frames; otherwise its runs shorter than its longest are lost (all equally long longest runs stay).
    2. Left to right, each maximal block of lost frames takes the label of its longer neighbouring run
       (the left run measured after the blocks before it were filled); a tie or no right run → left; no
       neighbour at all → one label for everything.
    3. Segments = maximal runs of equal label. Returns inclusive (start, end) pairs covering 0..F−1 in
       order; every segment has ≥ 2 frames when F ≥ 2.
    """
    if isinstance(labels, (Tensor, np.ndarray)):
        labels = labels.tolist()
    if (
        not isinstance(labels, Sequence)
        or not labels
        or any(isinstance(v, bool) or not isinstance(v, int) for v in labels)
    ):
        raise ValueError(f"labels must be a non-empty sequence of integers, got {labels!r}")
    runs: list[tuple[int, int]] = []  # (label, length)
    for label in labels:
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1] + 1)
        else:
            runs.append((label, 1))
    longest: dict[int, int] = {}
    for label, length in runs:
        longest[label] = max(longest.get(label, 0), length)
    kept = [length == longest[label] > 1 for label, length in runs]

    final: list[list[int]] = []  # [label, length] runs of the refined labels, equal neighbours merged
    i = 0
    while i < len(runs):
        if kept[i]:
            label, length = runs[i]
            i += 1
        else:
            j, length = i, 0
            while j < len(runs) and not kept[j]:
                length += runs[j][1]
                j += 1
            left_label, left_length = final[-1] if final else (None, 0)
            right_label, right_length = runs[j] if j < len(runs) else (None, 0)
            if left_label is not None and left_length >= right_length:
                label = left_label
            else:
                label = right_label if right_label is not None else labels[0]
            i = j
        if final and final[-1][0] == label:
            final[-1][1] += length
        else:
            final.append([label, length])

    segments, start = [], 0
    for _, length in final:
        segments.append((start, start + length - 1))
        start += length
    return segments


def frame_cluster_labels(descriptors: Tensor, n_clusters: int, k: int) -> Tensor:
    """DPC-KNN labels of frames: descriptors (F, C) → (F,) long, the slot of each frame's centre in the
    centre list (0 = highest score). 1 ≤ n_clusters ≤ F; k is clamped to F."""
    if not isinstance(descriptors, Tensor) or descriptors.dim() != 2 or not descriptors.is_floating_point():
        raise ValueError(f"descriptors must be a floating tensor of shape (F, C), got {_shape(descriptors)}")
    num_frames = descriptors.shape[0]
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or not 1 <= n_clusters <= num_frames:
        raise ValueError(f"n_clusters={n_clusters!r}: must be an integer in [1, {num_frames}]")
    _check_int("k", k, 1)
    device = descriptors.device
    valid = torch.ones(1, num_frames, dtype=torch.bool, device=device)
    wanted = torch.full((1,), n_clusters, dtype=torch.long, device=device)
    _, assign = _dpc_knn(pairwise_distances(descriptors.unsqueeze(0)), valid, wanted, k, n_clusters)
    return assign[0]


def frame_segments(features: Tensor, segment_ratio: float, k: int) -> list[tuple[int, int]]:
    """PruneVid's temporal segments: DPC-KNN over the frames' mean tokens with max(1, int(F·γ)) clusters
    (`frame_cluster_labels`), made contiguous (`contiguous_segments`). One device read (the labels).

    features: (F, N, C); segment_ratio γ in (0, 1]; k: neighbours (clamped to F; the official k = 7 needs
    F ≥ 7). Returns inclusive (start, end) pairs covering 0..F−1 in order.
    """
    num_frames, num_tokens, channels = check_features(features)
    if num_frames == 0 or num_tokens == 0 or channels == 0:
        raise ValueError(f"features must have F, N, C > 0, got shape {tuple(features.shape)}")
    counts.check_share("segment_ratio", segment_ratio, low_open=True)
    n_clusters = max(1, counts.floor_share(num_frames, segment_ratio))
    labels = frame_cluster_labels(features.mean(1, dtype=torch.float32), n_clusters, k)
    return contiguous_segments(labels.tolist())


def _check_segments(segments: Sequence[tuple[int, int]], num_frames: int) -> None:
    start = 0
    for item in segments:
        if not isinstance(item, tuple) or len(item) != 2 or item[0] != start or item[1] < item[0]:
            break
        start = item[1] + 1
    else:
        if start == num_frames:
            return
    raise ValueError(f"segments must be inclusive (start, end) pairs covering 0..{num_frames - 1} in order")


def segment_statistics(
    features: Tensor, segments: Sequence[tuple[int, int]], frames_per_chunk: int | None = None
) -> tuple[Tensor, Tensor]:
    """Per segment and position: the mean pairwise cosine over the segment's frames, and the mean token.

    features: (F, N, C); segments: inclusive (start, end) pairs covering 0..F−1 in order.
    similarity[j, p] = mean over ordered frame pairs w ≠ t of cos(x_w[p], x_t[p])
                     = (‖Σ_w x̂_w[p]‖² − W) / (W(W−1)), x̂ = x / max(‖x‖, 1e-12) (a zero vector counts −1,
    as in the official code, which subtracts W for the self-pairs); −inf for a one-frame segment (no pairs).
    means[j, p] = mean of x_w[p] over the segment. Both are summed in float32 over chunks of
    `frames_per_chunk` frames (default: a bounded number of values): memory O(S·N·C), never W²·N; no device
    reads. Returns (similarity (S, N) float32, means (S, N, C) in features' dtype).
    """
    num_frames, num_tokens, channels = check_features(features)
    _check_segments(segments, num_frames)
    if frames_per_chunk is not None:
        _check_int("frames_per_chunk", frames_per_chunk, 1)
    device = features.device
    widths_h = np.array([end - start + 1 for start, end in segments])
    segment_of_frame_h = np.repeat(np.arange(len(segments)), widths_h)
    segment_of_frame, widths = torch.as_tensor(
        np.concatenate([segment_of_frame_h, widths_h]), device=device
    ).split([num_frames, len(segments)])
    widths = widths.float()
    similarity = torch.empty(len(segments), num_tokens, dtype=torch.float32, device=device)
    means = torch.empty(len(segments), num_tokens, channels, dtype=features.dtype, device=device)
    step = frames_per_chunk or max(1, _CHUNK_VALUES // max(1, num_tokens * channels))

    carry: tuple[Tensor, Tensor] | None = None  # sums of the segment still open at the chunk's start
    for start in range(0, num_frames, step):
        stop = min(start + step, num_frames)
        first, last = int(segment_of_frame_h[start]), int(segment_of_frame_h[stop - 1])
        # (segments, frames) membership of the chunk: per-segment sums as one matrix product each
        local = torch.arange(first, last + 1, device=device).unsqueeze(1) == segment_of_frame[start:stop]
        local = local.float()
        x = features[start:stop].float()
        unit = x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-12)
        sums = (local @ x.flatten(1)).view(-1, num_tokens, channels)
        unit_sums = (local @ unit.flatten(1)).view(-1, num_tokens, channels)
        if carry is not None:
            sums[0] += carry[0]
            unit_sums[0] += carry[1]
        done = last - first + int(segments[last][1] == stop - 1)  # segments first..first+done−1 end here
        if done:
            w = widths[first : first + done].view(-1, 1)
            pairs = (unit_sums[:done].square().sum(-1) - w) / (w * (w - 1)).clamp(min=1)
            similarity[first : first + done] = torch.where(w > 1, pairs, -math.inf)
            means[first : first + done] = (sums[:done] / w.unsqueeze(-1)).to(features.dtype)
        carry = (sums[done], unit_sums[done]) if done <= last - first else None
    return similarity, means


# ---------------------------------------------------------------------------------------------- budget


def restore_dynamic(
    similarity: object, static: object, widths: object, budget: int
) -> tuple[np.ndarray, int]:
    """Ours: turn static positions back into dynamic ones until the sets hold at least `budget` tokens.

    Host planning: similarity (S, N) float, static (S, N) bool, widths (S,) frames per segment (numpy or
    CPU tensors). The sets hold P = F·N − Σ_j n_static_j·(W_j − 1) tokens (a static position is one token
    instead of W_j). While P < budget, the static position of lowest similarity (ties: earlier segment, then
    lower position) turns dynamic, adding W_j − 1: τ is raised just enough. budget ≤ F·N.
    Returns (static mask (S, N) numpy bool, positions turned back).
    """
    similarity_h, static_h, widths_h = (
        _host(v, n) for v, n in ((similarity, "similarity"), (static, "static"), (widths, "widths"))
    )
    if similarity_h.ndim != 2:
        raise ValueError(f"similarity must be an array of shape (S, N), got {_shape(similarity_h)}")
    num_segments, num_tokens = similarity_h.shape
    if static_h.dtype != np.bool_ or static_h.shape != similarity_h.shape:
        raise ValueError(f"static must be a bool array of shape {similarity_h.shape}, got {_shape(static_h)}")
    if widths_h.shape != (num_segments,) or widths_h.dtype.kind not in "iu" or (widths_h < 1).any():
        raise ValueError(f"widths must be ({num_segments},) integers ≥ 1, got {_shape(widths_h)}")
    _check_int("budget", budget, 0)
    total = int(widths_h.sum()) * num_tokens
    if budget > total:
        raise ValueError(f"budget={budget}: must be at most F·N = {total}")
    gain = np.broadcast_to((widths_h.astype(np.int64) - 1)[:, None], static_h.shape)  # tokens a revert adds
    held = total - int(gain[static_h].sum())
    if held >= budget:
        return static_h.copy(), 0
    # static positions by ascending similarity; the stable sort keeps (segment, position) order on ties
    key = np.where(static_h, similarity_h, np.inf).ravel()
    order = np.argsort(key, kind="stable")[: int(static_h.sum())]
    count = int(np.searchsorted(gain.ravel()[order].cumsum(), budget - held)) + 1
    restored = static_h.copy().ravel()
    restored[order[:count]] = False
    return restored.reshape(static_h.shape), count


def apportion(sizes: object, total: int) -> np.ndarray:
    """Ours: split `total` kept tokens over sets in proportion to their sizes (largest remainders).

    Host planning: sizes (n,) integers ≥ 0 (numpy or a CPU tensor) with P = Σ sizes ≥ total ≥ 0. Set i gets
    floor(size_i·total/P), and the total − Σ floors tokens left go one each to the sets of largest remainder
    (size_i·total mod P; ties: lower index). Exact integer arithmetic. Returns (n,) int64 with Σ = total,
    each ≤ size_i and within one of size_i·total/P.
    """
    sizes_h = _host(sizes, "sizes")
    if sizes_h.ndim != 1 or sizes_h.dtype.kind not in "iu" or (sizes_h < 0).any():
        raise ValueError(f"sizes must be a 1-D array of integers ≥ 0, got {_shape(sizes_h)}")
    _check_int("total", total, 0)
    sizes_h = sizes_h.astype(np.int64)
    held = int(sizes_h.sum())
    if total > held:
        raise ValueError(f"total={total}: must be at most the sum of the sizes ({held})")
    if held == 0:
        return np.zeros_like(sizes_h)
    scaled = sizes_h * total
    kept = scaled // held
    order = np.argsort(-(scaled - kept * held), kind="stable")
    kept[order[: total - int(kept.sum())]] += 1
    return kept


# ---------------------------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class PruneVidResult:
    """Output of `prunevid_compress_with_info`.

    tokens: (M, C) the visual token sequence in the input dtype (newlines included for the grid layout).
    positions: (M,) long, grid position of each token (a cluster mean takes its centre's; −1 for newlines).
    frames: (M,) long, frame of each token; static tokens carry their segment's first frame; a newline the
        frame group whose row it ends. kinds: (M,) long, STATIC / DYNAMIC / NEWLINE.
    segments: inclusive (start, end) frame pairs. budget: B = F·ceil(N·ρ) (tokens without newlines).
    held: P, the tokens of all sets before clustering (after `restore_dynamic`); restored: static positions
    turned back into dynamic ones by the budget rule.
    """

    tokens: Tensor
    positions: Tensor
    frames: Tensor
    kinds: Tensor
    segments: list[tuple[int, int]]
    budget: int
    held: int
    restored: int
    num_static: int
    num_dynamic: int
    num_newlines: int

    @property
    def adjusted_ratio(self) -> float:
        """ρ' = B / P: the share of every set that is kept (in place of the official cluster_ratio)."""
        return self.budget / self.held if self.held else 1.0


def _validate(features: Tensor, tau: float, segment_ratio: float, knn: int, newline: Tensor | None) -> int:
    """Checks the inputs; returns the grid side (0 for the one_token layout)."""
    num_frames, num_tokens, channels = check_features(features)
    if num_frames == 0 or num_tokens == 0 or channels == 0:
        raise ValueError(f"features must have F, N, C > 0, got shape {tuple(features.shape)}")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau):
        raise ValueError(f"tau={tau!r}: must be a finite number")
    counts.check_share("segment_ratio", segment_ratio, low_open=True)
    _check_int("knn", knn, 1)
    return grid_side(num_tokens, channels, newline)


def prunevid_compress_with_info(
    features: Tensor,
    retain_ratio: float,
    tau: float,
    segment_ratio: float,
    knn: int,
    newline: Tensor | None = None,
) -> PruneVidResult:
    """PruneVid's before-LLM stage to exactly B = F·ceil(N·ρ) tokens; see the module docstring.

    features: (F, N, C) pooled projected frame tokens; retain_ratio ρ in (0, 1]; tau τ (a position is static
    when its mean pairwise cosine within its segment is > τ); segment_ratio γ in (0, 1]; knn ≥ 1 DPC-KNN
    neighbours (frames and tokens); newline (C,) → LLaVA-Video `grid` layout (N a square; per frame group
    the tokens by grid position, a newline after every non-empty row; static tokens in their segment's
    first frame group); None → OneVision `one_token` order (the caller appends its single newline).
    """
    side = _validate(features, tau, segment_ratio, knn, newline)
    num_frames, num_tokens, _ = features.shape
    budget = counts.outer_tokens(num_frames, num_tokens, retain_ratio)
    device = features.device

    segments = frame_segments(features, segment_ratio, knn)
    widths = np.array([end - start + 1 for start, end in segments])
    starts = np.array([start for start, _ in segments])
    num_segments = len(segments)
    similarity, means = segment_statistics(features, segments)
    similarity_h = similarity.cpu().numpy()  # the second and last device read before the layout
    static, restored = restore_dynamic(similarity_h, similarity_h > tau, widths, budget)

    # The plan. Sets in output order: segment j's static set at slot start_j + j, frame t's dynamic set at
    # slot t + j + 1 (t in segment j).
    segment_of_frame = np.repeat(np.arange(num_segments), widths)
    static_slot = starts + np.arange(num_segments)
    frame_slot = np.arange(num_frames) + segment_of_frame + 1
    static_sizes = static.sum(-1)
    sizes = np.empty(num_segments + num_frames, dtype=np.int64)
    sizes[static_slot] = static_sizes
    sizes[frame_slot] = num_tokens - static_sizes[segment_of_frame]
    kept = apportion(sizes, budget)
    static_keep, frame_keep = kept[static_slot], kept[frame_slot]

    static_tokens, static_pos = reduce_sets(means, static, static_keep, knn)
    dynamic_tokens, dynamic_pos = reduce_sets(features, ~static[segment_of_frame], frame_keep, knn)

    # Output order: every set's kept slots (its first `keep` ones), sets by slot.
    static_width, frame_width = static_tokens.shape[1], dynamic_tokens.shape[1]
    static_src = _kept_slots(static_keep, static_width)
    frame_src = _kept_slots(frame_keep, frame_width) + num_segments * static_width
    source = np.concatenate([static_src, frame_src])
    slot = np.concatenate([np.repeat(static_slot, static_keep), np.repeat(frame_slot, frame_keep)])
    order = np.argsort(slot, kind="stable")
    frame_ids = np.concatenate([np.repeat(starts, static_keep), np.repeat(np.arange(num_frames), frame_keep)])
    kind_ids = np.concatenate([np.full(static_src.size, STATIC), np.full(frame_src.size, DYNAMIC)])
    plan = torch.as_tensor(np.concatenate([source[order], frame_ids[order], kind_ids[order]]), device=device)
    gather, frame_ids_d, kinds = plan.view(3, budget)
    tokens = torch.cat([static_tokens.flatten(0, 1), dynamic_tokens.flatten(0, 1)])[gather]
    positions = torch.cat([static_pos.flatten(), dynamic_pos.flatten()])[gather]

    num_newlines = 0
    if side:
        tokens, positions, frame_ids_d, kinds = grid_layout(
            tokens, positions, frame_ids_d, kinds, newline, side
        )
        num_newlines = tokens.shape[0] - budget
    return PruneVidResult(
        tokens=tokens,
        positions=positions,
        frames=frame_ids_d,
        kinds=kinds,
        segments=segments,
        budget=budget,
        held=int(sizes.sum()),
        restored=restored,
        num_static=int(static_src.size),
        num_dynamic=int(frame_src.size),
        num_newlines=num_newlines,
    )


def _kept_slots(keep: np.ndarray, width: int) -> np.ndarray:
    """Flat indices into a (rows, width) layout of each row's first keep[row] slots, row by row."""
    rows = np.repeat(np.arange(keep.size), keep)
    within = np.arange(rows.size) - np.repeat(np.cumsum(keep) - keep, keep)
    return rows * width + within


def prunevid_compress(
    features: Tensor,
    retain_ratio: float,
    tau: float,
    segment_ratio: float,
    knn: int,
    newline: Tensor | None = None,
) -> Tensor:
    """The token sequence of `prunevid_compress_with_info`: (B, C) for one_token (the caller appends the
    newline), B tokens plus the row newlines for the grid layout; in features' dtype."""
    return prunevid_compress_with_info(features, retain_ratio, tau, segment_ratio, knn, newline).tokens
