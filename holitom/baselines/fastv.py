"""FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024, arXiv 2403.06764).

After decoder layer K−1, score each visual token by the attention the last prompt token pays it (averaged
over heads), drop the lowest-scored share 1−R of the visual tokens, and run layers K.. on the rest. Unlike
HoliTom's inner merge, dropped tokens are discarded, not merged.
"""

from __future__ import annotations

import torch

from holitom.inner import round_count, select_kept

FASTV_DEFAULT_LAYER = 2  # K: prune before layer 2 (attention taken from layer 1)
FASTV_DEFAULT_KEEP = 0.5  # R: keep half of the visual tokens


def fastv_keep_count(n_visual: int, keep_ratio: float) -> int:
    """Visual tokens FastV keeps: n − round(n·(1−R)), i.e. it drops round(n·(1−R)) tokens (Python round).

    Written as a drop count so that it matches the paper's FLOPs accounting of a reduction at layer K
    (n − round(n·r) with r the share removed).
    """
    if isinstance(n_visual, bool) or not isinstance(n_visual, int) or n_visual < 0:
        raise ValueError(f"n_visual={n_visual!r}: must be an integer ≥ 0")
    if (
        isinstance(keep_ratio, bool)
        or not isinstance(keep_ratio, (int, float))
        or not 0.0 < keep_ratio <= 1.0
    ):
        raise ValueError(f"keep_ratio={keep_ratio!r}: must be in (0, 1]")
    return n_visual - round_count(n_visual * (1.0 - keep_ratio))


def fastv_select(scores: torch.Tensor, keep_ratio: float = FASTV_DEFAULT_KEEP) -> torch.Tensor:
    """Positions of the visual tokens FastV keeps, sorted ascending.

    scores: (n_v,) attention of the last token to each visual token. Ties → the lower position is kept.
    Returns LongTensor (fastv_keep_count(n_v, keep_ratio),).
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1:
        raise ValueError(
            f"scores: expected a 1-D tensor (n_v,), got {getattr(scores, 'shape', type(scores))}"
        )
    kept, _ = select_kept(scores, fastv_keep_count(scores.shape[0], keep_ratio))
    return kept
