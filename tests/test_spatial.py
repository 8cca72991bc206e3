"""Spatial merging (spec §2): top scores, DPC-KNN centres and the β-merge."""

from __future__ import annotations

import pytest
import torch

from holitom.spatial import (
    cluster_merge,
    dpc_knn_centres,
    merge_into_centres,
    pairwise_distances,
    select_top_scores,
)

# 1-D points (C=1, so dist = |xi - xj|); used by several hand-worked tests below.
POINTS = torch.tensor([0.0, 1.0, 3.0, 10.0, 11.0, 20.0]).unsqueeze(-1)
# k=2 → density_i = exp(-(0 + d_nn²)/2) with nearest-other distances 1, 1, 2, 1, 1, 9:
#   densities e^-0.5 (tokens 0, 1, 3, 4), e^-2 (token 2), e^-40.5 (token 5).
# Ties among 0, 1, 3, 4 resolve by position: order of "height" 0 > 1 > 3 > 4 > 2 > 5.
# delta: 0 → max distance 20; 1 → d(1,0)=1; 3 → min(d(3,0), d(3,1))=9; 4 → d(4,3)=1;
#        2 → min(3, 2, 7, 8)=2; 5 → min(20, 19, 17, 10, 9)=9.
# score: 0: 20e^-.5≈12.1, 3: 9e^-.5≈5.46, 1 and 4: e^-.5≈0.607 (exact tie), 2: 2e^-2≈0.27, 5: ≈0.
EXPECTED_SCORE_ORDER = [0, 3, 1, 4, 2, 5]


def test_select_top_scores_order_and_ties():
    scores = torch.tensor([[0.5, 0.9, 0.1, 0.9, 0.7], [3.0, 3.0, 3.0, 1.0, 2.0]])
    # row 0: top 3 = 0.9 (1), 0.9 (3), 0.7 (4) → ascending positions [1, 3, 4]
    # row 1: three tied 3.0 → the lower positions win for a budget of 2 → [0, 1]
    assert select_top_scores(scores, 3).tolist() == [[1, 3, 4], [0, 1, 2]]
    assert select_top_scores(scores, 2).tolist() == [[1, 3], [0, 1]]
    assert select_top_scores(scores, 0).shape == (2, 0)
    assert select_top_scores(scores, 5).tolist() == [[0, 1, 2, 3, 4]] * 2
    assert select_top_scores(scores[1], 1).tolist() == [0]
    # half scores are compared like float32
    assert select_top_scores(scores.half(), 2).tolist() == [[1, 3], [0, 1]]


def test_select_top_scores_many_ties_keep_the_lowest_positions():
    # 34 tied maxima among 100 scores (an unstable sort reorders ties at this size)
    scores = torch.zeros(100)
    scores[::3] = 1.0
    assert select_top_scores(scores, 10).tolist() == list(range(0, 30, 3))
    assert select_top_scores(scores, 40).tolist() == sorted([*range(0, 100, 3), 1, 2, 4, 5, 7, 8])


def test_select_top_scores_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_keep"):
        select_top_scores(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="n_keep"):
        select_top_scores(torch.zeros(2, 3), -1)
    with pytest.raises(ValueError, match="scores"):
        select_top_scores(torch.zeros(2, 3, 1), 1)


def test_pairwise_distances_scale_by_sqrt_channels():
    x = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]]])
    # ||x0 - x1|| = 4, / sqrt(4) = 2
    assert pairwise_distances(x).tolist() == [[[0.0, 2.0], [2.0, 0.0]]]
    assert pairwise_distances(x.half()).dtype == torch.float32


def test_dpc_knn_hand_example():
    assert dpc_knn_centres(POINTS, 1, 2).tolist() == [0]
    assert dpc_knn_centres(POINTS, 2, 2).tolist() == [0, 3]
    # the third centre is the tied pair 1 / 4 → the lower position 1
    assert dpc_knn_centres(POINTS, 3, 2).tolist() == [0, 1, 3]
    assert dpc_knn_centres(POINTS, 6, 2).tolist() == list(range(6))
    assert dpc_knn_centres(POINTS, 0, 2).tolist() == []
    # the same points replicated over 4 channels: dist is divided by sqrt(4), same centres
    wide = POINTS.repeat(1, 4)
    assert dpc_knn_centres(wide, 3, 2).tolist() == [0, 1, 3]


def test_dpc_knn_k_changes_density():
    # k=1: every density is exp(0) = 1, so the score is delta alone; ranks by position:
    # delta 0 → 20, 1 → 1, 2 → 2, 3 → 7, 4 → 1, 5 → 9  → top 3 = {0, 5, 3}
    assert dpc_knn_centres(POINTS, 3, 1).tolist() == [0, 3, 5]
    # k larger than m is clamped to m
    assert dpc_knn_centres(POINTS, 2, 50).tolist() == dpc_knn_centres(POINTS, 2, 6).tolist()


def test_dpc_knn_identical_tokens_are_deterministic():
    # all distances 0 → equal densities and scores → the lowest positions win
    assert dpc_knn_centres(torch.ones(5, 3), 2, 3).tolist() == [0, 1]


def test_dpc_knn_batched_equals_per_item_and_repeatable():
    x = torch.randn(4, 30, 16, generator=torch.Generator().manual_seed(0))
    batched = dpc_knn_centres(x, 5, 7)
    assert batched.shape == (4, 5)
    for b in range(4):
        assert torch.equal(batched[b], dpc_knn_centres(x[b], 5, 7))
    assert torch.equal(batched, dpc_knn_centres(x, 5, 7))
    assert bool((batched[:, 1:] > batched[:, :-1]).all())  # sorted by position


def test_dpc_knn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_centres"):
        dpc_knn_centres(POINTS, 7, 2)
    with pytest.raises(ValueError, match="k must"):
        dpc_knn_centres(POINTS, 2, 0)
    with pytest.raises(ValueError, match="x must"):
        dpc_knn_centres(torch.zeros(5), 2, 2)
    with pytest.raises(ValueError, match="x must"):
        dpc_knn_centres(torch.zeros(5, 2, dtype=torch.long), 2, 2)


def test_merge_hand_example():
    centres = torch.tensor([0, 3])
    # token 1 (d 1 vs 9) and token 2 (d 3 vs 7) join centre 0; token 4 (d 1) and 5 (d 10 vs 20) join 3
    # centre 0 → 0.6·0 + 0.4·mean(1, 3) = 0.8; centre 3 → 0.6·10 + 0.4·mean(11, 20) = 12.2
    merged = merge_into_centres(POINTS, centres, 0.6)
    torch.testing.assert_close(merged, torch.tensor([[0.8], [12.2]]))
    torch.testing.assert_close(merge_into_centres(POINTS, centres, 1.0), torch.tensor([[0.0], [10.0]]))
    torch.testing.assert_close(merge_into_centres(POINTS, centres, 0.0), torch.tensor([[2.0], [15.5]]))


def test_merge_memberless_centres_are_bit_exact():
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(1)).half()
    x[5] = x[4] * 1.001  # token 5 sits next to centre 4, far from the others
    centres = torch.tensor([0, 1, 2, 3, 4])
    merged = merge_into_centres(x, centres, 0.6)
    assert merged.dtype == torch.float16
    assert torch.equal(merged[:4], x[:4])
    expected = (0.6 * x[4].float() + 0.4 * x[5].float()).half()
    assert torch.equal(merged[4], expected)
    # every token a centre: nothing changes
    assert torch.equal(merge_into_centres(x, torch.arange(6), 0.6), x)


def test_merge_nearest_centre_tie_goes_to_the_lower_centre():
    x = torch.tensor([[0.0], [1.0], [2.0]])  # token 1 is equally near centres 0 and 2
    merged = merge_into_centres(x, torch.tensor([0, 2]), 0.5)
    assert merged.tolist() == [[0.5], [2.0]]


def test_merge_batched_and_cluster_merge_agree():
    x = torch.randn(3, 20, 8, generator=torch.Generator().manual_seed(2))
    centres = dpc_knn_centres(x, 4, 3)
    merged = merge_into_centres(x, centres, 0.6)
    assert merged.shape == (3, 4, 8)
    for b in range(3):
        torch.testing.assert_close(merged[b], merge_into_centres(x[b], centres[b], 0.6))
    fused, fused_centres = cluster_merge(x, 4, 3, 0.6)
    assert torch.equal(fused_centres, centres)
    torch.testing.assert_close(fused, merged)
    empty, none = cluster_merge(x[0], 0, 3, 0.6)
    assert empty.shape == (0, 8) and none.shape == (0,)


def test_merge_mean_matches_explicit_clusters():
    x = torch.randn(2, 25, 6, generator=torch.Generator().manual_seed(3))
    centres = dpc_knn_centres(x, 3, 4)
    merged = merge_into_centres(x, centres, 0.25)
    for b in range(2):
        dist = torch.cdist(x[b], x[b][centres[b]])
        assign = dist.argmin(1)
        for j, c in enumerate(centres[b].tolist()):
            members = [i for i in range(25) if assign[i] == j and i != c]
            want = x[b, c] if not members else 0.25 * x[b, c] + 0.75 * x[b, members].mean(0)
            torch.testing.assert_close(merged[b, j], want)


def test_merge_rejects_bad_arguments():
    with pytest.raises(ValueError, match="centre_idx"):
        merge_into_centres(POINTS, torch.tensor([0.0, 1.0]), 0.6)
    with pytest.raises(ValueError, match="centre_idx"):
        merge_into_centres(POINTS, torch.tensor([0, 6]), 0.6)
    with pytest.raises(ValueError, match="centre_idx"):
        merge_into_centres(POINTS.expand(2, 6, 1), torch.tensor([[0, 1]]), 0.6)
    with pytest.raises(ValueError, match="beta"):
        merge_into_centres(POINTS, torch.tensor([0, 1]), 1.5)


def test_merge_single_centre_takes_everything():
    # 0.6·0 + 0.4·mean(1, 3, 10, 11, 20) = 0.4·9 = 3.6
    torch.testing.assert_close(merge_into_centres(POINTS, torch.tensor([0]), 0.6), torch.tensor([[3.6]]))
