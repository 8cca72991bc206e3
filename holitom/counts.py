"""Token counts: every budget, kept count and FLOPs token count of every method, with one rounding rule.

The rule is the authors' (and the official baselines'): Python's `math.ceil`, built-in `round` (half to
even) or `int` of the float product, with no snapping of binary error. So 45 × 0.7 = 31.499999999999996
rounds to 31 and 100 × 0.07 = 7.000000000000001 gives a budget of 8, exactly as the reference code counts. Pure Python: no torch.

The few method constants that both the registry (`holitom.methods`, whose settings need them without torch)
and the tensor code (`holitom.inner`, `holitom.baselines`) read live here too, so neither imports the other.
"""

from __future__ import annotations

import math

# VisionZip's own split keeps 54 dominant + 10 contextual tokens in its 64-token setting (and 108+20,
# 162+30 at 128/192 tokens): contextual tokens are 10/64 = 15.625% of the budget.
VISIONZIP_CONTEXTUAL_SHARE = 10 / 64
# HoliTom's inner merge rules (how a kept token absorbs the dropped ones merged into it): `holitom.inner`.
INNER_UPDATES = ("sequential", "mean")
# FastVID's per-frame budget roundings (`frame_budget`).
BUDGET_ROUNDINGS = ("ceil", "floor")


def check_int(name: str, value: object, low: int = 0) -> int:
    """`value` if it is an integer ≥ low (bools are not), else ValueError "name=value: must be an integer ≥ low"."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r}: must be an integer ≥ {low}")
    return value


def check_share(name: str, value: object, *, low_open: bool = False, high_open: bool = False) -> float:
    """ValueError naming `name` unless value is a finite number in [0, 1] (or the open ends asked for)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > 0.0 if low_open else value >= 0.0) and (value < 1.0 if high_open else value <= 1.0)
    if not ok:
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name}={value!r}: must be in {interval}")
    return float(value)


def ceil_share(n: int, share: float) -> int:
    """math.ceil(n · share): a per-frame budget (HoliTom's b = ceil(n·ρ'), VisionZip's b = ceil(N·ρ))."""
    return math.ceil(check_int("n", n) * check_share("share", share))


def round_share(n: int, share: float) -> int:
    """round(n · share) with Python's round (half to even): HoliTom's static centres round(n_static·ρ')."""
    return round(check_int("n", n) * check_share("share", share))


def floor_share(n: int, share: float) -> int:
    """int(n · share): the official PDrop, DyCoke and FastVID counts."""
    return int(check_int("n", n) * check_share("share", share))


def frame_budget(num_tokens: int, retain_ratio: float, rounding: str = "ceil") -> int:
    """FastVID's per-frame budget R: ceil(N·ρ) (the paper's cells, `ceil_share`) or int(N·ρ) (the official
    code's, `floor_share`)."""
    if rounding == "ceil":
        return ceil_share(num_tokens, retain_ratio)
    if rounding == "floor":
        return floor_share(num_tokens, retain_ratio)
    raise ValueError(f"rounding={rounding!r}: must be one of {BUDGET_ROUNDINGS}")


def split_budget(budget: int, contextual_share: float) -> tuple[int, int]:
    """(dominant, contextual) = (round(b·(1−D)), b − dominant): HoliTom's and VisionZip's per-frame split."""
    check_int("budget", budget)
    dominant = round(budget * (1.0 - check_share("contextual_share", contextual_share)))
    return dominant, budget - dominant


def merge_keep_count(n: int, merge_ratio: float) -> int:
    """Tokens kept by HoliTom's inner merge at layer K: round(n·(1−r)), as the reference runs it."""
    return round(check_int("n", n) * (1.0 - check_share("merge_ratio", merge_ratio, high_open=True)))


def drop_keep_count(n: int, keep_ratio: float) -> int:
    """Tokens FastV keeps: n − round(n·(1−R)) (it drops round(n·(1−R))), the paper's accounting rule."""
    check_int("n", n)
    return n - round(n * (1.0 - check_share("keep_ratio", keep_ratio, low_open=True)))


def outer_tokens(frames: int, tokens_per_frame: int, retain_ratio: float) -> int:
    """Visual tokens an outer method's budget promises: frames × ceil(N·ρ) (the paper's count)."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames={frames!r}: must be an integer ≥ 1")
    return frames * ceil_share(tokens_per_frame, check_share("retain_ratio", retain_ratio, low_open=True))


def after_merge_flops_count(n: int, merge_ratio: float) -> int:
    """Visual tokens the paper's FLOPs accounting counts after an inner merge at ratio r: n − round(n·r).

    (The runtime keeps round(n·(1−r)); the two differ by one token only when n·r is a half-integer.)
    """
    check_int("n", n)
    return n - round(n * check_share("merge_ratio", merge_ratio, high_open=True))


# ---- PDrop and DyCoke (torch-free, so FLOPs schedules need no torch)


def pdrop_keep_ratios(lam: float, stages: int) -> tuple[float, ...]:
    """Cumulative keep ratios of the stages: (λ, λ², ..., λ^stages), each λ**s in double precision."""
    check_share("lam", lam, low_open=True)
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 0:
        raise ValueError(f"stages={stages!r}: must be an integer ≥ 0")
    return tuple(lam**s for s in range(1, stages + 1))


def pdrop_keep_counts(n_visual: int, lam: float, stages: int) -> tuple[int, ...]:
    """Visual tokens kept from each stage on: int(N·λ^s) of the N that entered the LLM (the official count).

    E.g. N = 6272, λ = 0.5, 3 stages → (3136, 1568, 784); N = 11648 → (5824, 2912, 1456).
    """
    return tuple(floor_share(n_visual, ratio) for ratio in pdrop_keep_ratios(lam, stages))


def dycoke_keep(n_tokens: int, prune: float) -> int:
    """Positions a pruned frame keeps: int((1 − K)·N), the official count (K=0.7, N=196 → 58)."""
    check_share("prune", prune)
    return floor_share(n_tokens, 1.0 - prune)


def dycoke_reference_frames(num_frames: int, all_quads: bool = True) -> list[int]:
    """For every frame, the frame its tokens are compared with, or −1 for a frame kept whole.

    Pairs (2j, 2j+1): 2j whole, 2j+1 → 2j. Quads i = 0, 4, ...: i+2 → i, for every i whose i+2 starts a pair
    (all_quads) or only while i < F − 4 (the official bound). An odd last frame → the frame before it (ours).
    E.g. F = 8: [−1, 0, 0, 2, −1, 4, 4, 6] (all_quads) and [−1, 0, 0, 2, −1, 4, −1, 6] (official bound).
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames={num_frames!r}: must be an integer ≥ 1")
    paired = num_frames - num_frames % 2
    refs = [-1 if f % 2 == 0 else f - 1 for f in range(paired)]
    limit = paired - 2 if all_quads else num_frames - 4
    for i in range(0, max(limit, 0), 4):
        refs[i + 2] = i
    if num_frames % 2:
        refs.append(num_frames - 2 if num_frames > 1 else -1)
    return refs


def dycoke_token_count(num_frames: int, n_tokens: int, prune: float, all_quads: bool = True) -> int:
    """Tokens stage 1 keeps for a video: N per whole frame + keep per pruned frame.

    F = 32, N = 196: K = 1.0 → 1568 (all quads; 25 %) or 1764 (official bound); K = 0.7 → 2960 / 3098."""
    refs = dycoke_reference_frames(num_frames, all_quads)
    keep = dycoke_keep(n_tokens, prune)
    return sum(n_tokens if r < 0 else keep for r in refs)
