"""Inner-LLM token merging (spec §3 steps 2–3): pure tensor functions, no model.

At decoder layer K the visual tokens are scored by the attention the last prompt token pays them (layer K−1).
The top `holitom.counts.merge_keep_count(n_v, r)` = round(n_v·(1−r)) are kept; every dropped token is merged
into its most similar kept token.
The model hook (attention row, sequence surgery, RoPE positions) lives elsewhere and calls these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from holitom.counts import INNER_UPDATES
from holitom.spatial import select_top_scores


def select_kept(scores: torch.Tensor, n_keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split visual positions into the n_keep best-scored (kept) and the rest (dropped).

    scores: (n_v,) one score per visual token. Returns (kept_idx (n_keep,), dropped_idx (n_v − n_keep,)),
    both LongTensors sorted ascending. Ties → lower position is kept.
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1:
        raise ValueError(f"scores: expected a 1-D tensor (n_v,), got {_describe(scores)}")
    n_v = scores.shape[0]
    if isinstance(n_keep, bool) or not isinstance(n_keep, int) or not 0 <= n_keep <= n_v:
        raise ValueError(f"n_keep={n_keep!r}: must be an integer in [0, {n_v}]")
    kept = select_top_scores(scores, n_keep)
    is_kept = torch.zeros(n_v, dtype=torch.int8, device=scores.device)
    is_kept[kept] = 1
    # a stable sort puts the dropped positions first, ascending: no data-dependent shape (no device read)
    dropped = torch.sort(is_kept, stable=True).indices[: n_v - n_keep]
    return kept, dropped


def merge_dropped(
    hidden: torch.Tensor,
    kept_idx: torch.Tensor,
    dropped_idx: torch.Tensor,
    update: str = "sequential",
    kept_scores: torch.Tensor | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """Merge each dropped visual token into the kept token it is most cosine-similar to.

    hidden: (n_v, d) hidden states of the visual span entering layer K.
    kept_idx: (n_keep,) and dropped_idx: (n_drop,) LongTensors partitioning 0..n_v−1 (from `select_kept`).
    update: "sequential" — dropped tokens visited in ascending position, kept ← (kept + dropped)/2, i.e. a kept
      token c with members x_1..x_m (position order) ends as c/2^m + Σ_i x_i/2^(m−i+1) (the paper's rule);
      "mean" — kept ← mean(c, x_1..x_m).
    Returns (n_keep, d) in kept_idx order and in hidden's dtype. Similarities are computed once, on the input,
    in float32; ties go to the lowest kept index. Work is done in float32 (2^-m underflowing to 0 for
    m > ~149 is the correct limit of the sequential rule).
    kept_scores: (n_keep,) the kept tokens' attention scores → the authors' arithmetic instead (the
    "sequential" rule only), see `merge_dropped_reference`. validate=False skips the check that the indices
    partition 0..n_v−1 (it reads the device: the model hook passes `select_kept`'s output, a partition).
    """
    if update not in INNER_UPDATES:
        raise ValueError(f"update={update!r}: must be one of {INNER_UPDATES}")
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 2:
        raise ValueError(f"hidden: expected a 2-D tensor (n_v, d), got {_describe(hidden)}")
    n_v = hidden.shape[0]
    for name, idx in (("kept_idx", kept_idx), ("dropped_idx", dropped_idx)):
        if not isinstance(idx, torch.Tensor) or idx.dim() != 1 or idx.dtype != torch.long:
            raise ValueError(f"{name}: expected a 1-D LongTensor, got {_describe(idx)}")
    both = torch.cat([kept_idx, dropped_idx])
    if both.numel() != n_v or (
        validate
        and n_v > 0
        and not (
            bool((both >= 0).all()) and bool((torch.bincount(both.clamp(min=0), minlength=n_v) == 1).all())
        )
    ):
        raise ValueError(
            f"kept_idx, dropped_idx: must partition the positions 0..{n_v - 1} (each exactly once)"
        )
    if kept_idx.numel() == 0 and dropped_idx.numel() > 0:
        raise ValueError("kept_idx: is empty but there are dropped tokens to merge into it")

    kept_h = hidden.index_select(0, kept_idx)
    if dropped_idx.numel() == 0:
        return kept_h
    if kept_scores is not None and update == "sequential":
        return merge_dropped_reference(hidden, kept_idx, dropped_idx, kept_scores)

    # Visit order of the sequential rule is by position, whatever order the caller passed.
    dropped_idx = torch.sort(dropped_idx).values
    kept32 = kept_h.float()
    drop32 = hidden.index_select(0, dropped_idx).float()
    kept_unit = F.normalize(kept32, dim=-1)
    assign = _chunked_argmax(F.normalize(drop32, dim=-1), kept_unit.T)  # first maximum → lowest kept index
    n_keep = kept_idx.numel()
    counts = torch.bincount(assign, minlength=n_keep)  # m per kept token

    if update == "mean":
        out = kept32.index_add(0, assign, drop32)
        out = out / (counts + 1).unsqueeze(-1).to(out.dtype)
        return out.to(hidden.dtype)

    rank = _member_ranks(assign, counts)  # i (1-based) of each dropped token inside its cluster
    w_member = torch.exp2(-(counts[assign] - rank + 1).to(torch.float32))  # 2^-(m−i+1)
    w_centre = torch.exp2(-counts.to(torch.float32))  # 2^-m
    out = (kept32 * w_centre.unsqueeze(-1)).index_add(0, assign, drop32 * w_member.unsqueeze(-1))
    return out.to(hidden.dtype)


# Similarity blocks of at most this many values (256 MiB of float32): a merge of 200k visual tokens without
# outer merging would otherwise build a 100k × 100k matrix (40 GB).
_SIM_BLOCK = 1 << 26


def _chunked_argmax_of(similarity, rows: int, cols: int) -> torch.Tensor:
    """argmax over the columns of similarity(rows slice) for all rows, a block of rows at a time."""
    step = max(1, _SIM_BLOCK // max(cols, 1))
    if rows <= step:
        return similarity(slice(0, rows)).argmax(dim=-1)
    return torch.cat([similarity(slice(i, i + step)).argmax(dim=-1) for i in range(0, rows, step)])


def _chunked_argmax(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """argmax(left @ right, dim=-1) without the whole (n, m) product: left (n, d), right (d, m)."""
    return _chunked_argmax_of(lambda rows: left[rows] @ right, left.shape[0], right.shape[1])


def _member_ranks(assign: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """1-based rank of each dropped token inside its cluster, in position order (assign is in position order).

    A stable sort by cluster keeps position order within a cluster: rank = place in the sorted list − the
    cluster's start + 1."""
    order = torch.sort(assign, stable=True).indices
    starts = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(order.numel(), device=assign.device) - starts[assign[order]] + 1
    rank = torch.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return rank


def merge_dropped_reference(
    hidden: torch.Tensor, kept_idx: torch.Tensor, dropped_idx: torch.Tensor, kept_scores: torch.Tensor
) -> torch.Tensor:
    """The sequential merge with the authors' arithmetic, all in hidden's dtype (fp16 in the paper's runs).

    Similarity = (dropped · kept) / (‖dropped‖·‖kept‖) with the norm product formed first; each dropped token
    goes to the most similar kept token, ties to the one with the higher score (their kept list is in
    descending-score order), then the lower position. Then, for every cluster, c ← (c + x_i)/2 for its members
    in position order, each sum rounded to the dtype before halving: bit-identical to their token-by-token
    loop, vectorised over clusters (one step per member rank). hidden (n_v, d); kept_idx (n_keep,)
    ascending; dropped_idx (n_drop,); kept_scores (n_keep,). Returns (n_keep, d) in kept_idx order.
    """
    dropped_idx = torch.sort(dropped_idx).values
    kept_h = hidden.index_select(0, kept_idx)
    drop_h = hidden.index_select(0, dropped_idx)
    by_score = torch.sort(kept_scores, descending=True, stable=True).indices  # candidates in their order
    candidates = kept_h[by_score]
    norm_d = torch.linalg.vector_norm(drop_h, dim=-1, keepdim=True)
    norm_k = torch.linalg.vector_norm(candidates, dim=-1, keepdim=True)

    def similarity(rows: slice) -> torch.Tensor:
        return (drop_h[rows] @ candidates.T) / (norm_d[rows] * norm_k.T)

    assign = by_score[_chunked_argmax_of(similarity, drop_h.shape[0], candidates.shape[0])]  # into kept_idx
    counts = torch.bincount(assign, minlength=kept_idx.numel())
    rank = _member_ranks(assign, counts)
    out = kept_h.clone()
    for step in range(1, int(counts.max()) + 1):  # one vectorised step per member rank, not per token
        members = rank == step
        targets = assign[members]
        out[targets] = (out[targets] + drop_h[members]) / 2
    return out


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return type(x).__name__
