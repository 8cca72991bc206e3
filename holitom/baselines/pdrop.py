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

from holitom import counts
from holitom.inner import select_kept


def pdrop_keep_ratios(lam: float, stages: int) -> tuple[float, ...]:
    """Cumulative keep ratios of the stages: (λ, λ², ..., λ^stages), each λ**s in double precision."""
    counts.check_share("lam", lam, low_open=True)
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 0:
        raise ValueError(f"stages={stages!r}: must be an integer ≥ 0")
    return tuple(lam**s for s in range(1, stages + 1))


def pdrop_keep_counts(n_visual: int, lam: float, stages: int) -> tuple[int, ...]:
    """Visual tokens kept from each stage on: int(N·λ^s) of the N that entered the LLM (the official count).

    E.g. N = 6272, λ = 0.5, 3 stages → (3136, 1568, 784); N = 11648 → (5824, 2912, 1456).
    """
    return tuple(counts.floor_share(n_visual, ratio) for ratio in pdrop_keep_ratios(lam, stages))


def pdrop_select(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Positions of the `n_keep` best-scored visual tokens, ascending (ties → the lower position).

    scores: (n,) the last prompt token's attention to the visual tokens still in the sequence.
    Returns LongTensor (n_keep,).
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1:
        raise ValueError(f"scores: expected a 1-D tensor (n,), got {getattr(scores, 'shape', type(scores))}")
    kept, _ = select_kept(scores, n_keep)
    return kept
