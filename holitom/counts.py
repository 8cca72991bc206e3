"""Token counts: every budget, kept count and FLOPs token count of every method, with one rounding rule.

The rule is the authors' (and the official baselines'): Python's `math.ceil`, built-in `round` (half to
even) or `int` of the float product, with no snapping of binary error. So 196 × 0.15 = 29.400000000000002
gives a budget of 30, 45 × 0.7 = 31.499999999999996 rounds to 31 and 100 × 0.07 = 7.000000000000001 gives a
budget of 8, exactly as the reference code counts. Pure Python: no torch.
"""

from __future__ import annotations

import math


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}={value!r}: must be an integer ≥ 0")
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
    return math.ceil(_check_count("n", n) * check_share("share", share))


def round_share(n: int, share: float) -> int:
    """round(n · share) with Python's round (half to even): HoliTom's static centres round(n_static·ρ')."""
    return round(_check_count("n", n) * check_share("share", share))


def floor_share(n: int, share: float) -> int:
    """int(n · share): the official PDrop, DyCoke and FastVID counts."""
    return int(_check_count("n", n) * check_share("share", share))


def split_budget(budget: int, contextual_share: float) -> tuple[int, int]:
    """(dominant, contextual) = (round(b·(1−D)), b − dominant): HoliTom's and VisionZip's per-frame split."""
    _check_count("budget", budget)
    dominant = round(budget * (1.0 - check_share("contextual_share", contextual_share)))
    return dominant, budget - dominant


def merge_keep_count(n: int, merge_ratio: float) -> int:
    """Tokens kept by HoliTom's inner merge at layer K: round(n·(1−r)), as the reference runs it."""
    return round(_check_count("n", n) * (1.0 - check_share("merge_ratio", merge_ratio, high_open=True)))


def drop_keep_count(n: int, keep_ratio: float) -> int:
    """Tokens FastV keeps: n − round(n·(1−R)) (it drops round(n·(1−R))), the paper's accounting rule."""
    _check_count("n", n)
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
    _check_count("n", n)
    return n - round(n * check_share("merge_ratio", merge_ratio, high_open=True))
