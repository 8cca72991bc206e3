"""holitom.counts: one rounding rule for every count (Python round / math.ceil / int of the float product,
as the authors' and the official baselines' code count), checked by hand."""

from __future__ import annotations

import pytest

from holitom import counts


def test_reference_rounding_of_the_inner_keep_count():
    # The fidelity issue's hand cases: the reference rounds the float product, no snapping of binary error.
    assert 45 * (1 - 0.3) == 31.499999999999996 and counts.merge_keep_count(45, 0.3) == 31
    assert 110 * (1 - 0.45) == 60.50000000000001 and counts.merge_keep_count(110, 0.45) == 61
    assert 30 * (1 - 0.55) == 13.499999999999998 and counts.merge_keep_count(30, 0.55) == 13
    assert counts.merge_keep_count(640, 0.5) == 320
    assert counts.merge_keep_count(6273, 0.0) == 6273
    assert counts.merge_keep_count(0, 0.5) == 0
    assert counts.merge_keep_count(5, 0.5) == 2  # 2.5 → 2 (half to even)
    assert counts.merge_keep_count(7, 0.5) == 4  # 3.5 → 4


def test_budgets_are_ceil_of_the_float_product():
    assert counts.ceil_share(196, 0.15) == 30  # 196·0.15 is 29.4 exactly
    assert counts.ceil_share(196, 0.10) == 20 and counts.ceil_share(169, 0.15) == 26
    assert 100 * 0.07 == 7.000000000000001 and counts.ceil_share(100, 0.07) == 8
    assert counts.outer_tokens(32, 196, 0.25) == 1568 and counts.outer_tokens(64, 169, 0.15) == 1664


def test_splits_floor_and_drop_counts():
    assert counts.split_budget(30, 10 / 64) == (25, 5)  # round(25.3125) = 25
    assert counts.split_budget(20, 10 / 64) == (17, 3)  # round(16.875) = 17
    assert counts.split_budget(30, 0.0) == (30, 0) and counts.split_budget(30, 1.0) == (0, 30)
    assert counts.round_share(5, 0.5) == 2 and counts.round_share(7, 0.5) == 4
    assert counts.floor_share(196, 0.3) == 58 and counts.floor_share(6272, 0.125) == 784
    assert counts.drop_keep_count(6272, 0.5) == 3136
    assert counts.drop_keep_count(5, 0.5) == 3  # drops round(2.5) = 2
    assert counts.drop_keep_count(6272, 0.2) == 1254  # drops round(5017.6) = 5018
    assert counts.drop_keep_count(7, 1.0) == 7
    assert counts.after_merge_flops_count(6272, 0.5) == 3136
    assert counts.after_merge_flops_count(5, 0.5) == 3  # the accounting's n − round(n·r), vs the runtime's 2


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: counts.merge_keep_count(-1, 0.5), "n=-1"),
        (lambda: counts.merge_keep_count(3.0, 0.5), "n=3.0"),
        (lambda: counts.merge_keep_count(True, 0.5), "n=True"),
        (lambda: counts.merge_keep_count(10, 1.0), r"merge_ratio=1.0: must be in \[0, 1\)"),
        (lambda: counts.merge_keep_count(10, "0.5"), "merge_ratio='0.5'"),
        (lambda: counts.drop_keep_count(10, 0.0), r"keep_ratio=0.0: must be in \(0, 1\]"),
        (lambda: counts.ceil_share(10, 1.5), r"share=1.5: must be in \[0, 1\]"),
        (lambda: counts.outer_tokens(0, 196, 0.1), "frames=0"),
        (lambda: counts.split_budget(10, -0.1), "contextual_share=-0.1"),
    ],
)
def test_bad_arguments_name_themselves(call, match):
    with pytest.raises(ValueError, match=match):
        call()
