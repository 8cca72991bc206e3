"""PruneVid: its pure tensor steps on hand-worked cases, the budget rule's exact counts, long videos, the
method's settings, FLOPs cells and installs on both tiny checkpoints. (Over 500 lines: one file per method,
as for every method; most of it is hand-worked cases.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import random_frames, video_prompt_ids
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import holitom
from holitom import counts, methods, paper
from holitom.baselines.prunevid import (
    DYNAMIC,
    NEWLINE,
    STATIC,
    apportion,
    cluster_means,
    contiguous_segments,
    dpc_knn_clusters,
    frame_cluster_labels,
    frame_segments,
    prunevid_compress,
    prunevid_compress_with_info,
    reduce_sets,
    restore_dynamic,
    segment_statistics,
)
from holitom.flops import schedule_flops
from holitom.methods.prunevid import METHOD, PruneVidConfig
from holitom.shapes import SHAPES, shape_of_paper_model
from holitom.spatial import pairwise_distances

# --------------------------------------------------------------------------------------------- helpers


def line(*values: float) -> torch.Tensor:
    """Points on a line as (1, m, 1) tokens: with C = 1, dist(i, j) = |x_i − x_j| exactly."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1)


def clusters(x: torch.Tensor, n_centres: int, k: int, valid: torch.Tensor | None = None):
    valid = torch.ones(x.shape[:2], dtype=torch.bool) if valid is None else valid
    wanted = torch.full((x.shape[0],), n_centres, dtype=torch.long)
    return dpc_knn_clusters(pairwise_distances(x), valid, wanted, k)


def reference_dpc(x: torch.Tensor, n_centres: int, k: int) -> tuple[list[int], list[int]]:
    """One set (m, C), the definition step by step with Python loops and the same tie rules."""
    m = x.shape[0]
    dist = pairwise_distances(x[None])[0].tolist()
    density = [math.exp(-sum(d * d for d in sorted(row)[: min(k, m)]) / min(k, m)) for row in dist]
    density = torch.tensor(density, dtype=torch.float32).tolist()  # the float32 values the code compares
    ranked = sorted(range(m), key=lambda i: (-density[i], i))
    rank = {token: r for r, token in enumerate(ranked)}
    top = max(max(row) for row in dist)
    delta = [min([dist[i][j] for j in range(m) if rank[j] < rank[i]], default=top) for i in range(m)]
    score = torch.tensor(delta, dtype=torch.float32) * torch.tensor(density, dtype=torch.float32)
    centres = sorted(range(m), key=lambda i: (-float(score[i]), i))[:n_centres]
    assign = []
    for i in range(m):
        if i in centres:
            assign.append(centres.index(i))
        else:
            near = [dist[i][c] for c in centres]
            assign.append(near.index(min(near)))
    return centres, assign


def video(frames: int, tokens: int, channels: int, seed: int = 0, drift: float = 0.6) -> torch.Tensor:
    """Frames made of a few scenes, each a fixed background plus per-frame noise: static and dynamic
    positions, several segments."""
    g = torch.Generator().manual_seed(seed)
    scenes = torch.randn(4, tokens, channels, generator=g)
    scene_of_frame = torch.arange(frames) * 4 // frames
    return scenes[scene_of_frame] + drift * torch.randn(frames, tokens, channels, generator=g)


def pairwise_cosine_reference(clip: torch.Tensor) -> torch.Tensor:
    """(W, N, C) → (N,): mean over ordered pairs w ≠ t of cos(x_w[p], x_t[p]), with the W×W×N tensor."""
    unit = torch.nn.functional.normalize(clip.double(), dim=-1)
    sims = torch.einsum("wnc,tnc->wtn", unit, unit)
    w = clip.shape[0]
    off_diagonal = ~torch.eye(w, dtype=torch.bool)
    return sims[off_diagonal].sum(0) / (w * (w - 1))


# --------------------------------------------------------------------------------------------- DPC-KNN


def test_dpc_hand_worked_on_a_line():
    # Points 0, 1, 3, 50, 52, k = 2 (itself + nearest): mean squared distances 0.5, 0.5, 2, 2, 2, so the
    # ranks are 0 > 1 > 2 > 3 > 4 (equal densities: lower index higher). delta: 52 (top: the largest
    # distance), 1, 2, 47, 2 → scores 52e^-.5, e^-.5, 2e^-2, 47e^-2, 2e^-2: centres in score order 0, 3, 1, 2, 4.
    x = line(0, 1, 3, 50, 52)
    centres, assign = clusters(x, 2, 2)
    assert centres.tolist() == [[0, 3]] and assign.tolist() == [[0, 0, 0, 1, 1]]
    centres, assign = clusters(x, 3, 2)
    assert centres.tolist() == [[0, 3, 1]] and assign.tolist() == [[0, 2, 2, 1, 1]]  # 3 is nearer 1 than 0
    centres, assign = clusters(x, 4, 2)
    assert centres.tolist() == [[0, 3, 1, 2]] and assign.tolist() == [[0, 2, 3, 1, 1]]  # score tie 2 vs 4 → 2
    assert torch.equal(cluster_means(x, assign, 4), torch.tensor([[[0.0], [51.0], [1.0], [3.0]]]))


def test_dpc_duplicates_are_deterministic_and_centres_keep_their_own_cluster():
    # Three identical tokens: every density, delta and score ties → centres 0 then 1; every token is
    # equally near both (first centre wins), but centre 1 stays in its own cluster.
    x = line(5, 5, 5)
    centres, assign = clusters(x, 2, 7)
    assert centres.tolist() == [[0, 1]] and assign.tolist() == [[0, 1, 0]]


@pytest.mark.parametrize("seed", range(4))
def test_dpc_matches_the_step_by_step_definition(seed):
    g = torch.Generator().manual_seed(seed)
    m, c, k = [(12, 3, 7), (20, 5, 3), (9, 9, 7), (30, 1, 4)][seed]
    x = torch.randn(m, 6, generator=g)
    centres, assign = clusters(x[None], c, k)
    ref_centres, ref_assign = reference_dpc(x, c, k)
    assert centres[0].tolist() == ref_centres and assign[0].tolist() == ref_assign


def test_dpc_padding_changes_nothing():
    # Rows of different sizes padded into one batch give what each set gives on its own.
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(15, 4, generator=g), torch.randn(9, 4, generator=g)
    padded = torch.zeros(2, 15, 4)
    padded[0], padded[1, :9] = a, b
    padded[1, 9:] = 100.0  # far padding would be everybody's farthest point if it were counted
    valid = torch.arange(15) < torch.tensor([[15], [9]])
    centres, assign = dpc_knn_clusters(pairwise_distances(padded), valid, torch.tensor([4, 3]), 7)
    alone_a, alone_b = clusters(a[None], 4, 7), clusters(b[None], 3, 7)
    assert torch.equal(centres[0], alone_a[0][0]) and torch.equal(assign[0], alone_a[1][0])
    assert torch.equal(centres[1, :3], alone_b[0][0]) and torch.equal(assign[1, :9], alone_b[1][0])
    assert (assign[1, 9:] == -1).all()


def test_dpc_rows_without_centres_and_bad_inputs():
    x = line(0, 1, 2)
    centres, assign = dpc_knn_clusters(
        pairwise_distances(x), torch.ones(1, 3, dtype=torch.bool), torch.tensor([0]), 7
    )
    assert centres.shape == (1, 0) and assign.tolist() == [[-1, -1, -1]]
    dist, valid = pairwise_distances(x), torch.ones(1, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"distances must be a tensor of shape \(B, n, n\)"):
        dpc_knn_clusters(dist[0], valid, torch.tensor([1]), 7)
    with pytest.raises(ValueError, match="valid must be a bool tensor"):
        dpc_knn_clusters(dist, valid.long(), torch.tensor([1]), 7)
    with pytest.raises(ValueError, match="n_centres must be in"):
        dpc_knn_clusters(dist, valid, torch.tensor([4]), 7)
    with pytest.raises(ValueError, match="k=0"):
        dpc_knn_clusters(dist, valid, torch.tensor([1]), 0)


def test_cluster_means_plain_mean_exact_singletons_and_empty_clusters():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [10.0, 0.0], [7.0, 7.0]]]).to(torch.bfloat16)
    out = cluster_means(x, torch.tensor([[0, 0, 1, -1]]), 3)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, torch.tensor([[[2.0, 3.0], [10.0, 0.0], [0.0, 0.0]]], dtype=torch.bfloat16))
    odd = torch.tensor([[[1.0009765625]]], dtype=torch.bfloat16)  # a singleton is copied, not re-rounded
    assert torch.equal(cluster_means(odd, torch.tensor([[0]]), 1), odd)
    with pytest.raises(ValueError, match="assign values must be −1 or in"):
        cluster_means(x, torch.tensor([[0, 0, 3, -1]]), 3)


def test_reduce_sets_full_rows_raw_clustered_rows_in_score_order_empty_rows_nothing():
    x = torch.zeros(3, 5, 1)
    x[:, :, 0] = torch.tensor([0.0, 1.0, 3.0, 50.0, 52.0])
    valid = torch.tensor([[True, False, True, True, False], [True] * 5, [True] * 5])
    out, positions = reduce_sets(x, valid, torch.tensor([3, 2, 0]), 2)
    # row 0 keeps its 3 tokens as they are, in raster order; row 1 is the line example; row 2 keeps nothing
    assert positions.tolist() == [[0, 2, 3], [0, 3, -1], [-1, -1, -1]]
    assert out[0, :, 0].tolist() == [0.0, 3.0, 50.0]
    assert out[1, :2, 0].tolist() == pytest.approx([4 / 3, 51.0])
    with pytest.raises(ValueError, match=r"n_keep must be \(3,\) integers in \[0, number of valid tokens\]"):
        reduce_sets(x, valid, torch.tensor([4, 2, 0]), 2)
    with pytest.raises(ValueError, match="valid must be on the host"):
        reduce_sets(x, valid.to("meta"), torch.tensor([3, 2, 0]), 2)


# --------------------------------------------------------------------------------------------- segments


@pytest.mark.parametrize(
    "labels, segments",
    [
        # the notes' example: cluster 1 keeps frames 0–1 (frame 3 lost), cluster 0 keeps 4–7 (frame 2
        # lost); block 2–3 has a left run of 2 and a right run of 4 → it joins the right one
        ([1, 1, 0, 1, 0, 0, 0, 0], [(0, 1), (2, 7)]),
        ([0, 1, 2, 3], [(0, 3)]),  # every cluster's longest run is one frame: no neighbour → one segment
        ([0, 0, 1, 0, 0], [(0, 4)]),  # both equal-longest runs of 0 stay; the tie goes left; runs merge
        ([0, 0, 1, 1, 1, 0, 0], [(0, 1), (2, 4), (5, 6)]),  # equal-longest runs of one cluster stay apart
        ([0, 0, 2, 1, 1, 1], [(0, 1), (2, 5)]),  # a longer right run wins
        ([0, 0, 5, 1, 1, 1, 6, 2, 2, 2, 2], [(0, 1), (2, 6), (7, 10)]),  # left run measured after filling: 4
        ([3, 3, 3, 4], [(0, 3)]),  # a lone frame at the end joins its left run
        ([7], [(0, 0)]),
    ],
)
def test_contiguous_segments(labels, segments):
    assert contiguous_segments(labels) == segments


@pytest.mark.parametrize("labels", [[], [True, False], "abc", [0.5]])
def test_contiguous_segments_bad_labels(labels):
    with pytest.raises(ValueError, match="labels must be a non-empty sequence of integers"):
        contiguous_segments(labels)


def test_frame_segments_hand_worked():
    # Frames 0, 1, 3 show scene a, frames 2, 4–7 scene b; γ = 0.25 → int(8·0.25) = 2 clusters, k = 7.
    # 7 nearest of an a-frame: 3 a + 4 b (mean d²·4/7); of a b-frame: 5 b + 2 a (d²·2/7): b is denser.
    # Top: frame 2 (first b); frame 0 is the highest a, at distance d from every b → the 2 centres.
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    frames = torch.stack([a, a, b, a, b, b, b, b]).unsqueeze(1).expand(8, 3, 2)
    assert frame_cluster_labels(frames.mean(1), 2, 7).tolist() == [1, 1, 0, 1, 0, 0, 0, 0]
    assert frame_segments(frames, 0.25, 7) == [(0, 1), (2, 7)]
    # fewer frames than k, fewer than 1/γ: k is clamped, at least one cluster
    assert frame_segments(frames[:3], 0.25, 7) == [(0, 2)]
    assert frame_segments(frames[:1], 0.25, 7) == [(0, 0)]


def test_segment_statistics_hand_worked():
    # Segment (0, 2): position 0 keeps its direction (s = 1); position 1 flips x, −x, x: ordered pairs
    # −1, 1, −1 twice each → s = −2/6. Segment (3, 4): orthogonal → 0; a zero vector counts −1 for its
    # self-pair as in the official code: (‖x̂‖² − 2)/2 = −0.5.
    x = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 1.0]],
            [[2.0, 0.0], [0.0, -1.0]],
            [[3.0, 0.0], [0.0, 1.0]],
            [[1.0, 0.0], [0.0, 0.0]],
            [[0.0, 1.0], [2.0, 0.0]],
        ]
    )
    similarity, means = segment_statistics(x, [(0, 2), (3, 4)])
    assert torch.allclose(similarity, torch.tensor([[1.0, -1 / 3], [0.0, -0.5]]))
    assert torch.allclose(means, torch.tensor([[[2.0, 0.0], [0.0, 1 / 3]], [[0.5, 0.5], [1.0, 0.0]]]))
    single, _ = segment_statistics(x[:1], [(0, 0)])
    assert single.tolist() == [[-math.inf, -math.inf]]  # one frame: no pairs, never static


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 7])
def test_segment_statistics_equal_the_all_pairs_definition_for_any_chunking(chunk):
    x = video(11, 6, 5, seed=1).to(torch.float64)
    segments = [(0, 3), (4, 5), (6, 10)]
    similarity, means = segment_statistics(x, segments, frames_per_chunk=chunk)
    for j, (start, end) in enumerate(segments):
        clip = x[start : end + 1]
        assert similarity[j].double() == pytest.approx(pairwise_cosine_reference(clip), abs=1e-6)
        assert torch.allclose(means[j], clip.mean(0))


def test_segment_statistics_bad_segments():
    x = torch.zeros(4, 2, 2)
    for bad in ([(0, 1)], [(0, 1), (3, 3)], [(0, 4)], [[0, 3]]):
        with pytest.raises(ValueError, match="segments must be inclusive"):
            segment_statistics(x, bad)


# --------------------------------------------------------------------------------------------- budget


def test_restore_dynamic_hand_worked():
    # Widths 2 and 3, N = 3: P = 15 − (2·1 + 3·2) = 7 < 10 → 3 more tokens. Static positions by ascending
    # similarity: (1,0) 0.85 adds 2 → 9; (0,0) 0.9 and (1,2) 0.9 tie → earlier segment: (0,0) adds 1 → 10.
    similarity = torch.tensor([[0.9, 0.95, 0.1], [0.85, 0.99, 0.9]])
    static = similarity > 0.8
    restored, count = restore_dynamic(similarity, static, torch.tensor([2, 3]), 10)
    assert count == 2 and restored.tolist() == [[False, True, False], [False, True, True]]
    same, none = restore_dynamic(similarity.numpy(), static.numpy(), [2, 3], 7)  # numpy works as well
    assert none == 0 and same.tolist() == static.tolist()
    everything, all_count = restore_dynamic(similarity, static, torch.tensor([2, 3]), 15)
    assert all_count == 5 and not everything.any()
    with pytest.raises(ValueError, match=r"budget=16: must be at most F·N = 15"):
        restore_dynamic(similarity, static, torch.tensor([2, 3]), 16)


def test_apportion_hand_worked_and_invariants():
    # quotas 2.5, 1.5, 1.0 → floors 2, 1, 1; one left, remainders tie (5, 5) → the earlier set
    assert apportion(torch.tensor([5, 3, 2]), 5).tolist() == [3, 1, 1]
    assert apportion(torch.tensor([1, 1, 1]), 2).tolist() == [1, 1, 0]
    assert apportion(torch.tensor([4, 0, 6]), 10).tolist() == [4, 0, 6]
    assert apportion(torch.tensor([4, 0, 6]), 0).tolist() == [0, 0, 0]
    assert apportion(torch.tensor([0, 0]), 0).tolist() == [0, 0]
    rng = np.random.default_rng(0)
    for _ in range(20):
        sizes = rng.integers(0, 200, 40)
        total = int(rng.integers(0, sizes.sum() + 1))
        kept = apportion(sizes, total)
        quota = sizes * total / sizes.sum()
        assert kept.sum() == total and (kept <= sizes).all() and (np.abs(kept - quota) < 1).all()
    with pytest.raises(ValueError, match="total=11: must be at most the sum of the sizes"):
        apportion(torch.tensor([5, 5]), 11)
    with pytest.raises(ValueError, match="sizes must be a 1-D array of integers"):
        apportion(torch.tensor([5.0]), 1)


# --------------------------------------------------------------------------------------------- the stage

# 4 frames × 4 positions (2×2 grid) × 3 channels. Frames 0–1 and 2–3 are the two frame clusters (γ = 0.5;
# descriptor distances 0.37 and 1.02 within, ≥ 1.34 across; centres frames 3 and 1).
#   segment (0,1): positions 0, 1 keep their direction (static, means 1.1e0, 1.2e1); 2 flips, 3 turns (dynamic)
#   segment (2,3): positions 0, 1, 2 identical (static); 3 turns (dynamic)
TOY = torch.tensor(
    [
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]],
        [[1.2, 0.0, 0.0], [0.0, 1.4, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]],
        [[-5.0, 0.0, 0.0], [0.0, -5.0, 0.0], [0.0, 0.0, -5.0], [-5.0, 0.0, 0.0]],
        [[-5.0, 0.0, 0.0], [0.0, -5.0, 0.0], [0.0, 0.0, -5.0], [0.0, 0.0, 5.0]],
    ]
)
NL = torch.tensor([-1.0, -1.0, -1.0])


def test_toy_one_token_hand_worked():
    info = prunevid_compress_with_info(TOY, 0.5, 0.8, 0.5, 7)
    assert info.segments == [(0, 1), (2, 3)]
    # Sets in output order: static A (2), f0 (2), f1 (2), static B (3), f2 (1), f3 (1): P = 11.
    # B = 4·ceil(4·0.5) = 8: quotas 16/11 ×3, 24/11, 8/11 ×2 → floors 1,1,1,2,0,0; remainders 5,5,5,2,8,8
    # → +1 to f2, f3, static A → kept 2,1,1,2,1,1.
    assert (info.budget, info.held, info.restored) == (8, 11, 0)
    assert info.adjusted_ratio == pytest.approx(8 / 11)
    # static A kept whole (raster). f0: {e2, e0} → one cluster; equal densities and scores → centre at
    # position 2, mean (0.5, 0, 0.5); f1 likewise (0, 0.5, −0.5). Static B: three equidistant means → centre
    # 0 first (ties by index), then 1; position 2 joins the first centre: mean (−2.5, 0, −2.5). f2, f3 raw.
    expected = torch.tensor(
        [
            [1.1, 0.0, 0.0], [0.0, 1.2, 0.0],
            [0.5, 0.0, 0.5],
            [0.0, 0.5, -0.5],
            [-2.5, 0.0, -2.5], [0.0, -5.0, 0.0],
            [-5.0, 0.0, 0.0],
            [0.0, 0.0, 5.0],
        ]
    )  # fmt: skip
    assert torch.allclose(info.tokens, expected)
    assert info.positions.tolist() == [0, 1, 2, 2, 0, 1, 3, 3]
    assert info.frames.tolist() == [0, 0, 0, 1, 2, 2, 2, 3]
    assert info.kinds.tolist() == [STATIC, STATIC, DYNAMIC, DYNAMIC, STATIC, STATIC, DYNAMIC, DYNAMIC]
    assert (info.num_static, info.num_dynamic, info.num_newlines) == (4, 4, 0)
    assert torch.equal(prunevid_compress(TOY, 0.5, 0.8, 0.5, 7), info.tokens)


def test_toy_grid_layout_hand_worked():
    info = prunevid_compress_with_info(TOY, 0.5, 0.8, 0.5, 7, newline=NL)
    # frame group 0: static A at 0, 1 and f0's token at 2 → [0 1 NL][2 NL]; group 1: [2 NL];
    # group 2: static B at 0, 1 and f2's token at 3 → [0 1 NL][3 NL]; group 3: [3 NL]
    assert info.positions.tolist() == [0, 1, -1, 2, -1, 2, -1, 0, 1, -1, 3, -1, 3, -1]
    assert info.frames.tolist() == [0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 3, 3]
    assert info.num_newlines == 6 and info.tokens.shape == (8 + 6, 3)
    assert torch.equal(info.tokens[info.kinds == NEWLINE], NL.expand(6, 3))
    one_token = prunevid_compress_with_info(TOY, 0.5, 0.8, 0.5, 7)
    body = info.tokens[info.kinds != NEWLINE]
    assert sorted(map(tuple, body.tolist())) == sorted(map(tuple, one_token.tokens.tolist()))


def test_retain_one_is_the_input_whatever_tau():
    x = video(6, 16, 4)
    for tau in (-1.0, 0.0, 0.8):
        info = prunevid_compress_with_info(x, 1.0, tau, 0.25, 7)
        assert torch.equal(info.tokens, x.reshape(-1, 4)) and info.num_static == 0
    grid = prunevid_compress_with_info(x, 1.0, -1.0, 0.25, 7, newline=torch.zeros(4))
    from llava.model.llava_arch import add_video_newlines

    assert torch.equal(grid.tokens, add_video_newlines(x, torch.zeros(4), "grid"))


def test_static_video_turns_static_positions_back_to_meet_the_budget():
    # Every frame identical: one 4-frame segment, every position static → the sets hold P = N = 196 < B.
    # ρ = 0.5: B = 4·98 = 392; each restored position adds 3 → 66 restored (196 + 198 = 394 ≥ 392).
    x = video(1, 196, 8).expand(4, 196, 8)
    info = prunevid_compress_with_info(x, 0.5, 0.8, 0.25, 7)
    assert info.segments == [(0, 3)] and info.restored == 66 and info.held == 394
    assert info.tokens.shape == (392, 8)
    # ρ = 0.25: B = 196 = P → nothing restored; every static position is one token: the frame itself
    info = prunevid_compress_with_info(x, 0.25, 0.8, 0.25, 7)
    assert info.restored == 0 and info.num_static == 196 and torch.allclose(info.tokens, x[0])


@pytest.mark.parametrize("rho", [0.25, 0.20, 0.15, 0.10])
def test_exact_budget_one_token_f32x196(rho):
    x = video(32, 196, 16, seed=2)
    info = prunevid_compress_with_info(x, rho, 0.8, 0.25, 7)
    budget = 32 * math.ceil(196 * rho)
    assert (
        info.budget
        == counts.outer_tokens(32, 196, rho)
        == budget
        == {0.25: 1568, 0.2: 1280, 0.15: 960, 0.1: 640}[rho]
    )
    assert info.tokens.shape == (budget, 16) and info.num_newlines == 0
    assert info.num_static > 0 and len(info.segments) > 1  # the test video exercises both kinds
    # order: segments in time order; within one: the static set, then its frames in order
    for start, end in info.segments:
        inside = (info.frames >= start) & (info.frames <= end)
        idx = inside.nonzero().squeeze(1)
        assert torch.equal(idx, torch.arange(int(idx[0]), int(idx[-1]) + 1))  # contiguous block
        kinds, frames = info.kinds[idx], info.frames[idx]
        n_static = int((kinds == STATIC).sum())
        assert (kinds[:n_static] == STATIC).all() and (frames[:n_static] == start).all()
        assert (frames[n_static:].diff() >= 0).all()


@pytest.mark.parametrize("rho", [0.25, 0.20, 0.15, 0.10])
def test_exact_budget_grid_f32x169(rho):
    x = video(32, 169, 16, seed=3)
    info = prunevid_compress_with_info(x, rho, 0.8, 0.25, 7, newline=torch.zeros(16))
    budget = 32 * math.ceil(169 * rho)
    assert budget == {0.25: 1376, 0.2: 1088, 0.15: 832, 0.1: 544}[rho]
    body = info.kinds != NEWLINE
    assert int(body.sum()) == budget
    # the grid rule: one newline per (frame group, grid row) holding a token, right after that row
    rows = {
        (f, p // 13) for f, p in zip(info.frames[body].tolist(), info.positions[body].tolist(), strict=True)
    }
    assert info.num_newlines == len(rows) and info.tokens.shape[0] == budget + len(rows)
    # tokens sorted by (frame group, position); a newline right after the last token of each row
    key = (info.frames * 169 + info.positions)[body]
    assert (key.diff() > 0).all()
    row = (key // 13).tolist()
    newline_after = info.kinds[1:][body[:-1]] == NEWLINE  # the element after each token (last: a newline)
    row_ends = [a != b for a, b in zip(row, row[1:], strict=False)] + [True]
    assert newline_after.tolist() == row_ends and info.kinds[-1] == NEWLINE
    groups = {f: set() for f in range(32)}
    for f, p in zip(info.frames[body].tolist(), info.positions[body].tolist(), strict=True):
        assert p not in groups[f]
        groups[f].add(p)


def test_deterministic_even_with_duplicated_frames():
    # short videos sampled to F frames repeat frames: exact ties everywhere (the official code's noise
    # decided them at random)
    x = video(8, 49, 8, seed=4).repeat_interleave(2, dim=0)
    first = prunevid_compress_with_info(x, 0.15, 0.8, 0.25, 7)
    for _ in range(2):
        again = prunevid_compress_with_info(x, 0.15, 0.8, 0.25, 7)
        assert torch.equal(again.tokens, first.tokens) and torch.equal(again.positions, first.positions)
        assert again.segments == first.segments


class DeviceReads(TorchFunctionMode):
    """Counts the torch calls that read tensor values back to the host (a GPU stall each on CUDA)."""

    READS = {"__int__", "__bool__", "__float__", "__index__", "item", "tolist", "nonzero", "cpu", "numpy"}

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        index = args[1] if name == "__getitem__" and len(args) > 1 else None
        if name in self.READS or (isinstance(index, torch.Tensor) and index.dtype == torch.bool):
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("frames, grid", [(32, False), (32, True), (1024, False)])
def test_device_reads_are_the_labels_the_similarities_and_the_grid_count(frames, grid):
    n = 169 if grid else 196
    x = video(frames, n, 16, seed=7)
    with DeviceReads() as reads:
        prunevid_compress(x, 0.15, 0.8, 0.25, 7, torch.zeros(16) if grid else None)
    # frame labels (tolist), segment similarities (cpu, then numpy on the host copy), grid rows (nonzero)
    assert reads.calls == ["tolist", "cpu", "numpy"] + (["nonzero"] if grid else [])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dtype_preserved(dtype):
    x = video(8, 49, 8, seed=5).to(dtype)
    out = prunevid_compress(x, 0.2, 0.8, 0.25, 7)
    assert out.dtype == dtype and out.shape == (8 * 10, 8)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operation produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.largest = max(self.largest, leaf.numel())
        return out


def test_1024_frames_build_nothing_quadratic():
    sizes = {}
    for frames in (256, 1024):
        x = video(frames, 196, 8, seed=6, drift=0.2)
        with LargestTensor() as probe:
            out = prunevid_compress(x, 0.10, 0.8, 0.25, 7)
        assert out.shape == (frames * 20, 8)
        sizes[frames] = probe.largest
    # An F×F×N tensor would hold 1024²·196 = 2.1e8 values; the largest one here is a chunk of per-set
    # distance matrices (bounded by 2^24 values whatever F is) or a linear F·N·C one.
    for frames, largest in sizes.items():
        assert largest <= max(1 << 24, 2 * frames * 196 * 8)
    assert max(1 << 24, 2 * 1024 * 196 * 8) < 1024 * 1024 * 196 / 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": torch.zeros(4, 9)}, r"features must be a 3-D tensor \(F, N, C\)"),
        ({"features": torch.zeros(0, 9, 2)}, "features must have F, N, C > 0"),
        ({"features": torch.zeros(2, 9, 2, dtype=torch.long)}, "floating-point"),
        ({"retain_ratio": 0.0}, r"retain_ratio=0.0: must be in \(0, 1\]"),
        ({"retain_ratio": 1.5}, "retain_ratio=1.5"),
        ({"tau": math.nan}, "tau=nan: must be a finite number"),
        ({"segment_ratio": 0.0}, r"segment_ratio=0.0: must be in \(0, 1\]"),
        ({"knn": 0}, "knn=0: must be an integer ≥ 1"),
        ({"newline": torch.zeros(3)}, r"newline must have shape \(C,\) = \(2,\)"),
        ({"features": torch.zeros(2, 8, 2), "newline": torch.zeros(2)}, "needs N = side², got N=8"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = {
        "features": torch.randn(2, 9, 2),
        "retain_ratio": 0.5,
        "tau": 0.8,
        "segment_ratio": 0.25,
        "knn": 7,
    }
    with pytest.raises(ValueError, match=match):
        prunevid_compress_with_info(**(args | kwargs))


# --------------------------------------------------------------------------------------------- the method


def test_config_defaults_validation_and_shared_setting_names():
    config = PruneVidConfig()
    assert (config.retain_ratio, config.tau, config.prunevid_segment_ratio, config.knn) == (
        0.15,
        0.8,
        0.25,
        7,
    )
    for bad, match in [
        ({"retain_ratio": 0.0}, "PruneVidConfig.retain_ratio=0.0"),
        ({"tau": math.inf}, "PruneVidConfig.tau=inf: must be a finite number"),
        ({"prunevid_segment_ratio": 1.5}, r"PruneVidConfig.prunevid_segment_ratio=1.5: must be in \(0, 1\]"),
        ({"knn": 0}, "PruneVidConfig.knn=0"),
    ]:
        with pytest.raises(ValueError, match=match):
            PruneVidConfig(**bad)
    parsed = METHOD.make_config(
        {"retain_ratio": "0.25", "tau": "0.7", "prunevid_segment_ratio": "0.5", "knn": "5"}
    )
    assert parsed == PruneVidConfig(0.25, 0.7, 0.5, 5)
    assert METHOD.label(parsed, {"tau": 0.7}) == "prunevid ρ=0.25 tau=0.7"
    # a name another method already uses has the same type there
    for item in METHOD.settings:
        for other in methods.all_methods():
            for same in (s for s in other.settings if s.name == item.name):
                assert (same.type, same.optional, same.sequence, same.choices) == (
                    item.type, item.optional, item.sequence, item.choices,
                )  # fmt: skip
    assert METHOD.identity_settings == {"retain_ratio": 1.0} and METHOD.layouts == ("one_token", "grid")


@pytest.mark.parametrize("rho, tflops", [(0.25, 8.7), (0.20, 7.0), (0.15, 5.2), (0.10, 3.4)])
def test_flops_of_the_paper_budgets_ov7b(rho, tflops):
    schedule = METHOD.schedule(PruneVidConfig(retain_ratio=rho), 32, 196, 28)
    assert schedule == ((0, 32 * math.ceil(196 * rho)),)
    assert round(schedule_flops(SHAPES["ov-7b"], schedule) / 1e12, 1) == tflops


def test_flops_ov72b_and_every_paper_cell():
    schedule = METHOD.schedule(PruneVidConfig(retain_ratio=0.15), 32, 196, 80)
    assert round(schedule_flops(SHAPES["ov-72b"], schedule) / 1e12, 1) == 59.0
    rows = [r for r in paper.result_rows() if r["method"] == "PruneVid" and "TFLOPs" in r["values"]]
    assert len(rows) == 5
    for row in rows:
        shape = SHAPES[shape_of_paper_model(row["model"])]
        config = PruneVidConfig(**METHOD.paper_settings("PruneVid", shape.name, row["budget"]))
        schedule = METHOD.schedule(config, row["frames"], shape.tokens_per_frame, shape.num_layers)
        assert round(schedule_flops(shape, schedule) / 1e12, 1) == row["values"]["TFLOPs"]
    assert METHOD.paper_settings("HoliTom", "ov-7b", 0.15) is None


# --------------------------------------------------------------------------------------------- installs


def logits(model, ids, frames):
    with torch.no_grad():
        return model(input_ids=ids, images=[frames], modalities=["video"]).logits


@pytest.mark.parametrize("fixture", ["ov_model", "video_model"])
def test_install_counts_identity_and_remove(fixture, request):
    tokenizer, model, _, _ = request.getfixturevalue(fixture)
    grid = model.config.mm_newline_position == "grid"
    ids, frames = video_prompt_ids(tokenizer), random_frames(8, seed=2)
    vanilla = logits(model, ids, frames)

    methods.install(model, METHOD, PruneVidConfig(retain_ratio=1.0, tau=0.8))
    assert methods.installed(model).name == "prunevid"
    assert torch.equal(logits(model, ids, frames), vanilla)

    config = PruneVidConfig(retain_ratio=0.25)
    methods.install(model, METHOD, config)
    with torch.no_grad():
        pooled = model.get_2dPool(model.encode_images(frames))
        newline = model.get_model().image_newline
        info = prunevid_compress_with_info(pooled, 0.25, 0.8, 0.25, 7, newline if grid else None)
        got = model.video_tokens(frames)
    n = pooled.shape[1]
    budget = 8 * math.ceil(n * 0.25)
    expected_count = budget + (info.num_newlines if grid else 1)
    assert got.shape[0] == expected_count and info.budget == budget
    expected = info.tokens if grid else torch.cat([info.tokens, newline[None]])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    logits(model, ids, frames)
    stats = holitom.stats(model)
    assert stats.method == "prunevid" and stats.pooled_tokens == 8 * n
    assert stats.visual_tokens == expected_count and stats.visual_after == expected_count
    outer = stats.outer[0]
    assert outer["method"] == "prunevid" and outer["tokens"] == expected_count and outer["budget"] == budget
    assert outer["static"] + outer["dynamic"] == budget and outer["segments"] >= 1

    holitom.remove(model)
    assert methods.installed(model) is None and "video_token_compressor" not in model.__dict__
    assert not model.get_vision_tower().encoder_layers[-1]._forward_pre_hooks
    assert torch.equal(logits(model, ids, frames), vanilla)
