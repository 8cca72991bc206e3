"""Outer-LLM merging (spec §1–2): the full token sequence, its counts, order and layouts."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from holitom.config import HoliTomConfig
from holitom.outer import (
    CONTEXTUAL,
    DOMINANT,
    NEWLINE,
    STATIC,
    compress_video,
    compress_video_with_info,
)
from holitom.temporal import frame_similarity


def e(i: int, scale: float = 1.0) -> list[float]:
    v = [0.0] * 4
    v[i] = scale
    return v


# 4 frames × 4 positions (a 2×2 grid) × 4 channels. Same direction = cosine 1 (stable), orthogonal = 0.
#   position 0: stable on every step            t0 e0   t1 3e0   t2 e0    t3 3e0
#   position 1: stable on steps 0→1 and 2→3     t0 2e1  t1 4e1   t2 3e0   t3 5e0
#   position 2: stable on step 2→3 only         t0 e2   t1 e3    t2 5e2   t3 7e2
#   position 3: never stable                    t0 e3   t1 e2    t2 e3    t3 e1
# Stable pattern per step: [1,1,0,0], [1,0,0,0], [1,1,1,0] → segments [(0,1), (2,3)], reduced 5
# (worked out in tests/test_temporal.py::test_four_frame_toy_by_hand).
TOY = torch.tensor(
    [
        [e(0), e(1, 2), e(2), e(3)],
        [e(0, 3), e(1, 4), e(3), e(2)],
        [e(0), e(0, 3), e(2, 5), e(3)],
        [e(0, 3), e(0, 5), e(2, 7), e(1)],
    ]
)
# attention: frame 0 prefers position 3, frame 1 position 2 (only the dynamic positions matter there)
TOY_ATTENTION = torch.tensor(
    [[0.0, 0.0, 0.1, 0.9], [0.0, 0.0, 0.8, 0.2], [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]]
)
NL = torch.tensor([-1.0, -1.0, -1.0, -1.0])


def toy_config(**kw) -> HoliTomConfig:
    return HoliTomConfig(tau=0.8, beta=0.6, knn=7, **kw)


def test_toy_retain_half_one_token():
    info = compress_video_with_info(TOY, TOY_ATTENTION, toy_config(retain_ratio=0.5))
    assert info.segments == [(0, 1), (2, 3)] and info.reduced == 5
    # ρ' = 0.5 / ((16 - 5) / 16) = 8/11 ≈ 0.727
    assert info.adjusted_ratio == pytest.approx(8 / 11)
    # Segment (0,1): static positions {0,1}, means 2e0 and 3e1; round(2·8/11 = 1.45) = 1 centre, k = 1:
    #   every density is 1, token 0 is "higher" (lower position), both deltas = d(0,1) → tie → position 0;
    #   merged = 0.6·2e0 + 0.4·3e1 = (1.2, 1.2, 0, 0).
    #   dynamic positions {2,3}: n = 2, b = ceil(1.45) = 2 → both tokens of each frame.
    # Segment (2,3): static positions {0,1,2}, means s0 = 2e0, s1 = 4e0, s2 = 6e2;
    #   round(3·8/11 = 2.18) = 2 centres, k = 2. dist: d01 = 2/2 = 1, d02 = √40/2 ≈ 3.16, d12 = √52/2 ≈ 3.61.
    #   density: s0, s1 = e^-0.5 (tie → s0 higher), s2 = e^-5. delta: s0 = max 3.61, s1 = 1, s2 = 3.16.
    #   scores: 2.19, 0.61, 0.02 → centres {0, 1}; s2 joins s0 (3.16 < 3.61):
    #   0.6·2e0 + 0.4·6e2 = (1.2, 0, 2.4, 0); s1 has no member and stays 4e0.
    #   dynamic position {3}: n = 1, b = ceil(0.727) = 1 per frame.
    expected = torch.tensor(
        [
            [1.2, 1.2, 0.0, 0.0],  # static (0,1)
            e(2), e(3),  # frame 0: positions 2, 3
            e(3), e(2),  # frame 1: positions 2, 3
            [1.2, 0.0, 2.4, 0.0], e(0, 4),  # static (2,3), positions 0, 1
            e(3),  # frame 2: position 3
            e(1),  # frame 3: position 3
        ]
    )  # fmt: skip
    torch.testing.assert_close(info.tokens, expected)
    assert info.positions.tolist() == [0, 2, 3, 2, 3, 0, 1, 3, 3]
    assert info.frames.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3]
    assert info.kinds.tolist() == [STATIC] + [DOMINANT] * 4 + [STATIC] * 2 + [DOMINANT] * 2
    assert (info.num_static, info.num_dominant, info.num_contextual, info.num_newlines) == (3, 6, 0, 0)
    assert info.num_dynamic_kept == 6 and info.num_tokens == 9 and info.num_input == 16
    assert torch.equal(compress_video(TOY, TOY_ATTENTION, toy_config(retain_ratio=0.5)), info.tokens)


def test_toy_retain_half_grid_layout():
    info = compress_video_with_info(TOY, TOY_ATTENTION, toy_config(retain_ratio=0.5), newline=NL)
    # rows of the 2×2 grid: {0, 1} and {2, 3}; static tokens join their segment's first frame.
    expected = torch.tensor(
        [
            [1.2, 1.2, 0.0, 0.0], NL.tolist(), e(2), e(3), NL.tolist(),  # frame 0: rows 0 and 1
            e(3), e(2), NL.tolist(),  # frame 1: row 1 only
            [1.2, 0.0, 2.4, 0.0], e(0, 4), NL.tolist(), e(3), NL.tolist(),  # frame 2
            e(1), NL.tolist(),  # frame 3
        ]
    )  # fmt: skip
    torch.testing.assert_close(info.tokens, expected)
    assert info.positions.tolist() == [0, -1, 2, 3, -1, 2, 3, -1, 0, 1, -1, 3, -1, 3, -1]
    assert info.frames.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3]
    assert info.num_newlines == 6 and info.num_tokens == 15


def test_toy_retain_quarter_picks_by_attention():
    info = compress_video_with_info(TOY, TOY_ATTENTION, toy_config(retain_ratio=0.25))
    # ρ' = 0.25·16/11 = 4/11 ≈ 0.364.
    # Segment (0,1): static round(0.73) = 1 → (1.2, 1.2, 0, 0); n = 2, b = ceil(0.73) = 1 → the top score:
    #   frame 0 → position 3 (0.9, value e3), frame 1 → position 2 (0.8, value e3).
    # Segment (2,3): static round(1.09) = 1 centre, k = 1: all densities 1, s0 highest with delta = max
    #   distance → centre s0; s1 and s2 both join: 0.6·2e0 + 0.4·mean(4e0, 6e2) = (2.0, 0, 1.2, 0).
    #   n = 1, b = 1 → position 3 of frames 2 and 3.
    expected = torch.tensor([[1.2, 1.2, 0.0, 0.0], e(3), e(3), [2.0, 0.0, 1.2, 0.0], e(3), e(1)])
    torch.testing.assert_close(info.tokens, expected)
    assert info.positions.tolist() == [0, 3, 2, 0, 3, 3]


def test_toy_contextual_share_and_bankers_rounding():
    info = compress_video_with_info(TOY, TOY_ATTENTION, toy_config(retain_ratio=0.5, contextual_share=0.5))
    # Segment (0,1): b = 2, dominant = round(2·0.5) = 1, contextual = 1 (DPC over the 1 remaining token:
    #   it is its own centre, unchanged). Per frame: [dominant, contextual], NOT merged position order:
    #   frame 0: dominant position 3 (e3), contextual 2 (e2); frame 1: dominant 2 (e3), contextual 3 (e2).
    # Segment (2,3): b = 1, dominant = round(0.5) = 0 (Python rounds half to even), contextual = 1.
    expected = torch.tensor(
        [[1.2, 1.2, 0.0, 0.0], e(3), e(2), e(3), e(2), [1.2, 0.0, 2.4, 0.0], e(0, 4), e(3), e(1)]
    )
    torch.testing.assert_close(info.tokens, expected)
    assert info.positions.tolist() == [0, 3, 2, 2, 3, 0, 1, 3, 3]
    assert (
        info.kinds.tolist()
        == [STATIC, DOMINANT, CONTEXTUAL, DOMINANT, CONTEXTUAL, STATIC, STATIC] + [CONTEXTUAL] * 2
    )
    assert (info.num_dominant, info.num_contextual) == (2, 4)


def test_toy_half_precision():
    info = compress_video_with_info(TOY.half(), TOY_ATTENTION.half(), toy_config(retain_ratio=0.5), NL.half())
    reference = compress_video_with_info(TOY, TOY_ATTENTION, toy_config(retain_ratio=0.5), NL)
    assert info.tokens.dtype == torch.float16
    assert info.segments == reference.segments
    assert torch.equal(info.positions, reference.positions)
    torch.testing.assert_close(info.tokens.float(), reference.tokens, atol=2e-3, rtol=0)


# ---------------------------------------------------------------- random videos


def video(num_frames: int, num_tokens: int, channels: int, seed: int, cut: int = 5) -> torch.Tensor:
    """Correlated frames (x[t+1] = x[t] + noise, per-position noise scale) with a scene cut every `cut`."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.empty(num_tokens, 1).uniform_(0.1, 1.5, generator=gen)
    frames = []
    for t in range(num_frames):
        if t % cut == 0:
            current = torch.randn(num_tokens, channels, generator=gen)
        else:
            current = current + scale * torch.randn(num_tokens, channels, generator=gen)
        frames.append(current)
    return torch.stack(frames)


def attention_for(x: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.rand(x.shape[:2], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("tau", [1.5, 0.8])
def test_ratio_one_keeps_every_token_bit_exact(tau: float):
    x = video(6, 9, 8, seed=0)
    a = attention_for(x, 0)
    config = HoliTomConfig(retain_ratio=1.0, tau=tau)
    info = compress_video_with_info(x, a, config)
    if tau > 1:
        assert torch.equal(info.tokens, x.reshape(-1, 8))
        assert len(info.segments) == 6 and info.reduced == 0
        grid = compress_video(x, a, config, newline=NL.repeat(2))
        vanilla = torch.cat([x.reshape(6, 3, 3, 8), NL.repeat(2).expand(6, 3, 1, 8)], 2).reshape(-1, 8)
        assert torch.equal(grid, vanilla)
    else:
        # temporal merging still happens, but at ρ' = 1 nothing is merged spatially:
        # exactly one token per static position of each window plus every dynamic token.
        assert info.reduced > 0 and info.adjusted_ratio == 1.0
        assert info.num_tokens == 6 * 9 - info.reduced
    # same with temporal merging disabled by the window size
    flat = compress_video(x, a, HoliTomConfig(retain_ratio=1.0, tau=tau, max_window_size=1))
    assert torch.equal(flat, x.reshape(-1, 8))


@pytest.mark.parametrize("seed", range(12))
def test_counts_and_order_follow_the_formulas(seed: int):
    gen = torch.Generator().manual_seed(100 + seed)
    num_frames = int(torch.randint(1, 14, (1,), generator=gen))
    ratio = [0.1, 0.15, 0.25, 0.5, 0.9][seed % 5]
    share = [0.0, 0.0, 0.3, 0.5][seed % 4]
    config = HoliTomConfig(
        retain_ratio=ratio, tau=0.75, contextual_share=share, knn=3, max_window_size=[1024, 3][seed % 2]
    )
    x = video(num_frames, 16, 12, seed=seed, cut=4 + seed % 3)
    info = compress_video_with_info(x, attention_for(x, seed), config)

    total = num_frames * 16
    assert info.adjusted_ratio == min(ratio / ((total - info.reduced) / total), 1.0)
    rho = info.adjusted_ratio
    stable = frame_similarity(x) > 0.75
    expected_total = 0
    expected_kinds = []
    frames_out = info.frames.tolist()
    for s, e_ in info.segments:
        n_static = int(stable[s:e_].all(0).sum()) if e_ > s else 0
        budget = math.ceil((16 - n_static) * rho)
        dominant = round(budget * (1 - share))
        expected_kinds += [STATIC] * round(n_static * rho)
        expected_kinds += ([DOMINANT] * dominant + [CONTEXTUAL] * (budget - dominant)) * (e_ - s + 1)
        expected_total += round(n_static * rho) + (e_ - s + 1) * budget
    assert info.num_tokens == expected_total
    assert info.kinds.tolist() == expected_kinds
    assert info.reduced == sum((e_ - s) * int(stable[s:e_].all(0).sum()) for s, e_ in info.segments if e_ > s)

    # order: frames non-decreasing; within each (frame, kind) run, positions strictly ascending;
    # static tokens never share a position with the dynamic ones of their segment's frames.
    assert frames_out == sorted(frames_out)
    key = list(zip(frames_out, info.kinds.tolist()))
    pos = info.positions.tolist()
    for i in range(1, len(pos)):
        if key[i] == key[i - 1]:
            assert pos[i] > pos[i - 1]

    # the grid layout holds the same tokens, regrouped by frame and position, with row newlines
    grid = compress_video_with_info(x, attention_for(x, seed), config, newline=torch.full((12,), 7.0))
    body = grid.kinds != NEWLINE
    order = (info.frames * 16 + info.positions).argsort()
    assert torch.equal(grid.tokens[body], info.tokens[order])
    rows = set(zip(info.frames.tolist(), (info.positions // 4).tolist()))
    assert grid.num_newlines == len(rows)
    assert bool((grid.tokens[~body] == 7.0).all())
    # (frame, position) sequence: sorted tokens, a newline (-1) after the last token of each non-empty row
    items = sorted(zip(info.frames.tolist(), info.positions.tolist()))
    expected_layout = []
    for i, (frame, p) in enumerate(items):
        expected_layout.append((frame, p))
        if i + 1 == len(items) or (items[i + 1][0], items[i + 1][1] // 4) != (frame, p // 4):
            expected_layout.append((frame, -1))
    assert list(zip(grid.frames.tolist(), grid.positions.tolist())) == expected_layout


def test_window_size_one_has_no_static_tokens():
    x = video(8, 16, 12, seed=5)
    info = compress_video_with_info(
        x, attention_for(x, 5), HoliTomConfig(retain_ratio=0.25, max_window_size=1)
    )
    assert info.reduced == 0 and info.num_static == 0
    assert info.num_tokens == 8 * math.ceil(16 * 0.25)


def test_one_frame_keeps_top_attention():
    x = torch.randn(1, 9, 4, generator=torch.Generator().manual_seed(0))
    a = torch.tensor([[0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6, 0.5]])
    info = compress_video_with_info(x, a, HoliTomConfig(retain_ratio=0.3))
    # b = ceil(9·0.3) = 3 → scores 0.9, 0.8, 0.7 at positions 1, 3, 5
    assert info.segments == [(0, 0)] and info.reduced == 0
    assert info.positions.tolist() == [1, 3, 5]
    assert torch.equal(info.tokens, x[0, [1, 3, 5]])


def test_deterministic_and_does_not_modify_inputs():
    x = video(10, 16, 12, seed=7)
    a = attention_for(x, 7)
    x_copy, a_copy = x.clone(), a.clone()
    config = HoliTomConfig(retain_ratio=0.2, tau=0.7, contextual_share=0.4)
    first = compress_video(x, a, config, newline=torch.zeros(12))
    second = compress_video(x, a, config, newline=torch.zeros(12))
    assert torch.equal(first, second)
    assert torch.equal(x, x_copy) and torch.equal(a, a_copy)


def test_half_precision_random_video():
    x = video(8, 16, 12, seed=9).half()
    out = compress_video(x, attention_for(x, 9).half(), HoliTomConfig(retain_ratio=0.25, tau=0.7))
    assert out.dtype == torch.float16 and out.shape[1] == 12 and bool(torch.isfinite(out).all())


def test_rejects_bad_input():
    x = torch.zeros(2, 4, 3)
    a = torch.zeros(2, 4)
    config = HoliTomConfig()
    with pytest.raises(ValueError, match="features"):
        compress_video(torch.zeros(2, 4), a, config)
    with pytest.raises(ValueError, match="features"):
        compress_video(x.long(), a, config)
    with pytest.raises(ValueError, match="features"):
        compress_video(torch.zeros(0, 4, 3), torch.zeros(0, 4), config)
    with pytest.raises(ValueError, match="features"):
        compress_video(torch.zeros(2, 0, 3), torch.zeros(2, 0), config)
    with pytest.raises(ValueError, match="attention"):
        compress_video(x, torch.zeros(2, 5), config)
    with pytest.raises(ValueError, match="attention"):
        compress_video(x, torch.zeros(2, 4, 1), config)
    with pytest.raises(ValueError, match="newline"):
        compress_video(x, a, config, newline=torch.zeros(4))
    with pytest.raises(ValueError, match="features"):
        compress_video(torch.zeros(2, 5, 3), torch.zeros(2, 5), config, newline=torch.zeros(3))
    with pytest.raises(ValueError, match=r"config must be a HoliTomConfig .*missing: retain_ratio, tau, .*got dict"):
        compress_video(x, a, {"retain_ratio": 0.1})


@dataclasses.dataclass(frozen=True)
class PlainSettings:
    """The outer settings alone, no registry class: what `compress_video` reads."""

    retain_ratio: float
    tau: float
    beta: float
    contextual_share: float
    knn: int
    max_window_size: int
    reference_compat: bool


def test_any_config_with_the_outer_settings_gives_the_same_tokens():
    """outer knows no config class: HoliTomConfig and a plain object with the same values merge alike."""
    x = torch.randn(6, 16, 8, generator=torch.Generator().manual_seed(3))
    a = torch.rand(6, 16, generator=torch.Generator().manual_seed(4))
    for config in (HoliTomConfig(retain_ratio=0.3, contextual_share=0.4, knn=3), HoliTomConfig(reference_compat=True)):
        plain = PlainSettings(**{f.name: getattr(config, f.name) for f in dataclasses.fields(PlainSettings)})
        for newline in (None, torch.full((8,), -1.0)):
            ours, theirs = compress_video_with_info(x, a, config, newline), compress_video_with_info(x, a, plain, newline)
            assert torch.equal(ours.tokens, theirs.tokens) and torch.equal(ours.kinds, theirs.kinds)
            assert ours.segments == theirs.segments
