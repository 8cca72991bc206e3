"""Temporal merging (spec §1): frame similarity and the window segmentation DP."""

from __future__ import annotations

import random

import pytest
import torch

import holitom.temporal as temporal
from holitom.temporal import frame_similarity, segment_frames, stable_run_lengths


def brute_force_segments(
    sim: list[list[float]], tau: float, window: int
) -> tuple[list[tuple[int, int]], int]:
    """The spec's DP written literally, with gain() counted position by position (O(F²·N))."""
    num_frames = len(sim) + 1
    num_positions = len(sim[0]) if sim else 0

    def gain(s: int, e: int) -> int:
        stable = sum(all(sim[t][p] > tau for t in range(s, e)) for p in range(num_positions))
        return (e - s) * stable

    dp = {-1: 0}
    choice = {}
    for i in range(num_frames):
        best, best_w = dp[i - 1], 1  # the single frame, kept unless a window is strictly better
        for w in range(2, min(i + 1, window) + 1):
            value = dp[i - w] + gain(i - w + 1, i)
            if value > best:  # a longer window replaces only when strictly better
                best, best_w = value, w
        dp[i], choice[i] = best, best_w
    segments, end = [], num_frames - 1
    while end >= 0:
        start = end - choice[end] + 1
        segments.append((start, end))
        end = start - 1
    return segments[::-1], dp[num_frames - 1]


def stable_pattern(rows: list[list[int]]) -> torch.Tensor:
    """Similarity with 0.9 where a step is stable (1) and 0.1 where not (0); use tau = 0.8."""
    return torch.tensor(rows, dtype=torch.float32) * 0.8 + 0.1


# ---------------------------------------------------------------- frame_similarity


def test_frame_similarity_matches_cosine():
    x = torch.randn(5, 7, 16, generator=torch.Generator().manual_seed(0))
    sim = frame_similarity(x)
    assert sim.shape == (4, 7) and sim.dtype == torch.float32
    expected = torch.nn.functional.cosine_similarity(x[:-1], x[1:], dim=-1)
    torch.testing.assert_close(sim, expected, atol=1e-6, rtol=0)


def test_frame_similarity_hand_values_and_zero_vector():
    # position 0: same direction (cos 1), position 1: orthogonal (0), position 2: opposite (-1),
    # position 3: a zero vector normalises to zero (0).
    x = torch.tensor(
        [
            [[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]],
            [[5.0, 0.0], [0.0, 2.0], [-2.0, -2.0], [3.0, 4.0]],
        ]
    )
    torch.testing.assert_close(frame_similarity(x), torch.tensor([[1.0, 0.0, -1.0, 0.0]]), atol=1e-6, rtol=0)


def test_frame_similarity_chunking_half_and_one_frame(monkeypatch):
    x = torch.randn(9, 5, 8, generator=torch.Generator().manual_seed(1))
    whole = frame_similarity(x)
    monkeypatch.setattr(temporal, "_CHUNK_VALUES", 1)  # one similarity per chunk
    assert torch.equal(frame_similarity(x), whole)
    monkeypatch.setattr(temporal, "_CHUNK_VALUES", 3 * 5 * 8)  # uneven chunks of 3
    assert torch.equal(frame_similarity(x), whole)
    half = frame_similarity(x.half())
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, whole, atol=2e-3, rtol=0)
    assert frame_similarity(x[:1]).shape == (0, 5)


def test_frame_similarity_rejects_bad_input():
    with pytest.raises(ValueError, match="features"):
        frame_similarity(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="features"):
        frame_similarity(torch.zeros(3, 4, 2, dtype=torch.long))


def test_stable_run_lengths_hand_example():
    stable = torch.tensor([[1, 0], [1, 1], [0, 1], [1, 1], [1, 1]], dtype=torch.bool)
    assert stable_run_lengths(stable).tolist() == [[1, 0], [2, 1], [0, 2], [1, 3], [2, 4]]


# ---------------------------------------------------------------- segment_frames


def test_four_frame_toy_by_hand():
    # stable steps (rows: steps 0→1, 1→2, 2→3; columns: 4 positions)
    sim = stable_pattern([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]])
    # gain(0,1)=1·2=2  gain(1,2)=1·1=1  gain(2,3)=1·3=3  gain(0,2)=2·1=2  gain(1,3)=2·1=2  gain(0,3)=3·1=3
    # dp[0]=0; dp[1]=max(0, 0+2)=2 (window 0..1)
    # dp[2]=max(dp[1]=2, dp[0]+gain(1,2)=1, dp[-1]+gain(0,2)=2) = 2: tie → single frame 2
    # dp[3]=max(dp[2]=2, dp[1]+gain(2,3)=5, dp[0]+gain(1,3)=2, dp[-1]+gain(0,3)=3) = 5: window 2..3
    assert segment_frames(sim, 0.8, 1024) == ([(0, 1), (2, 3)], 5)
    # W=3 forbids nothing here; W=1 forbids every window
    assert segment_frames(sim, 0.8, 3) == ([(0, 1), (2, 3)], 5)
    assert segment_frames(sim, 0.8, 1) == ([(0, 0), (1, 1), (2, 2), (3, 3)], 0)
    # tau above every similarity: nothing is stable
    assert segment_frames(sim, 0.95, 1024) == ([(0, 0), (1, 1), (2, 2), (3, 3)], 0)


def test_tie_single_frame_preferred_over_equal_window():
    # dp[1] = gain(0,1) = 2. dp[2]: single 2, window 1..2 = 0 + 2 = 2, window 0..2 = 2·1 = 2 → single.
    sim = stable_pattern([[1, 1, 0], [1, 0, 1]])
    assert segment_frames(sim, 0.8, 1024) == ([(0, 1), (2, 2)], 2)


def test_tie_between_windows_keeps_the_shortest():
    # dp[1] = gain(0,1) = 2; dp[2]: single 2, window 1..2 = dp[0] + 4 = 4, window 0..2 = 2·2 = 4.
    # Both windows reach 4 > 2: the shorter (w=2, found first) wins → frame 0 alone, then 1..2.
    sim = stable_pattern([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert segment_frames(sim, 0.8, 1024) == ([(0, 0), (1, 2)], 4)


def test_longer_window_replaces_only_when_strictly_better():
    # dp[1] = 3; dp[2]: single 3, window 1..2 = 0 + 3, window 0..2 = 2·3 = 6 → the long window.
    sim = stable_pattern([[1, 1, 1, 0], [1, 1, 1, 0]])
    assert segment_frames(sim, 0.8, 1024) == ([(0, 2)], 6)
    # with W=2 the long window is not allowed: single 3 vs window 1..2 = 3 → tie → single frame 2
    assert segment_frames(sim, 0.8, 2) == ([(0, 1), (2, 2)], 3)


def test_threshold_is_strict():
    sim = torch.full((3, 2), 0.8)
    assert segment_frames(sim, 0.8, 1024) == ([(0, 0), (1, 1), (2, 2), (3, 3)], 0)
    assert segment_frames(sim, 0.79, 1024) == ([(0, 3)], 3 * 2)


def test_one_frame_and_empty_positions():
    assert segment_frames(torch.zeros(0, 5), 0.8, 1024) == ([(0, 0)], 0)
    assert segment_frames(torch.zeros(3, 0), 0.8, 1024) == ([(0, 0), (1, 1), (2, 2), (3, 3)], 0)


@pytest.mark.parametrize("seed", range(400))
def test_matches_brute_force_reference(seed: int):
    rng = random.Random(seed)
    num_frames = rng.randint(1, 13)
    num_positions = rng.randint(1, 5)
    window = rng.choice([1, 2, 3, 4, 6, 1024])
    stable_share = rng.choice([0.3, 0.6, 0.85])
    # two values only, so many gains tie and the tie rules are exercised
    sim = [
        [0.9 if rng.random() < stable_share else 0.5 for _ in range(num_positions)]
        for _ in range(num_frames - 1)
    ]
    tensor = torch.tensor(sim, dtype=torch.float32).reshape(num_frames - 1, num_positions)
    assert segment_frames(tensor, 0.8, window) == brute_force_segments(sim, 0.8, window)


def test_segments_cover_frames_and_respect_window_on_long_video():
    gen = torch.Generator().manual_seed(3)
    sim = torch.rand(599, 6, generator=gen) * 0.3 + 0.7  # about two thirds of steps stable at 0.8
    for window in (2, 5, 1024):
        segments, reduced = segment_frames(sim, 0.8, window)
        assert segments[0][0] == 0 and segments[-1][1] == 599
        assert all(b[0] == a[1] + 1 for a, b in zip(segments, segments[1:]))
        assert all(1 <= e - s + 1 <= window for s, e in segments)
        # reduced is the total gain of the chosen windows
        stable = sim > 0.8
        gains = sum((e - s) * int(stable[s:e].all(0).sum()) for s, e in segments if e > s)
        assert reduced == gains


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="similarity"):
        segment_frames(torch.zeros(3, 4, 1), 0.8, 4)
    with pytest.raises(ValueError, match="max_window_size"):
        segment_frames(torch.zeros(3, 4), 0.8, 0)
    with pytest.raises(ValueError, match="max_window_size"):
        segment_frames(torch.zeros(3, 4), 0.8, 2.0)
