"""VisionZip (Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language Models",
CVPR 2025, arXiv 2412.04467), applied per video frame on the pooled frame tokens.

Per frame, with budget b = ceil(N·ρ) split into `dominant` + `contextual` tokens:
- dominant tokens: the `dominant` tokens that receive the most attention, kept in position order;
- contextual tokens: among the remaining tokens (position order), `contextual` centres are picked uniformly
  with stride max(1, R // contextual) (R = number of remaining tokens); every other remaining token joins the
  centre with the highest dot product of L2-normalised features; each contextual token is its centre plus
  the mean of its members, as VisionZip's code computes it (a centre with no members stays as it is).
VisionZip scores with the vision encoder's attention and matches with its keys; here the caller's pooled
attention scores (the same scores HoliTom uses) and the pooled features stand in for them, so both methods
see the same inputs and the same per-frame budget. LLaVA-Video's `grid` layout keeps each token at its grid
position (a contextual token at its centre's) with a newline after every row that holds a token, as HoliTom
lays out its tokens there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from holitom import counts
from holitom.counts import VISIONZIP_CONTEXTUAL_SHARE
from holitom.outer import DOMINANT, grid_layout, grid_side
from holitom.spatial import select_top_scores


def visionzip_budget(
    n_tokens: int, retain_ratio: float, contextual_share: float = VISIONZIP_CONTEXTUAL_SHARE
) -> tuple[int, int]:
    """Per-frame (dominant, contextual) counts: b = ceil(N·ρ), dominant = round(b·(1−D)), contextual = b − dominant.

    The rounding of `holitom.counts` (HoliTom's dominant/contextual split, the paper's per-frame budget).
    """
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
        raise ValueError(f"n_tokens={n_tokens!r}: must be an integer ≥ 1")
    if (
        isinstance(retain_ratio, bool)
        or not isinstance(retain_ratio, (int, float))
        or not 0.0 < retain_ratio <= 1.0
    ):
        raise ValueError(f"retain_ratio={retain_ratio!r}: must be in (0, 1]")
    return counts.split_budget(counts.ceil_share(n_tokens, retain_ratio), contextual_share)


def visionzip_compress(
    features: torch.Tensor,
    attention: torch.Tensor,
    retain_ratio: float,
    contextual_share: float = VISIONZIP_CONTEXTUAL_SHARE,
) -> torch.Tensor:
    """Compress every frame to b = ceil(N·ρ) tokens: [dominant (position order), contextual (centre order)].

    features: (F, N, C) pooled frame tokens; attention: (F, N) per-token attention scores.
    Returns (F·b, C) in features' dtype, frames in order. With b = N nothing is merged and the input is
    returned in its original order. Ties in attention → lower position; ties in similarity → earlier centre.
    """
    tokens, _ = visionzip_frames(features, attention, retain_ratio, contextual_share)
    return tokens.reshape(-1, tokens.shape[-1])


def visionzip_compress_grid(
    features: torch.Tensor,
    attention: torch.Tensor,
    retain_ratio: float,
    newline: torch.Tensor,
    contextual_share: float = VISIONZIP_CONTEXTUAL_SHARE,
) -> torch.Tensor:
    """`visionzip_compress` in the LLaVA-Video `grid` layout: each frame's tokens by grid position (a
    contextual token at its centre's position), a newline after every grid row holding a token.

    features (F, N, C) with N = side²; newline (C,). Returns (F·b + newlines, C).
    """
    tokens, positions = visionzip_frames(features, attention, retain_ratio, contextual_share)
    n_frames, budget, channels = tokens.shape
    side = grid_side(features.shape[1], channels, newline)
    frames = torch.arange(n_frames, device=tokens.device).repeat_interleave(budget)
    kinds = torch.full((n_frames * budget,), DOMINANT, device=tokens.device)
    laid_out = grid_layout(tokens.reshape(-1, channels), positions.reshape(-1), frames, kinds, newline, side)
    return laid_out[0]


def visionzip_frames(
    features: torch.Tensor,
    attention: torch.Tensor,
    retain_ratio: float,
    contextual_share: float = VISIONZIP_CONTEXTUAL_SHARE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame its b = ceil(N·ρ) tokens and their grid positions (a contextual token: its centre's).

    features: (F, N, C); attention: (F, N). Returns tokens (F, b, C) in features' dtype, [dominant (position
    order), contextual (centre order)], and positions (F, b) long.
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 3:
        raise ValueError(
            f"features: expected a 3-D tensor (F, N, C), got {getattr(features, 'shape', features)!r}"
        )
    n_frames, n_tok, channels = features.shape
    if not isinstance(attention, torch.Tensor) or tuple(attention.shape) != (n_frames, n_tok):
        raise ValueError(
            f"attention: expected shape {(n_frames, n_tok)} to match features, "
            f"got {tuple(attention.shape) if isinstance(attention, torch.Tensor) else type(attention).__name__}"
        )
    if n_frames == 0:
        raise ValueError("features: has no frames")
    n_dom, n_ctx = visionzip_budget(n_tok, retain_ratio, contextual_share)
    if n_dom + n_ctx == n_tok:
        return features, torch.arange(n_tok, device=features.device).expand(n_frames, n_tok)

    dom_idx = select_top_scores(attention, n_dom)  # (F, dom), ascending positions
    dominant = features.gather(1, dom_idx.unsqueeze(-1).expand(-1, -1, channels))
    if n_ctx == 0:
        return dominant, dom_idx

    # Remaining tokens of each frame in position order (every frame has exactly N − dom of them); stable sorts
    # of 0/1 masks list them without data-dependent shapes (nothing read from the device).
    is_dom = torch.zeros(n_frames, n_tok, dtype=torch.int8, device=features.device)
    is_dom.scatter_(1, dom_idx, 1)
    n_rem = n_tok - n_dom
    rem_idx = torch.sort(is_dom, dim=1, stable=True).indices[:, :n_rem]
    rem = features.gather(1, rem_idx.unsqueeze(-1).expand(-1, -1, channels)).float()  # (F, R, C)

    # Centres: uniform stride over the remaining tokens; the rest merge into their most similar centre.
    step = max(1, n_rem // n_ctx)
    centre_local = torch.arange(0, n_rem, step, device=features.device)[:n_ctx]
    is_centre = torch.zeros(n_rem, dtype=torch.int8, device=features.device)
    is_centre[centre_local] = 1
    other_local = torch.sort(is_centre, stable=True).indices[: n_rem - n_ctx]
    centres = rem[:, centre_local]  # (F, ctx, C)
    others = rem[:, other_local]  # (F, R − ctx, C)
    sim = F.normalize(others, dim=-1) @ F.normalize(centres, dim=-1).transpose(1, 2)  # (F, R − ctx, ctx)
    assign = sim.argmax(dim=-1)  # first maximum → earlier centre on ties
    sums = torch.zeros_like(centres).scatter_add(1, assign.unsqueeze(-1).expand(-1, -1, channels), others)
    members = torch.zeros(n_frames, n_ctx, device=features.device).scatter_add(
        1, assign, torch.ones_like(assign, dtype=torch.float32)
    )
    # VisionZip's rule: the centre plus the mean of its members (the centre alone when it has none)
    contextual = (centres + sums / members.clamp(min=1).unsqueeze(-1)).to(features.dtype)
    positions = torch.cat([dom_idx, rem_idx[:, centre_local]], dim=1)
    return torch.cat([dominant, contextual], dim=1), positions
