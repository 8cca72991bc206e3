"""PyramidDrop (Xing et al., "PyramidDrop: Accelerating Your Large Vision-Language Models via Pyramid Visual
Redundancy Reduction", CVPR 2025, arXiv 2410.17247), as its official code runs it (Cooperx521/PyramidDrop).

The LLM is split into stages at layers l_1 < l_2 < ...; before stage s's first layer l_s, that layer's own
input norm, q/k projections and RoPE score the visual tokens by the attention the last prompt token pays them,
and the `int(N·λ^s)` best-scored of them are kept, N being the number of visual tokens that entered the LLM
(not the current count): the sequence shrinks like a pyramid. Text tokens are never dropped; dropped visual
tokens are discarded; survivors are renumbered 0..L'−1 (the model hook, `holitom.patch.qwen2`, does the
cutting and the positions). Pure functions here.
"""

from __future__ import annotations

import torch

from holitom.counts import pdrop_keep_counts, pdrop_keep_ratios
from holitom.inner import select_kept

__all__ = ["pdrop_keep_counts", "pdrop_keep_ratios", "pdrop_select"]


def pdrop_select(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Positions of the `n_keep` best-scored visual tokens, ascending (ties → the lower position).

    scores: (n,) the last prompt token's attention to the visual tokens still in the sequence.
    Returns LongTensor (n_keep,).
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1:
        raise ValueError(f"scores: expected a 1-D tensor (n,), got {getattr(scores, 'shape', type(scores))}")
    kept, _ = select_kept(scores, n_keep)
    return kept
