"""FastVID (holitom.baselines.fastvid, holitom.methods.fastvid): segmentation, budgets, density peaks, the
anchor merge, the whole video against a loop-by-loop reference, the MAP head and its loading, the install
on both tiny checkpoints, the FLOPs cells, long videos. (Over 500 lines: one file per method, as for every
method; the loop-by-loop reference implementation alone is a fifth of it.)"""

from __future__ import annotations

import dataclasses
import math
import re
import types

import pytest
import torch
from conftest import random_frames, video_prompt_ids

import holitom
from holitom import methods
from holitom.baselines import fastvid as fv
from holitom.baselines.fastvid import (
    anchor_budgets,
    density_peak_scores,
    dynamic_segments,
    fastvid_compress,
    fastvid_compress_with_info,
    merge_segments,
    select_centres,
    split_frame_budget,
)
from holitom.baselines.siglip_head import load_map_head, map_head_outputs
from holitom.counts import frame_budget
from holitom.flops import schedule_flops
from holitom.methods.fastvid import METHOD, FastVIDConfig
from holitom.outer import CONTEXTUAL, DOMINANT, NEWLINE
from holitom.shapes import SHAPES
from holitom.tools.tiny import make_tiny_siglip

# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def siglip_dir(tiny_siglip) -> str:
    return tiny_siglip


def unit2(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


def chain(similarities: list[float]) -> torch.Tensor:
    """2-D frame vectors whose consecutive cosines are the given similarities."""
    angles = [0.0]
    for s in similarities:
        angles.append(angles[-1] + math.acos(s))
    return torch.tensor([unit2(a) for a in angles], dtype=torch.float64).float()


def rand_video(f: int, n: int, c: int, seed: int = 0, drift: float = 0.5, global_drift: float = 0.05):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, n, c, generator=g)
    x = base + drift * torch.randn(f, n, c, generator=g)
    attention = torch.rand(f, n, generator=g)
    glob = torch.randn(1, 16, generator=g) + global_drift * torch.randn(f, 16, generator=g)
    return x, attention, glob


# ---------------------------------------------------------------------------------------------- a loop reference


def reference_fastvid(x, attention, glob, cfg: FastVIDConfig) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """FastVID written out with plain loops (the official OV rules with the exact budget split): the
    sorted (frame, position) keys and the float64 token values."""
    num_frames, n, c = x.shape
    g = glob.double() / glob.double().norm(dim=-1, keepdim=True)
    sims = [float(g[t] @ g[t + 1]) for t in range(num_frames - 1)]
    lowest = sorted(range(num_frames - 1), key=lambda t: (sims[t], t))[: min(cfg.fastvid_segments - 1, num_frames - 1)]
    cuts = sorted(set(lowest) | {t for t in range(num_frames - 1) if sims[t] < cfg.fastvid_tau})
    ends = [*cuts, num_frames - 1]
    starts = [0] + [e + 1 for e in ends[:-1]]
    r = math.ceil(n * cfg.retain_ratio) if cfg.fastvid_rounding == "ceil" else int(n * cfg.retain_ratio)
    ctx = int(r * cfg.fastvid_contextual)
    sal = r - ctx
    salient = [sorted(sorted(range(n), key=lambda i: (-float(attention[f, i]), i))[:sal]) for f in range(num_frames)]
    rest = [[i for i in range(n) if i not in salient[f]] for f in range(num_frames)]
    out = {(f, i): x[f, i].double() for f in range(num_frames) for i in salient[f]}
    xd = x.double()
    for s, e in zip(starts, ends):
        length = e - s + 1
        q = max(q for q in range(1, cfg.fastvid_anchor_stride + 1) if math.ceil(length / q) * (n - sal) >= length * ctx)
        anchors = list(range(e, s - 1, -q))  # from the last frame backwards
        total = length * ctx
        for k, f in enumerate(anchors):
            b = total // len(anchors) + (1 if k < total % len(anchors) else 0)
            if b == 0:
                continue
            pts = xd[f, rest[f]]
            m = len(rest[f])
            dist = torch.tensor([[float((pts[i] - pts[j]).norm()) / math.sqrt(c) for j in range(m)] for i in range(m)])
            density = [math.exp(-sum(v * v for v in sorted(dist[i].tolist())[: min(4, m)]) / min(4, m)) for i in range(m)]
            rank = {i: (density[i], -i) for i in range(m)}  # j is higher than i when rank[j] > rank[i]
            delta = [min([float(dist[i, j]) for j in range(m) if rank[j] > rank[i]] or [float(dist.max())]) for i in range(m)]
            score = [delta[i] * density[i] for i in range(m)]
            centres = sorted(sorted(range(m), key=lambda i: (-score[i], i))[:b])
            cvec = [pts[i] for i in centres]
            units = [v / v.norm() for v in cvec]
            sums = [torch.zeros(c, dtype=torch.float64) for _ in centres]
            sizes = [0] * len(centres)
            for t in range(s, e + 1):
                for i in rest[t]:
                    v = xd[t, i]
                    sim = [float(v @ u) / float(v.norm()) for u in units]
                    best = max(range(len(units)), key=lambda k2: (sim[k2], -k2))
                    sums[best] += v
                    sizes[best] += 1
            for k2, i in enumerate(centres):
                w = max(1 / (sizes[k2] + 1), cfg.fastvid_beta)
                value = w * cvec[k2] + (1 - w) * sums[k2] / sizes[k2] if sizes[k2] else cvec[k2]
                out[(f, rest[f][i])] = value
    keys = sorted(out)
    return keys, torch.stack([out[k] for k in keys])


# ---------------------------------------------------------------------------------------------- segmentation


def test_segments_hand_worked():
    # similarities .95 .97 .85 .99 .98 .96 .97 .93 .99; c = 3 → the two smallest (t = 2, 7); τ = .9 adds t = 2
    glob = chain([0.95, 0.97, 0.85, 0.99, 0.98, 0.96, 0.97, 0.93, 0.99])
    assert dynamic_segments(glob, 3, 0.9) == [(0, 2), (3, 7), (8, 9)]
    # τ = .96 also cuts after .95 (t = 0) and .93 (t = 7); .96 itself is not below τ
    assert dynamic_segments(glob, 3, 0.96) == [(0, 0), (1, 2), (3, 7), (8, 9)]
    assert dynamic_segments(glob, 1, -2.0) == [(0, 9)]  # no cut at all
    assert dynamic_segments(glob, 1, 1.5) == [(t, t) for t in range(10)]  # every pair below τ


def test_segments_few_frames_and_ties():
    assert dynamic_segments(torch.randn(3, 4), 8, 0.9) == [(0, 0), (1, 1), (2, 2)]  # F < c: one frame each
    assert dynamic_segments(torch.randn(8, 4), 8, -2.0) == [(t, t) for t in range(8)]  # F = c
    assert dynamic_segments(torch.randn(1, 4), 8, 0.9) == [(0, 0)]
    # identical frames: every similarity is 1, the c − 1 lowest are the first pairs (ties → lower t)
    same = torch.ones(6, 3)
    assert dynamic_segments(same, 3, 0.9) == [(0, 0), (1, 1), (2, 5)]
    # a zero vector has similarity 0 with its neighbours (no NaN)
    glob = torch.ones(4, 2)
    glob[2] = 0
    assert dynamic_segments(glob, 1, 0.5) == [(0, 1), (2, 2), (3, 3)]


# ---------------------------------------------------------------------------------------------- budgets


def test_frame_budgets_at_the_paper_ratios():
    # OneVision N = 196: R = ceil(N·ρ) 49/40/30/20 (official int: 49/39/29/19), Cn = int(0.4·R), S = R − Cn
    assert [frame_budget(196, rho) for rho in (0.25, 0.20, 0.15, 0.10)] == [49, 40, 30, 20]
    assert [frame_budget(196, rho, "floor") for rho in (0.25, 0.20, 0.15, 0.10)] == [49, 39, 29, 19]
    assert [split_frame_budget(r, 0.4) for r in (49, 40, 30, 20)] == [(30, 19), (24, 16), (18, 12), (12, 8)]
    assert [split_frame_budget(r, 0.4) for r in (39, 29, 19)] == [(24, 15), (18, 11), (12, 7)]  # the notes' table
    assert [frame_budget(169, rho) for rho in (0.25, 0.15)] == [43, 26]  # LLaVA-Video N = 169
    assert split_frame_budget(20, 0.0) == (20, 0) and split_frame_budget(20, 1.0) == (0, 20)
    with pytest.raises(ValueError, match="rounding='round'"):
        frame_budget(196, 0.1, "round")


def test_anchor_budgets_hand_worked():
    # the notes' example: segments 3, 5, 2; Cn = 3, 11 open tokens per frame, p = 4
    # L = 3: one anchor (frame 2) gets 9; L = 5: anchors at offsets 4, 0 share 15 → 8 (last) + 7;
    # L = 2: one anchor (frame 9) gets 6. Every segment spends L·Cn.
    assert anchor_budgets([3, 5, 2], 3, 11, 4).tolist() == [0, 0, 9, 7, 0, 0, 0, 8, 0, 6]
    # L = 9, p = 4: anchors at offsets 8, 4, 0 share 27 → 9 each
    assert anchor_budgets([9], 3, 11, 4).tolist() == [9, 0, 0, 0, 9, 0, 0, 0, 9]
    # L = 6, Cn = 4, p = 4: anchors at offsets 5, 1 share 24 → 12 each; the remainder of L = 7 (28 / 2) none
    assert anchor_budgets([6, 7], 4, 20, 4).tolist() == [0, 12, 0, 0, 0, 12, 0, 0, 14, 0, 0, 0, 14]
    assert anchor_budgets([4, 1], 0, 5, 4).tolist() == [0] * 5  # no contextual tokens: no anchors
    assert anchor_budgets([3], 2, 5, 1).tolist() == [2, 2, 2]  # p = 1: every frame an anchor with Cn
    assert anchor_budgets([1, 1], 3, 5, 4).tolist() == [3, 3]  # one-frame segments keep their own Cn


def test_anchor_budgets_never_exceed_an_anchor_frame():
    # L = 4, Cn = 3, 6 open tokens: one anchor (p = 4) would need 12 > 6 (the official code crashes);
    # q = 3 gives anchors at offsets 3 and 0 holding 6 each
    assert anchor_budgets([4], 3, 6, 4).tolist() == [6, 0, 0, 6]
    assert anchor_budgets([4], 3, 3, 4).tolist() == [3, 3, 3, 3]  # only q = 1 fits
    for lengths in ([5, 9, 17], [1, 2, 3, 4, 64]):
        budgets = anchor_budgets(lengths, 7, 9, 4)
        assert int(budgets.sum()) == 7 * sum(lengths) and int(budgets.max()) <= 9


@pytest.mark.parametrize(
    "args, match",
    [
        (([3], -1, 5, 4), "contextual=-1"),
        (([3], 3, 2, 4), "capacity=2: must be an integer ≥ 3"),
        (([3], 3, 5, 0), "stride=0"),
        (([0, 2], 1, 5, 4), "lengths"),
        (([], 1, 5, 4), "lengths"),
    ],
)
def test_anchor_budgets_bad_args(args, match):
    with pytest.raises(ValueError, match=match):
        anchor_budgets(*args)


# ---------------------------------------------------------------------------------------------- density peaks


def test_density_peak_scores_hand_worked():
    # 1-D points 0, 1, 10 (C = 1: dist = |a − b|), k = 2 (itself + its nearest):
    # density 0 and 1: exp(−(0 + 1)/2); 2: exp(−(0 + 81)/2). Equal densities: point 0 is the higher one,
    # so delta 0 = the largest distance 10, delta 1 = dist(1, 0) = 1, delta 2 = dist(2, 1) = 9.
    scores = density_peak_scores(torch.tensor([[[0.0], [1.0], [10.0]]]), k=2)
    expected = torch.tensor([[10 * math.exp(-0.5), math.exp(-0.5), 9 * math.exp(-40.5)]])
    assert torch.allclose(scores, expected, rtol=1e-5, atol=0)
    # k larger than the item is clamped; one token alone scores 0
    assert density_peak_scores(torch.ones(2, 1, 3), k=4).tolist() == [[0.0], [0.0]]


def test_density_peak_scores_match_cdist_and_chunking(monkeypatch):
    x = torch.randn(7, 30, 5, generator=torch.Generator().manual_seed(1))
    dist = torch.cdist(x.double(), x.double()) / math.sqrt(5)
    density = (-(dist.topk(4, largest=False).values ** 2).mean(-1)).exp()
    higher = density[:, None, :] > density[:, :, None]
    delta = torch.where(higher, dist, dist.flatten(1).max(-1).values[:, None, None]).min(-1).values
    scores = density_peak_scores(x)
    assert torch.allclose(scores.double(), delta * density, rtol=1e-4, atol=1e-6)
    monkeypatch.setattr(fv, "_CPU_CHUNK_VALUES", 1)  # one item per chunk
    assert torch.equal(density_peak_scores(x), scores)


def test_select_centres_ties_and_padding():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.9], [0.3, 0.2, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0]])
    centres = select_centres(scores, torch.tensor([2, 1, 3]), 3)
    # row 0: the two 0.9 (lower index first); row 1: index 0; row 2: all equal → the lowest three
    assert centres.tolist() == [[1, 3, -1], [0, -1, -1], [0, 1, 2]]
    assert select_centres(scores, torch.tensor([0, 0, 0]), 0).shape == (3, 0)
    with pytest.raises(ValueError, match=r"width=5: must be an integer in \[0, 4\]"):
        select_centres(scores, torch.tensor([4, 1, 1]), 5)
    with pytest.raises(ValueError, match="budgets must be an integer tensor"):
        select_centres(scores, torch.tensor([1.0, 1.0, 1.0]), 1)


# ---------------------------------------------------------------------------------------------- merge

# Two frames of three tokens, C = 2; frame 0 position 1 is salient (not a member).
MERGE_X = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 0.1]], [[3.0, 0.0], [0.0, 5.0], [0.0, 2.0]]])
MERGE_MEMBERS = torch.tensor([[True, False, True], [True, True, True]])


def test_merge_hand_worked():
    # One segment (frames 0-1), one anchor (frame 1) with centres at positions 0 ([3, 0]) and 2 ([0, 2]).
    # By cosine: [1, 0], [2, .1], [3, 0] → centre 0 (n = 3); [0, 5], [0, 2] → centre 2 (n = 2).
    # β = .6: w = max(1/(n+1), .6) = .6 → .6·[3, 0] + .4·[2, 1/30] and .6·[0, 2] + .4·[0, 3.5]
    out = merge_segments(MERGE_X, MERGE_MEMBERS, torch.tensor([0]), 2, torch.tensor([[1]]), torch.tensor([[[0, 2]]]), 0.6)
    assert out.shape == (1, 1, 2, 2)
    assert torch.allclose(out[0, 0], torch.tensor([[2.6, 0.4 / 30], [0.0, 2.6]]))
    # β = .2: w = 1/(n+1) wins: 1/4 and 1/3 (the plain mean of the centre counted twice and its members)
    out = merge_segments(MERGE_X, MERGE_MEMBERS, torch.tensor([0]), 2, torch.tensor([[1]]), torch.tensor([[[0, 2]]]), 0.2)
    assert torch.allclose(out[0, 0], torch.tensor([[2.25, 0.025], [0.0, 3.0]]))


def test_merge_every_anchor_takes_every_segment_token_and_empty_centres_stay():
    # Two anchors (frames 0 and 1) of one segment: each takes all five members among its own centres.
    # Anchor 0: centres [1, 0] and [2, .1]; anchor 1: centres [3, 0] and [0, 2] (padding −1 in slot 2).
    centres = torch.tensor([[[0, 2, -1], [0, 2, -1]]])
    out = merge_segments(MERGE_X, MERGE_MEMBERS, torch.tensor([0]), 2, torch.tensor([[0, 1]]), centres, 0.6)
    # anchor 0: [1,0],[3,0] → [1,0] (cos 1 vs .9988); [2,.1] → itself; [0,5],[0,2] → [2,.1] (cos .05 > 0)
    a0 = 0.6 * torch.tensor([1.0, 0.0]) + 0.4 * torch.tensor([4.0, 0.0]) / 2
    a1 = 0.6 * torch.tensor([2.0, 0.1]) + 0.4 * torch.tensor([2.0, 7.1]) / 3
    assert torch.allclose(out[0, 0, :2], torch.stack([a0, a1])) and out[0, 0, 2].eq(0).all()
    # a centre of the same direction as an earlier one gets no member (ties → lower slot): unchanged
    x = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [5.0, 0.0]]])
    out = merge_segments(x, torch.ones(1, 3, dtype=torch.bool), torch.tensor([0]), 1, torch.tensor([[0]]), torch.tensor([[[0, 1]]]), 0.6)
    assert torch.allclose(out[0, 0, 0], 0.6 * x[0, 0] + 0.4 * (8.0 / 3) * x[0, 0]) and torch.equal(out[0, 0, 1], x[0, 1])


def test_merge_chunking_gives_the_same_result(monkeypatch):
    x, _, _ = rand_video(12, 16, 6, seed=3)
    members = torch.rand(12, 16, generator=torch.Generator().manual_seed(4)) > 0.3
    starts = torch.tensor([0, 6])
    frames = torch.tensor([[1, 5], [7, 11]])
    positions = torch.tensor([[[0, 3, 9], [2, 4, -1]], [[1, 5, 6], [8, -1, -1]]])
    whole = merge_segments(x, members, starts, 6, frames, positions, 0.6)
    for values in (1, 200, 1500, 5000):  # one frame and anchor per step, all anchors, whole segments, both
        monkeypatch.setattr(fv, "_CPU_CHUNK_VALUES", values)
        assert torch.allclose(merge_segments(x, members, starts, 6, frames, positions, 0.6), whole, atol=1e-6)


# ---------------------------------------------------------------------------------------------- the whole video

# Two frames, 2×2 grid, C = 2. Position 3 is each frame's salient token (attention 1).
TOY_X = torch.tensor(
    [[[2.0, 0.2], [0.0, 1.0], [5.0, 5.0], [9.0, 9.0]], [[1.0, 0.0], [1.2, 0.0], [0.0, 3.0], [7.0, 7.0]]]
)
TOY_ATTENTION = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
TOY_GLOBAL = torch.tensor([[1.0, 0.0], [1.0, 0.1]])


def toy_config(**kw) -> FastVIDConfig:
    values = {"retain_ratio": 0.5, "fastvid_segments": 1, "fastvid_tau": -2.0, "fastvid_contextual": 0.5}
    return FastVIDConfig(**(values | kw))


def test_toy_video_by_hand():
    # R = ceil(4·.5) = 2: S = 1 salient (position 3) + Cn = 1 per frame; no cut → one segment of 2 frames,
    # one anchor (frame 1) with 2 centres among its open tokens a = [1, 0], b = [1.2, 0], c = [0, 3].
    # DPC (k = 4 → all 3, dist / √2): density a = exp(−(.02 + 5)/3) highest, delta = max dist 2.2847 → .4287;
    # b: delta .1414 → .0246; c: delta 2.2361 · exp(−3.4067) = .0741 → centres a (pos 0) and c (pos 2).
    # Members by cosine: [2, .2] → a; [0, 1] → c; [5, 5] → tie → a (lower position); a, b → a; c → c.
    # a: n = 4, mean [2.3, 1.3] → .6·[1, 0] + .4·[2.3, 1.3] = [1.52, .52]; c: n = 2 → .6·[0, 3] + .4·[0, 2].
    info = fastvid_compress_with_info(TOY_X, TOY_ATTENTION, TOY_GLOBAL, toy_config())
    assert info.segments == [(0, 1)] and info.anchors == [1]
    expected = torch.tensor([[9.0, 9.0], [1.52, 0.52], [0.0, 2.6], [7.0, 7.0]])
    assert torch.allclose(info.tokens, expected)
    assert info.frames.tolist() == [0, 1, 1, 1] and info.positions.tolist() == [3, 0, 2, 3]
    assert info.kinds.tolist() == [DOMINANT, CONTEXTUAL, CONTEXTUAL, DOMINANT]
    assert (info.num_salient, info.num_contextual, info.num_newlines) == (2, 2, 0)
    # grid layout: frame 0 row 1; frame 1 rows 0 and 1 — a newline after each
    nl = torch.tensor([-1.0, -1.0])
    grid = fastvid_compress_with_info(TOY_X, TOY_ATTENTION, TOY_GLOBAL, toy_config(), newline=nl)
    assert torch.allclose(grid.tokens, torch.stack([expected[0], nl, expected[1], nl, expected[2], expected[3], nl]))
    assert grid.kinds.tolist() == [DOMINANT, NEWLINE, CONTEXTUAL, NEWLINE, CONTEXTUAL, DOMINANT, NEWLINE]
    assert grid.positions.tolist() == [3, -1, 0, -1, 2, 3, -1] and grid.num_newlines == 3
    # two segments (a cut): each frame is its own anchor with Cn = 1 centre
    split = fastvid_compress_with_info(TOY_X, TOY_ATTENTION, TOY_GLOBAL, toy_config(fastvid_segments=2))
    assert split.segments == [(0, 0), (1, 1)] and split.anchors == [0, 1] and split.tokens.shape == (4, 2)


def test_anchor_stride_one_merges_over_the_whole_segment():
    """p = 1: both frames of the one segment are anchors with Cn = 1 centre each, and each centre absorbs
    the open tokens of BOTH frames (the paper's per-segment merge). The official OneVision code would merge
    each anchor only within its own frame here (methods.md, FastVID difference 14)."""
    # frame 0's open tokens a = [2, .2], b = [0, 1], c = [5, 5] (dist² / 2: ab 2.32, ac 16.02, bc 20.5):
    # density a = exp(−18.34/3) highest, score a = √20.5·e^−6.113 = .0100 > b .00076 > c .00002 → centre a;
    # frame 1's centre is [1, 0] (test_toy_video_by_hand). Members: all 6 open tokens, sum [9.2, 9.2].
    info = fastvid_compress_with_info(TOY_X, TOY_ATTENTION, TOY_GLOBAL, toy_config(fastvid_anchor_stride=1))
    assert info.segments == [(0, 1)] and info.anchors == [0, 1]
    assert list(zip(info.frames.tolist(), info.positions.tolist())) == [(0, 0), (0, 3), (1, 0), (1, 3)]
    mean = torch.tensor([9.2, 9.2]) / 6  # n = 6: w = max(1/7, .6) = .6
    ours = [0.6 * torch.tensor([2.0, 0.2]) + 0.4 * mean, 0.6 * torch.tensor([1.0, 0.0]) + 0.4 * mean]
    assert torch.allclose(info.tokens, torch.stack([ours[0], TOY_X[0, 3], ours[1], TOY_X[1, 3]]))
    # the official within-frame values would be .6·[2, .2] + .4·[7/3, 6.2/3] = [2.133, .947] and
    # .6·[1, 0] + .4·[2.2/3, 1] = [.893, .4]: not what this port gives
    assert not torch.allclose(info.tokens[0], torch.tensor([2.1333, 0.9467]), atol=1e-3)


def test_where_the_official_onevision_code_merges_within_a_frame():
    """The documented condition: a frame of a segment of L > 1 frames gets exactly Cn ≥ 1 (official
    floor(L·Cn/a), a = ceil(L/p)) only for p = 1, or p = 2 with Cn = 1 and L odd."""
    hits = {
        (length, cn, p)
        for length in range(2, 13)
        for cn in range(1, 7)
        for p in range(1, 7)
        if (length * cn) // -(-length // p) == cn
    }
    expected = {(length, cn, 1) for length in range(2, 13) for cn in range(1, 7)}
    expected |= {(length, 1, 2) for length in (3, 5, 7, 9, 11)}
    assert hits == expected
    # p = 1: ours gives every frame Cn too (the same kept positions, other merge members); p = 2, L = 5,
    # Cn = 1: ours spends all 5 over the 3 anchors, the official 1 each (difference 3, the lost remainder)
    assert anchor_budgets([4], 3, 10, 1).tolist() == [3, 3, 3, 3]
    assert anchor_budgets([5], 1, 10, 2).tolist() == [1, 0, 2, 0, 2]


def test_respacing_where_the_official_code_runs_and_loses_tokens():
    """N = 196, ρ = 0.628 floor: R = 123, Cn = 49, S = 74, 122 open tokens. One 5-frame segment, p = 4:
    officially a = 2 anchors of floor(245/2) = 122 centres each (614 tokens, no crash); here 2·122 < 245,
    so q = 2: anchors 0 / 2 / 4 share 245 as 81 / 82 / 82 and the video keeps exactly 5·123 = 615."""
    assert (frame_budget(196, 0.628, "floor"), *split_frame_budget(123, 0.4)) == (123, 74, 49)
    assert (5 * 49) // 2 == 122 and 2 * 122 < 5 * 49  # the official code runs; our anchors could not hold it
    assert anchor_budgets([5], 49, 122, 4).tolist() == [81, 0, 82, 0, 82]
    x, attention, glob = rand_video(5, 196, 4, seed=2)
    cfg = FastVIDConfig(retain_ratio=0.628, fastvid_rounding="floor", fastvid_segments=1, fastvid_tau=-2.0)
    info = fastvid_compress_with_info(x, attention, glob, cfg)
    assert info.segments == [(0, 4)] and info.anchors == [0, 2, 4] and info.num_tokens == 615
    # where floor(L·Cn/a) fits exactly nothing changes: L = 4 (a = 1) at 120 open tokens and Cn = 30
    assert anchor_budgets([4], 30, 120, 4).tolist() == [0, 0, 0, 120]


@pytest.mark.parametrize("contextual, retain", [(0.0, 0.5), (0.4, 0.5)])  # Cn = int(2·0) = int(2·.4) = 0
def test_no_contextual_tokens_keeps_the_salient_ones_only(contextual, retain):
    """Cn = 0 (officially an argmax over zero centres crashes): every frame keeps its R = 2 most attended
    tokens unchanged (attention ties → the lower position), no anchors, no merge."""
    cfg = toy_config(fastvid_contextual=contextual, retain_ratio=retain)
    info = fastvid_compress_with_info(TOY_X, TOY_ATTENTION, TOY_GLOBAL, cfg)
    assert info.anchors == [] and (info.num_salient, info.num_contextual) == (4, 0)
    assert torch.equal(info.tokens, TOY_X[:, [0, 3]].reshape(4, 2))


@pytest.mark.parametrize(
    "kw",
    [
        {"retain_ratio": 0.25},
        {"retain_ratio": 0.1, "fastvid_segments": 3, "fastvid_tau": 0.5},
        {"retain_ratio": 0.3, "fastvid_rounding": "floor", "fastvid_anchor_stride": 2, "fastvid_beta": 0.2},
        {"retain_ratio": 0.6, "fastvid_contextual": 0.7},  # anchor frames too small for p = 4: q shrinks
        {"retain_ratio": 0.2, "fastvid_contextual": 0.0},
        {"retain_ratio": 0.2, "fastvid_contextual": 1.0, "fastvid_segments": 1, "fastvid_tau": -2.0},
    ],
)
def test_whole_video_matches_the_loop_reference(kw, monkeypatch):
    x, attention, glob = rand_video(11, 25, 6, seed=7, global_drift=0.3)
    cfg = FastVIDConfig(**kw)
    keys, values = reference_fastvid(x, attention, glob, cfg)
    info = fastvid_compress_with_info(x, attention, glob, cfg)
    assert list(zip(info.frames.tolist(), info.positions.tolist())) == keys
    assert torch.allclose(info.tokens.double(), values, atol=1e-5)
    monkeypatch.setattr(fv, "_CPU_CHUNK_VALUES", 64)  # every chunked path, same tokens
    assert torch.allclose(fastvid_compress(x, attention, glob, cfg), info.tokens, atol=1e-6)


@pytest.mark.parametrize("rho, per_frame", [(0.25, 49), (0.20, 40), (0.15, 30), (0.10, 20)])
@pytest.mark.parametrize("drift", [0.01, 0.3, 5.0])  # long segments, a few, every frame alone
def test_exact_counts_one_token(rho, per_frame, drift):
    x, attention, glob = rand_video(16, 196, 8, seed=1, global_drift=drift)
    info = fastvid_compress_with_info(x, attention, glob, FastVIDConfig(retain_ratio=rho))
    assert info.num_tokens == 16 * per_frame == 16 * math.ceil(196 * rho)
    salient, contextual = split_frame_budget(per_frame, 0.4)
    assert info.num_salient == 16 * salient and info.num_contextual == 16 * contextual
    # in (frame, position) order; salient tokens are bit-exact copies
    key = info.frames * 196 + info.positions
    assert torch.all(key[1:] > key[:-1])
    dominant = info.kinds == DOMINANT
    assert torch.equal(info.tokens[dominant], x[info.frames[dominant], info.positions[dominant]])
    assert torch.bincount(info.frames, minlength=16).tolist() == [
        salient + int(b) for b in anchor_budgets([e - s + 1 for s, e in info.segments], contextual, 196 - salient, 4)
    ]


@pytest.mark.parametrize("rho, per_frame", [(0.25, 43), (0.20, 34), (0.15, 26), (0.10, 17)])
def test_exact_counts_grid(rho, per_frame):
    x, attention, glob = rand_video(12, 169, 8, seed=2, global_drift=0.3)
    nl = torch.full((8,), -3.0)
    info = fastvid_compress_with_info(x, attention, glob, FastVIDConfig(retain_ratio=rho), newline=nl)
    is_nl = info.kinds == NEWLINE
    assert int((~is_nl).sum()) == 12 * per_frame == 12 * math.ceil(169 * rho)
    rows = {(f, p // 13) for f, p in zip(info.frames[~is_nl].tolist(), info.positions[~is_nl].tolist())}
    assert info.num_newlines == int(is_nl.sum()) == len(rows)  # one newline per non-empty row
    assert torch.equal(info.tokens[is_nl], nl.expand(len(rows), 8))
    # a newline closes its row: a token before it, and the token after it (if any) in another row
    at = torch.nonzero(is_nl).squeeze(1)
    row = info.frames * 13 + info.positions // 13
    assert not is_nl[at - 1].any() and at[-1] == info.num_tokens - 1
    assert torch.all(row[at[:-1] + 1] != row[at[:-1] - 1])


@pytest.mark.parametrize("rho, per_frame", [(0.25, 49), (0.20, 39), (0.15, 29), (0.10, 19)])
def test_floor_option_counts(rho, per_frame):
    x, attention, glob = rand_video(16, 196, 8, seed=1, global_drift=0.3)
    cfg = FastVIDConfig(retain_ratio=rho, fastvid_rounding="floor")
    assert fastvid_compress(x, attention, glob, cfg).shape == (16 * per_frame, 8)
    assert METHOD.schedule(cfg, 32, 196, 28) == ((0, 32 * per_frame),)
    x, attention, glob = rand_video(8, 169, 8, seed=1)
    info = fastvid_compress_with_info(x, attention, glob, cfg, newline=torch.zeros(8))
    assert info.num_tokens - info.num_newlines == 8 * int(169 * rho)


def test_ratio_one_keeps_everything_in_order():
    x, attention, glob = rand_video(3, 9, 4)
    cfg = FastVIDConfig(retain_ratio=1.0)
    assert torch.equal(fastvid_compress(x, None, None, cfg), x.reshape(-1, 4))
    assert torch.equal(fastvid_compress(x, attention, glob, cfg), x.reshape(-1, 4))
    from llava.model.llava_arch import add_video_newlines

    nl = torch.randn(4)
    assert torch.equal(fastvid_compress(x, None, None, cfg, newline=nl), add_video_newlines(x, nl, "grid"))
    # 0.999 of 9 tokens rounds up to all 9 as well; floor keeps 8
    assert torch.equal(fastvid_compress(x, None, None, FastVIDConfig(retain_ratio=0.999)), x.reshape(-1, 4))


def test_deterministic_dtype_and_inputs_untouched():
    x, attention, glob = rand_video(10, 49, 8, seed=5, global_drift=0.2)
    copies = [t.clone() for t in (x, attention, glob)]
    cfg = FastVIDConfig(retain_ratio=0.2)
    first = fastvid_compress(x, attention, glob, cfg)
    assert torch.equal(fastvid_compress(x, attention, glob, cfg), first)
    assert all(torch.equal(a, b) for a, b in zip((x, attention, glob), copies))
    half = fastvid_compress(x.half(), attention, glob, cfg)
    assert half.dtype == torch.float16 and half.shape == first.shape
    # equal attention everywhere: the lowest positions are salient
    info = fastvid_compress_with_info(x, torch.ones(10, 49), glob, FastVIDConfig(retain_ratio=0.2, fastvid_contextual=0.0))
    assert info.positions.view(10, -1).tolist() == [list(range(10))] * 10


def test_any_config_with_the_fastvid_settings_gives_the_same_tokens():
    """The algorithm knows no config class: FastVIDConfig and a plain object with its values merge alike."""
    x, attention, glob = rand_video(8, 16, 4, seed=5)
    for cfg in (FastVIDConfig(retain_ratio=0.3, fastvid_segments=2), toy_config(fastvid_rounding="floor")):
        plain = types.SimpleNamespace(**dataclasses.asdict(cfg))
        ours, theirs = (fastvid_compress_with_info(x, attention, glob, c) for c in (cfg, plain))
        assert torch.equal(ours.tokens, theirs.tokens) and ours.segments == theirs.segments


def test_registry_and_algorithm_share_their_constants():
    from holitom import counts, shapes
    from holitom.methods import fastvid as registry

    assert registry.frame_budget is counts.frame_budget and registry.ROUNDINGS == counts.BUDGET_ROUNDINGS
    assert FastVIDConfig().fastvid_siglip == registry.FASTVID_SIGLIP == shapes.SIGLIP_SO400M


def test_bad_inputs():
    x, attention, glob = rand_video(4, 9, 4)
    cfg = FastVIDConfig(retain_ratio=0.5)
    cases = [
        ((x[0], attention, glob, cfg), "features must be a floating"),
        ((x.long(), attention, glob, cfg), "features must be a floating"),
        ((x[:, :0], attention[:, :0], glob, cfg), "F, N, C > 0"),
        ((x, attention[:, :5], glob, cfg), r"attention must have shape \(F, N\) = \(4, 9\)"),
        ((x, attention, glob[:3], cfg), "global_features must have shape"),
        ((x, None, glob, cfg), "attention and global_features .* are required"),
        ((x, attention, glob, {"retain_ratio": 0.5}), r"config must be a FastVIDConfig .*missing: retain_ratio, "),
        ((x, attention, glob, FastVIDConfig(retain_ratio=0.1, fastvid_rounding="floor")), r"int\(9·ρ\) = 0"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            fastvid_compress(*args)
    with pytest.raises(ValueError, match=r"newline must have shape \(C,\) = \(4,\)"):
        fastvid_compress(x, attention, glob, cfg, newline=torch.zeros(3))
    with pytest.raises(ValueError, match="needs N = side²"):
        fastvid_compress(x[:, :8], attention[:, :8], glob, cfg, newline=torch.zeros(4))
    with pytest.raises(ValueError, match="global_features must be a floating"):
        dynamic_segments(torch.ones(3, dtype=torch.long), 2, 0.9)
    with pytest.raises(ValueError, match="min_segments=0"):
        dynamic_segments(glob, 0, 0.9)
    with pytest.raises(ValueError, match="tau=nan"):
        dynamic_segments(glob, 2, float("nan"))


@pytest.mark.parametrize("grid", [False, True])
def test_host_syncs(grid):
    """Counted on CPU (the calls that make the host wait for a GPU): the similarities go to the host once
    (cpu + numpy), the plan comes back in one upload; the grid layout reads its newline count."""
    from holitom.tools.syncs import count_host_syncs

    x, attention, glob = rand_video(32, 169 if grid else 196, 16, seed=4, global_drift=0.3)
    newline = torch.zeros(16) if grid else None
    with count_host_syncs() as syncs:
        info = fastvid_compress_with_info(x, attention, glob, FastVIDConfig(retain_ratio=0.1), newline)
    lengths = {end - start + 1 for start, end in info.segments}
    assert len(lengths) > 2 and len(info.anchors) > len(info.segments)  # several groups, multi-anchor segments
    assert dict(syncs.by_call) == {"cpu": 1, "numpy": 1, "as_tensor": 1} | ({"nonzero": 1} if grid else {})
    with count_host_syncs() as syncs:
        fastvid_compress(x, None, None, FastVIDConfig(retain_ratio=1.0), newline)
    assert dict(syncs.by_call) == ({"nonzero": 1} if grid else {})


def test_long_video_memory_is_linear_in_frames(monkeypatch):
    """1024 static frames: 7 cuts (c = 8) leave one segment of 1017 frames with 255 anchors. The official
    code expands the segment's open tokens per anchor (255 × 1017·46 × C floats, 190 MB here) and its full
    similarity would be 1017·49 × 255·8 floats (406 MB); here every allocation stays within a chunk."""
    frames, n, c = 1024, 49, 4
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, n, c, generator=g) + 0.1 * torch.randn(frames, n, c, generator=g)
    attention = torch.rand(frames, n, generator=g)
    glob = torch.ones(frames, 8)  # identical frames: similarities all 1
    monkeypatch.setattr(fv, "_CPU_CHUNK_VALUES", 1 << 20)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        info = fastvid_compress_with_info(x, attention, glob, FastVIDConfig(retain_ratio=0.10))
    assert info.segments[:7] == [(t, t) for t in range(7)] and info.segments[7] == (7, 1023)
    assert len(info.anchors) == 7 + 255 and info.num_tokens == frames * 5  # R = ceil(4.9) = 5
    largest = max(event.cpu_memory_usage for event in prof.events())
    assert largest < 16 * 2**20, largest  # a chunk: 2^20 floats = 4 MB per similarity / one-hot block


# ---------------------------------------------------------------------------------------------- config + FLOPs


def test_config_defaults_and_validation():
    cfg = FastVIDConfig()
    assert (cfg.retain_ratio, cfg.fastvid_segments, cfg.fastvid_tau, cfg.fastvid_contextual) == (0.10, 8, 0.9, 0.4)
    assert (cfg.fastvid_anchor_stride, cfg.fastvid_beta, cfg.fastvid_rounding) == (4, 0.6, "ceil")
    assert cfg.fastvid_siglip == "google/siglip-so400m-patch14-384"
    bad = [
        ({"retain_ratio": 0.0}, r"FastVIDConfig.retain_ratio=0.0: must be in \(0, 1\]"),
        ({"retain_ratio": 1.5}, "retain_ratio=1.5"),
        ({"fastvid_segments": 0}, "fastvid_segments=0: must be an integer ≥ 1"),
        ({"fastvid_tau": float("inf")}, "fastvid_tau=inf: must be a finite number"),
        ({"fastvid_contextual": 1.2}, r"fastvid_contextual=1.2: must be in \[0, 1\]"),
        ({"fastvid_anchor_stride": 0}, "fastvid_anchor_stride=0"),
        ({"fastvid_beta": -0.1}, "fastvid_beta=-0.1"),
        ({"fastvid_rounding": "round"}, "fastvid_rounding='round'"),
        ({"fastvid_siglip": " "}, "fastvid_siglip=' ': must name a SigLIP checkpoint"),
    ]
    for kw, match in bad:
        with pytest.raises(ValueError, match=match):
            FastVIDConfig(**kw)
    # text values through the registry's parser (front ends)
    made = METHOD.make_config({"retain_ratio": "0.15", "fastvid_segments": "4", "fastvid_rounding": "floor"})
    assert (made.retain_ratio, made.fastvid_segments, made.fastvid_rounding) == (0.15, 4, "floor")
    with pytest.raises(ValueError, match="fastvid_rounding='half': valid values are ceil, floor"):
        METHOD.make_config({"fastvid_rounding": "half"})


def test_method_attributes():
    assert METHOD.name == "fastvid" and METHOD.layouts == ("one_token", "grid")
    assert METHOD.paper_labels == ("FastVID",) and METHOD.identity_settings == {"retain_ratio": 1.0}
    assert METHOD.paper_settings("FastVID", "ov-7b", 0.15) == {"retain_ratio": 0.15}
    assert METHOD.paper_settings("VisionZip", "ov-7b", 0.15) is None
    with pytest.raises(ValueError, match="fastvid supports the one_token / grid layout, not 'frame'"):
        METHOD.check_model(FastVIDConfig(), 28, "frame")


@pytest.mark.parametrize("rho, cell, visual", [(0.25, 8.7, 1568), (0.20, 7.0, 1280), (0.15, 5.2, 960), (0.10, 3.4, 640)])
def test_flops_cells_of_table_1(rho, cell, visual):
    schedule = METHOD.schedule(FastVIDConfig(retain_ratio=rho), 32, 196, 28)
    assert schedule == ((0, visual),)
    assert round(schedule_flops(SHAPES["ov-7b"], schedule) / 1e12, 1) == cell
    settings = METHOD.paper_settings("FastVID", "ov-7b", rho)
    assert METHOD.schedule(METHOD.make_config(settings), 32, 196, 28) == schedule


# ---------------------------------------------------------------------------------------------- the MAP head


@pytest.mark.parametrize("layout", ["siglip", "vision"])
def test_map_head_matches_transformers(layout, tmp_path):
    from transformers import SiglipVisionModel

    path = make_tiny_siglip(tmp_path / layout, layout=layout, seed=3)
    head = load_map_head(path)
    assert head.hidden_size == 32 and head.num_heads == 2 and head.eps == 1e-6
    model = SiglipVisionModel.from_pretrained(path).eval()  # the transformers path, as the official code loads it
    features = torch.randn(5, 729, 32, generator=torch.Generator().manual_seed(0)) * 2
    attention, pooled = map_head_outputs(features, head)
    with torch.no_grad():
        x = model.post_layernorm(features)
        probe = model.head.probe.repeat(5, 1, 1)
        _, weights = model.head.attention(probe, x, x)  # need_weights, averaged over heads
        expected_pooled = model.head(x)
    assert torch.allclose(attention, weights[:, 0], atol=1e-6, rtol=1e-4)
    assert torch.allclose(pooled, expected_pooled, atol=1e-5, rtol=1e-4)
    assert torch.allclose(attention.sum(-1), torch.ones(5)) and attention.std() > 1e-4  # a real distribution
    half = map_head_outputs(features.half(), head.to(dtype=torch.float16))
    assert half[0].dtype == torch.float32 and torch.allclose(half[0], attention, atol=1e-3)


def test_map_head_loading_errors(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=re.escape(f"fastvid_siglip={missing!r}: cannot load the SigLIP attention-pooling")) as error:
        load_map_head(missing)
    assert "Download google/siglip-so400m-patch14-384 once" in str(error.value) and "local directory" in str(error.value)
    with pytest.raises(ValueError, match="fastvid_siglip='nobody/no-such-siglip': cannot load .*hf download nobody/no-such"):
        load_map_head("nobody/no-such-siglip")  # the hub is offline in tests (conftest)
    headless = make_tiny_siglip(tmp_path / "headless", layout="vision", head=False)
    with pytest.raises(ValueError, match=r"has no attention-pooling \(MAP\) head \(missing head.attention"):
        load_map_head(headless)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"no \*.safetensors in"):
        load_map_head(str(empty))


# ---------------------------------------------------------------------------------------------- on the tiny models


def _logits(model, ids, frames):
    with torch.no_grad():
        return model(input_ids=ids, images=[frames], modalities=["video"]).logits


def _expected_tokens(model, frames, siglip: str, cfg: FastVIDConfig, layout: str) -> torch.Tensor:
    """The video's tokens computed by hand: tower → transformers' own post-layernorm + MAP head (loaded by
    transformers from the same checkpoint) → pooled attention; projector → pooling → fastvid."""
    from transformers import SiglipVisionModel

    siglip_model = SiglipVisionModel.from_pretrained(siglip).eval()
    with torch.no_grad():
        features = model.get_vision_tower()(frames)
        x = siglip_model.post_layernorm(features)
        probe = siglip_model.head.probe.repeat(len(frames), 1, 1)
        attention = siglip_model.head.attention(probe, x, x)[1][:, 0]
        glob = siglip_model.head(x)
        pooled = model.get_2dPool(model.encode_images(frames))
        pooled_attention = model.get_2dPool(attention[..., None]).squeeze(-1)
        newline = model.get_model().image_newline
        tokens = fastvid_compress(pooled, pooled_attention, glob, cfg, newline if layout == "grid" else None)
    return torch.cat([tokens, newline[None]]) if layout == "one_token" else tokens


@pytest.mark.parametrize("fixture", ["ov_model", "video_model"])
def test_install_end_to_end(fixture, request, siglip_dir):
    tokenizer, model, _, _ = request.getfixturevalue(fixture)
    layout = model.config.mm_newline_position
    per_frame_pooled = 196 if layout == "one_token" else 169
    ids, frames = video_prompt_ids(tokenizer), random_frames(10, seed=3)
    vanilla = _logits(model, ids, frames)
    layer = model.get_vision_tower().encoder_layers[-1]

    # identity: every token, vanilla logits; no head needed (an unreachable checkpoint is never read)
    methods.install(model, METHOD, FastVIDConfig(retain_ratio=1.0, fastvid_siglip="nobody/never-read"))
    assert torch.equal(_logits(model, ids, frames), vanilla)
    assert holitom.stats(model).visual_tokens == holitom.stats(model).pooled_tokens + (1 if layout == "one_token" else 10 * 13)

    cfg = FastVIDConfig(retain_ratio=0.15, fastvid_segments=3, fastvid_tau=0.0, fastvid_siglip=siglip_dir)
    expected = _expected_tokens(model, frames, siglip_dir, cfg, layout)
    methods.install(model, METHOD, cfg)
    assert len(layer._forward_hooks) == 1
    with torch.no_grad():
        model.encode_images(random_frames(2, seed=9))  # a tower run of something else first (e.g. an image)
        tokens = model.video_tokens(frames)
    assert torch.allclose(tokens, expected, atol=1e-5)
    model.vision_chunk_frames = 4  # the tower runs on frames 0-3, 4-7, 8-9: the head's outputs are joined
    with torch.no_grad():
        assert torch.allclose(model.video_tokens(frames), tokens, atol=1e-5)
    del model.vision_chunk_frames
    reduced = _logits(model, ids, frames)
    stats = holitom.stats(model)
    outer = stats.outer[-1]
    kept = 10 * math.ceil(per_frame_pooled * 0.15)
    assert stats.method == "fastvid" and stats.pooled_tokens == 10 * per_frame_pooled
    assert outer["frames"] == 10 and outer["salient"] + outer["contextual"] == kept and outer["segments"] >= 3
    if layout == "one_token":
        assert stats.visual_tokens == outer["tokens"] == kept + 1
    else:
        assert kept < stats.visual_tokens == outer["tokens"] <= kept + 10 * 13
    assert reduced.shape[1] == vanilla.shape[1] - (stats.pooled_tokens + (1 if layout == "one_token" else 130) - stats.visual_tokens)
    with torch.no_grad():  # generation runs on the shortened prompt, twice the same
        first = model.generate(ids, images=[frames], modalities=["video"], max_new_tokens=3, do_sample=False)
        again = model.generate(ids, images=[frames], modalities=["video"], max_new_tokens=3, do_sample=False)
    assert 1 <= first.shape[1] <= 3 and torch.equal(first, again)

    from holitom.tools.syncs import count_host_syncs

    with torch.no_grad(), count_host_syncs() as syncs:
        model(input_ids=ids, images=[frames], modalities=["video"])
    fastvid_syncs = syncs.total

    holitom.remove(model)
    assert methods.installed(model) is None and "video_token_compressor" not in model.__dict__
    assert not layer._forward_hooks and not layer._forward_pre_hooks
    assert torch.equal(_logits(model, ids, frames), vanilla)
    with torch.no_grad(), count_host_syncs() as syncs:
        model(input_ids=ids, images=[frames], modalities=["video"])
    assert fastvid_syncs - syncs.total == (3 if layout == "one_token" else 4)  # as HoliTom's outer stage


def test_install_errors(ov_model, tmp_path):
    _, model, _, _ = ov_model
    with pytest.raises(ValueError, match="fastvid_siglip='nobody/no-such-siglip': cannot load"):
        methods.install(model, METHOD, FastVIDConfig(fastvid_siglip="nobody/no-such-siglip"))
    assert methods.installed(model) is None
    wide = make_tiny_siglip(tmp_path / "wide", width=48)
    with pytest.raises(ValueError, match="the MAP head is 48 wide but the vision tower's features are 32 wide"):
        methods.install(model, METHOD, FastVIDConfig(fastvid_siglip=wide))
    assert not model.get_vision_tower().encoder_layers[-1]._forward_hooks
