"""Spatial merging of HoliTom (spec §2): top-score selection, DPC-KNN clustering and β-merging.

Pure tensor functions batched over a leading dimension (e.g. the frames of a segment). Distances are
computed in float32: dist(i, j) = ||x_i - x_j|| / sqrt(C) (`torch.cdist`). Every tie is broken by
position, lower position first, so the same input always gives the same output:
- top scores: stable descending sort, the lower position wins among equal scores;
- density: token j counts as "higher" than token i when (density_j, -j) > (density_i, -i)
  lexicographically, so among equal densities the lower position is higher;
- nearest centre: the centre with the lowest index among equally near ones.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _shape(value: object) -> object:
    return tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__


def _as_batch(x: Tensor, name: str) -> tuple[Tensor, bool]:
    """(m, C) → (1, m, C) so every function works on (B, m, C); returns whether it was unbatched."""
    if not isinstance(x, Tensor) or x.dim() not in (2, 3):
        raise ValueError(f"{name} must be a tensor of shape (m, C) or (B, m, C), got {_shape(x)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return (x.unsqueeze(0), True) if x.dim() == 2 else (x, False)


def pairwise_distances(x: Tensor, y: Tensor | None = None) -> Tensor:
    """dist(i, j) = ||x_i - y_j|| / sqrt(C) in float32.

    x: (B, m, C), y: (B, c, C) (default x). Returns (B, m, c) float32.
    """
    xf = x.float()
    yf = xf if y is None else y.float()
    return torch.cdist(xf, yf) / math.sqrt(x.shape[-1])


def select_top_scores(scores: Tensor, n_keep: int) -> Tensor:
    """Indices of the `n_keep` highest scores per row, in ascending position order.

    scores: (B, n) or (n,). Returns LongTensor (B, n_keep) (or (n_keep,)). Equal scores: lower position
    wins (stable sort). Scores are compared in float32.
    """
    if not isinstance(scores, Tensor) or scores.dim() not in (1, 2):
        raise ValueError(f"scores must be a tensor of shape (n,) or (B, n), got {_shape(scores)}")
    n = scores.shape[-1]
    if isinstance(n_keep, bool) or not isinstance(n_keep, int) or not 0 <= n_keep <= n:
        raise ValueError(f"n_keep must be an integer in [0, {n}], got {n_keep!r}")
    order = torch.sort(scores.float(), dim=-1, descending=True, stable=True).indices
    return order[..., :n_keep].sort(dim=-1).values


def _check_counts(m: int, n_centres: int, k: int) -> None:
    if isinstance(n_centres, bool) or not isinstance(n_centres, int) or not 0 <= n_centres <= m:
        raise ValueError(f"n_centres must be an integer in [0, {m}], got {n_centres!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")


def _centres_from_distances(dist: Tensor, n_centres: int, k: int) -> Tensor:
    """DPC-KNN on a (B, m, m) float32 distance matrix; returns (B, n_centres) sorted indices."""
    batch, m, _ = dist.shape
    nearest = dist.topk(min(k, m), dim=-1, largest=False).values  # (B, m, k), itself included
    density = (-nearest.square().mean(-1)).exp()  # (B, m)
    # rank 0 = highest (density, -position); "higher" means strictly smaller rank
    order = torch.sort(density, dim=-1, descending=True, stable=True).indices
    positions = torch.arange(m, device=dist.device).expand(batch, m)
    rank = torch.empty_like(order).scatter_(-1, order, positions)
    higher = rank.unsqueeze(1) < rank.unsqueeze(2)  # higher[b, i, j]: j is higher than i
    dist_max = dist.flatten(1).max(-1).values.view(batch, 1, 1)
    delta = torch.where(higher, dist, dist_max).min(-1).values  # (B, m)
    return select_top_scores(delta * density, n_centres)


def _merge_with_distances(
    x: Tensor, centre_idx: Tensor, to_centres: Tensor, beta: float, reference: bool = False
) -> Tensor:
    """x (B, m, C), centre_idx (B, c), to_centres (B, m, c) distances → merged centres (B, c, C).

    reference=True: the authors' arithmetic in x's dtype: the members' mean rounded to that dtype
    (float32 sum × 1/count), then β·centre + (1−β)·mean with each product rounded to it.
    """
    batch, m, channels = x.shape
    num_centres = centre_idx.shape[1]
    centres = x.gather(1, centre_idx.unsqueeze(-1).expand(batch, num_centres, channels))  # (B, c, C)
    if num_centres == 0 or num_centres == m:
        return centres
    assign = to_centres.argmin(-1)  # (B, m); the lowest centre index among equally near ones
    is_centre = torch.zeros(batch, m, dtype=torch.bool, device=x.device).scatter_(1, centre_idx, True)
    # Centres are their own cluster but not their own member: only non-centres are summed, through a
    # (B, c, m) membership matrix so the sum is one batched matmul.
    weight = (~is_centre).float()  # (B, m)
    members = torch.zeros(batch, num_centres, m, dtype=torch.float32, device=x.device)
    members.scatter_(1, assign.unsqueeze(1), weight.unsqueeze(1))
    sums = torch.bmm(members, x.float())  # (B, c, C)
    counts = members.sum(-1)  # (B, c)
    if reference:
        mean = (sums * (1.0 / counts.clamp(min=1.0)).unsqueeze(-1)).to(x.dtype)
        merged = centres * beta + mean * (1.0 - beta)
        return torch.where((counts > 0).unsqueeze(-1), merged, centres)
    merged = beta * centres.float() + (1.0 - beta) * sums / counts.clamp(min=1.0).unsqueeze(-1)
    # memberless centres are returned as they are (no float32 round trip)
    return torch.where((counts > 0).unsqueeze(-1), merged.to(x.dtype), centres)


def dpc_knn_centres(x: Tensor, n_centres: int, k: int) -> Tensor:
    """Density-peak clustering (DPC-KNN) centres.

    x: (B, m, C) or (m, C). density_i = exp(-mean squared dist to its k nearest tokens, itself included);
    delta_i = min dist to a higher-density token (the maximum of all of the item's distances for the
    highest one); score = delta · density. Returns LongTensor (B, n_centres) (or (n_centres,)): the
    indices of the `n_centres` highest scores, sorted by position. k larger than m is clamped to m.
    """
    xb, unbatched = _as_batch(x, "x")
    _check_counts(xb.shape[1], n_centres, k)
    if n_centres == 0:
        centres = torch.zeros(xb.shape[0], 0, dtype=torch.long, device=xb.device)
    else:
        centres = _centres_from_distances(pairwise_distances(xb), n_centres, k)
    return centres[0] if unbatched else centres


def merge_into_centres(x: Tensor, centre_idx: Tensor, beta: float) -> Tensor:
    """Merge every non-centre token into its nearest centre.

    x: (B, m, C) or (m, C); centre_idx: LongTensor (B, c) or (c,) of distinct indices into m.
    A centre with members becomes beta·centre + (1-beta)·mean(members) (computed in float32); a centre
    without members is returned unchanged (bit-exact). Returns (B, c, C) (or (c, C)) in x's dtype,
    centres in the order of centre_idx.
    """
    xb, unbatched = _as_batch(x, "x")
    batch, m, _ = xb.shape
    if not isinstance(centre_idx, Tensor) or centre_idx.dtype != torch.long:
        raise ValueError(f"centre_idx must be a LongTensor, got {_shape(centre_idx)}")
    cb = centre_idx.unsqueeze(0) if centre_idx.dim() == 1 else centre_idx
    if cb.dim() != 2 or cb.shape[0] != batch:
        raise ValueError(f"centre_idx must have shape (B, c) with B={batch}, got {tuple(centre_idx.shape)}")
    if cb.numel() and (int(cb.min()) < 0 or int(cb.max()) >= m):
        raise ValueError(f"centre_idx values must be in [0, {m})")
    _check_beta(beta)
    centres = xb.gather(1, cb.unsqueeze(-1).expand(-1, -1, xb.shape[-1]))
    out = _merge_with_distances(xb, cb, pairwise_distances(xb, centres), beta)
    return out[0] if unbatched else out


def cluster_merge(x: Tensor, n_centres: int, k: int, beta: float, reference: bool = False) -> tuple[Tensor, Tensor]:
    """`dpc_knn_centres` then `merge_into_centres`, sharing one distance matrix.

    x: (B, m, C) or (m, C). Returns (merged (B, c, C), centre_idx (B, c)) (unbatched shapes for 2-D x).
    reference: the merge in x's dtype as the authors' code does it (see `_merge_with_distances`).
    """
    xb, unbatched = _as_batch(x, "x")
    batch, m, channels = xb.shape
    _check_counts(m, n_centres, k)
    _check_beta(beta)
    if n_centres == 0:
        centres = torch.zeros(batch, 0, dtype=torch.long, device=xb.device)
        merged = xb.new_zeros(batch, 0, channels)
    else:
        dist = pairwise_distances(xb)
        centres = _centres_from_distances(dist, n_centres, k)
        to_centres = dist.gather(2, centres.unsqueeze(1).expand(batch, m, n_centres))
        merged = _merge_with_distances(xb, centres, to_centres, beta, reference)
    return (merged[0], centres[0]) if unbatched else (merged, centres)


def _check_beta(beta: float) -> None:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
