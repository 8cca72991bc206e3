"""FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024, arXiv 2403.06764).

After decoder layer K−1, score each visual token by the attention the last prompt token pays it (averaged
over heads), drop the lowest-scored share 1−R of the visual tokens, and run layers K.. on the rest. Unlike
HoliTom's inner merge, dropped tokens are discarded, not merged.
"""

from __future__ import annotations

import torch

from holitom import counts
from holitom.inner import select_kept


def fastv_select(scores: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """Positions of the visual tokens FastV keeps, sorted ascending.

    scores: (n_v,) attention of the last token to each visual token. Ties → the lower position is kept.
    Returns LongTensor (n_keep,) with n_keep = `holitom.counts.drop_keep_count(n_v, keep_ratio)`:
    FastV drops round(n_v·(1−R)), the same rounding as the paper's FLOPs accounting.
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1:
        raise ValueError(
            f"scores: expected a 1-D tensor (n_v,), got {getattr(scores, 'shape', type(scores))}"
        )
    kept, _ = select_kept(scores, counts.drop_keep_count(scores.shape[0], keep_ratio))
    return kept
