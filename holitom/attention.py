"""Attention scores the merging methods need, computed without materialising more than required.

Pure tensor functions: the hooks in `holitom.patch` gather q/k and call these.
"""

from __future__ import annotations

import torch


def received_attention(
    queries: torch.Tensor, keys: torch.Tensor, scaling: float, chunk: int | None = None, reference: bool = False
) -> torch.Tensor:
    """Attention each token receives, averaged over heads and queries (full bidirectional attention).

    queries, keys: (B, H, P, hd). Returns (B, P) float32: mean_{h,i} softmax(q_i·kᵀ·scaling)[j], the logits
    in the inputs' dtype (tensor cores on a GPU), the softmax and the means in float32. Works `chunk` batch
    items at a time (default 8 on CPU, 16 on CUDA) so at most chunk×H×P×P probabilities exist at once.
    reference=True: the authors' eager arithmetic in the inputs' dtype instead — logits q·kᵀ rounded to it,
    then scaled, softmax in float32 rounded back, the mean over heads and then over queries each rounded to
    it; returned in that dtype.
    """
    if queries.shape != keys.shape or queries.dim() != 4:
        raise ValueError(f"queries and keys must both be (B, H, P, hd), got {tuple(queries.shape)} and {tuple(keys.shape)}")
    if chunk is None:
        chunk = 16 if queries.device.type == "cuda" else 8
    out = []
    for start in range(0, queries.shape[0], chunk):
        if reference:
            q, k = queries[start : start + chunk], keys[start : start + chunk]
            logits = (q @ k.transpose(-1, -2)) * scaling
            probs = torch.softmax(logits, dim=-1, dtype=torch.float32).to(q.dtype)
            out.append(probs.mean(dim=1).mean(dim=1))
            continue
        q = queries[start : start + chunk] * scaling  # scale the P×hd side, not the P×P logits
        k = keys[start : start + chunk]
        probs = torch.softmax(q @ k.transpose(-1, -2), dim=-1, dtype=torch.float32)  # (b, H, P, P)
        out.append(probs.mean(dim=(1, 2)))
    return torch.cat(out)


def last_query_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    scaling: float,
    key_bias: torch.Tensor | None = None,
    reference: bool = False,
) -> torch.Tensor:
    """One query's attention row over all keys, averaged over query heads (grouped-query aware).

    query: (B, H, hd) for one position; keys: (B, KVH, L, hd) with H a multiple of KVH (query head h
    reads key head h // (H/KVH)); key_bias: optional (B, L) additive float mask (0 / -inf).
    Returns (B, L) float32 probabilities averaged over the H heads. reference=True: the authors' eager
    arithmetic in the inputs' dtype (logits rounded to it, then scaled; softmax in float32 rounded back;
    the head mean in that dtype), returned in that dtype.
    """
    b, h, hd = query.shape
    kvh = keys.shape[1]
    if h % kvh or keys.shape[0] != b or keys.shape[-1] != hd:
        raise ValueError(f"query {tuple(query.shape)} and keys {tuple(keys.shape)} are not a (grouped) attention pair")
    if reference:
        q = query.view(b, kvh, h // kvh, hd)
        logits = torch.einsum("bkgd,bkld->bkgl", q, keys) * scaling
        if key_bias is not None:
            logits = logits + key_bias.to(logits.dtype)[:, None, None, :]
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32).to(query.dtype)
        return probs.flatten(1, 2).mean(dim=1)
    q = query.float().view(b, kvh, h // kvh, hd)
    logits = torch.einsum("bkgd,bkld->bkgl", q, keys.float()) * scaling  # (B, KVH, G, L)
    if key_bias is not None:
        logits = logits + key_bias.float()[:, None, None, :]
    return torch.softmax(logits, dim=-1).mean(dim=(1, 2))
