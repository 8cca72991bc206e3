"""Baseline cores: VisionZip per-frame compression and FastV selection."""

from __future__ import annotations

import math

import pytest
import torch

from holitom import counts
from holitom.baselines import fastv_select, visionzip_budget, visionzip_compress
from holitom.counts import VISIONZIP_CONTEXTUAL_SHARE
from holitom.inner import select_kept
from holitom.methods.fastv import FastVConfig
from holitom.methods.visionzip import VisionZipConfig

# --------------------------------------------------------------------------------------- VisionZip budget


def test_default_share_reproduces_visionzip_splits():
    # VisionZip's own settings on 576 CLIP tokens: 64 = 54 + 10, 128 = 108 + 20, 192 = 162 + 30.
    assert VISIONZIP_CONTEXTUAL_SHARE == 10 / 64 == VisionZipConfig().contextual_share  # the registry's default
    assert visionzip_budget(576, 64 / 576) == (54, 10)
    assert visionzip_budget(576, 128 / 576) == (108, 20)
    assert visionzip_budget(576, 192 / 576) == (162, 30)


def test_budget_per_frame_counts():
    assert visionzip_budget(196, 0.15) == (25, 5)  # b = ceil(29.4) = 30; round(30·0.84375 = 25.3125) = 25
    assert visionzip_budget(196, 0.10) == (17, 3)  # b = 20; round(16.875) = 17
    assert visionzip_budget(169, 0.25) == (36, 7)  # b = ceil(42.25) = 43; round(36.28) = 36
    assert visionzip_budget(196, 0.15, contextual_share=0.0) == (30, 0)
    assert visionzip_budget(196, 0.15, contextual_share=1.0) == (0, 30)
    # 100·0.07 is 7.000000000000001 in binary: the reference's ceil gives b = 8 (the one rounding rule)
    assert visionzip_budget(100, 0.07) == (7, 1)


@pytest.mark.parametrize(
    "args, match",
    [
        ((0, 0.1), "n_tokens=0"),
        ((196, 0.0), r"retain_ratio=0.0: must be in \(0, 1\]"),
        ((196, 1.01), "retain_ratio=1.01"),
        ((196, 0.1, -0.1), r"contextual_share=-0.1: must be in \[0, 1\]"),
        ((196, 0.1, 1.5), "contextual_share=1.5"),
    ],
)
def test_budget_bad_args(args, match):
    with pytest.raises(ValueError, match=match):
        visionzip_budget(*args)


# --------------------------------------------------------------------------------------- VisionZip compress


def rand_video(f: int, n: int, c: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(f, n, c, generator=g).to(dtype), torch.rand(f, n, generator=g)


def test_ratio_one_returns_input_unchanged_in_order():
    x, a = rand_video(3, 196, 8)
    out = visionzip_compress(x, a, 1.0)
    assert torch.equal(out, x.reshape(-1, 8))


@pytest.mark.parametrize(
    "f, n, rho", [(4, 196, 0.15), (2, 169, 0.10), (3, 196, 0.25), (5, 49, 0.5), (1, 100, 0.07)]
)
def test_output_count_is_frames_times_ceil(f, n, rho):
    x, a = rand_video(f, n, 4)
    out = visionzip_compress(x, a, rho)
    assert out.shape == (f * math.ceil(n * rho), 4)


def test_hand_worked_frame():
    # N=6, ρ=4/6 → b=4; share 0.5 → 2 dominant + 2 contextual.
    x = torch.tensor(
        [[[9.0, 9.0], [1.0, 0.0], [8.0, 8.0], [2.0, 0.1], [0.0, 1.0], [0.1, 3.0]]]
    )  # positions 0..5
    a = torch.tensor([[0.9, 0.1, 0.8, 0.2, 0.3, 0.05]])
    out = visionzip_compress(x, a, 4 / 6, contextual_share=0.5)
    # Dominant: positions 0, 2. Remaining 1, 3, 4, 5: stride 4//2 = 2 → centres 1 and 4; 3 joins 1, 5 joins 4.
    # A contextual token is its centre plus the mean of its members: [1, 0] + [2, 0.1], [0, 1] + [0.1, 3].
    expected = torch.tensor([[9.0, 9.0], [8.0, 8.0], [3.0, 0.1], [0.1, 4.0]])
    assert torch.allclose(out, expected)


def test_centres_by_stride_and_empty_centre_unchanged():
    # N=9, share 1 → all contextual; ρ=3/9 → 3 centres among 9 remaining, stride 3 → positions 0, 3, 6.
    x = torch.zeros(1, 9, 2)
    x[0, :, 0] = 1.0  # everything points along +x ...
    x[0, 3] = torch.tensor([0.0, 5.0])  # ... except centre 3, which nobody resembles
    x[0, 6] = torch.tensor([-1.0, 0.0])  # and centre 6, pointing the other way
    x[0, 7] = torch.tensor([-3.0, 0.0])  # 7 joins 6
    a = torch.zeros(1, 9)
    out = visionzip_compress(x, a, 3 / 9, contextual_share=1.0)
    # Centre 0 takes 1, 2, 4, 5, 8 (all [1, 0]): [1, 0] + [1, 0]; centre 3 has no member and stays; centre 6
    # takes 7: [-1, 0] + [-3, 0].
    assert torch.allclose(out, torch.tensor([[2.0, 0.0], [0.0, 5.0], [-4.0, 0.0]]))


def test_stride_truncates_to_contextual_count():
    # R=7 remaining, 3 centres: stride 2 → arange(0, 7, 2) = 0, 2, 4, 6 truncated to 0, 2, 4.
    x = torch.eye(7).unsqueeze(0) * 10  # orthogonal tokens: each non-centre goes to the first centre (tie)
    out = visionzip_compress(x, torch.zeros(1, 7), 3 / 7, contextual_share=1.0)
    first = x[0, 0] + (x[0, 1] + x[0, 3] + x[0, 5] + x[0, 6]) / 4
    assert torch.allclose(out, torch.stack([first, x[0, 2], x[0, 4]]))


def test_no_contextual_share_is_top_attention_in_position_order():
    x, a = rand_video(2, 20, 3, seed=5)
    out = visionzip_compress(x, a, 0.25, contextual_share=0.0).view(2, 5, 3)
    for t in range(2):
        idx = sorted(torch.argsort(a[t], descending=True)[:5].tolist())
        assert torch.equal(out[t], x[t, idx])


def test_attention_ties_prefer_lower_positions():
    x, _ = rand_video(1, 10, 3, seed=2)
    out = visionzip_compress(x, torch.ones(1, 10), 0.3, contextual_share=0.0)
    assert torch.equal(out, x[0, :3])


def test_frames_are_independent_and_in_order():
    x, a = rand_video(5, 196, 6, seed=3)
    together = visionzip_compress(x, a, 0.15)
    one_by_one = torch.cat([visionzip_compress(x[t : t + 1], a[t : t + 1], 0.15) for t in range(5)])
    assert torch.equal(together, one_by_one)


def ref_visionzip_frame(x: torch.Tensor, a: torch.Tensor, n_dom: int, n_ctx: int) -> torch.Tensor:
    """One frame, the definition step by step with Python loops."""
    order = sorted(range(len(a)), key=lambda p: (-float(a[p]), p))
    dom = sorted(order[:n_dom])
    rem = [p for p in range(len(a)) if p not in dom]
    step = max(1, len(rem) // n_ctx)
    centres = [rem[i] for i in range(0, len(rem), step)][:n_ctx]
    unit = torch.nn.functional.normalize(x.float(), dim=-1)
    groups: dict[int, list[torch.Tensor]] = {c: [] for c in centres}
    for p in rem:
        if p in centres:
            continue
        sims = [float(unit[p] @ unit[c]) for c in centres]
        groups[centres[sims.index(max(sims))]].append(x[p].double())
    contextual = [x[c].double() + (torch.stack(groups[c]).mean(0) if groups[c] else 0.0) for c in centres]
    return torch.cat([x[dom].double(), torch.stack(contextual)])


@pytest.mark.parametrize("seed", range(5))
def test_matches_step_by_step_reference(seed):
    n = [196, 169, 49, 100, 36][seed]
    x, a = rand_video(3, n, 6, seed=seed)
    rho = [0.15, 0.1, 0.3, 0.07, 0.5][seed]
    n_dom, n_ctx = visionzip_budget(n, rho)
    assert n_ctx > 0
    out = visionzip_compress(x, a, rho).view(3, n_dom + n_ctx, 6)
    for t in range(3):
        assert torch.allclose(out[t].double(), ref_visionzip_frame(x[t], a[t], n_dom, n_ctx), atol=1e-6)


def test_grid_layout_places_tokens_by_position_with_row_newlines():
    from holitom.baselines.visionzip import visionzip_compress_grid, visionzip_frames
    from llava.model.llava_arch import add_video_newlines

    gen = torch.Generator().manual_seed(4)
    features, attention = torch.randn(3, 16, 5, generator=gen), torch.rand(3, 16, generator=gen)
    newline = torch.full((5,), 7.0)
    # ρ = 1: exactly the vanilla LLaVA-Video layout (every row of every frame, then a newline)
    full = visionzip_compress_grid(features, attention, 1.0, newline)
    assert torch.equal(full, add_video_newlines(features, newline, "grid"))
    # ρ = 0.25 on a 4×4 grid: 4 tokens per frame (3 dominant + 1 contextual), each at its grid position
    tokens, positions = visionzip_frames(features, attention, 0.25, 0.25)
    out = visionzip_compress_grid(features, attention, 0.25, newline, 0.25)
    expected = []
    for f in range(3):
        order = positions[f].argsort()
        rows = positions[f][order] // 4
        for i, j in enumerate(order.tolist()):
            expected.append(tokens[f, j])
            if i == 3 or rows[i + 1] != rows[i]:
                expected.append(newline)
    assert torch.equal(out, torch.stack(expected))
    with pytest.raises(ValueError, match="needs N = side², got N=15"):
        visionzip_compress_grid(torch.randn(2, 15, 5), torch.rand(2, 15), 0.5, newline)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dtype_preserved(dtype):
    x, a = rand_video(2, 49, 8, dtype=dtype)
    out = visionzip_compress(x, a, 0.3)
    assert out.dtype == dtype and out.shape == (2 * 15, 8)
    assert torch.equal(out, visionzip_compress(x.float(), a, 0.3).to(dtype))


def test_compress_bad_args():
    x, a = rand_video(2, 10, 4)
    with pytest.raises(ValueError, match=r"features: expected a 3-D tensor \(F, N, C\)"):
        visionzip_compress(x[0], a, 0.5)
    with pytest.raises(ValueError, match=r"attention: expected shape \(2, 10\)"):
        visionzip_compress(x, a[:, :5], 0.5)
    with pytest.raises(ValueError, match="retain_ratio=0"):
        visionzip_compress(x, a, 0)
    with pytest.raises(ValueError, match="contextual_share=2"):
        visionzip_compress(x, a, 0.5, contextual_share=2)


# --------------------------------------------------------------------------------------- FastV


def test_fastv_defaults():
    assert (FastVConfig().fastv_layer, FastVConfig().fastv_keep) == (2, 0.5)


def test_fastv_keep_count():
    assert counts.drop_keep_count(6272, 0.5) == 3136
    assert counts.drop_keep_count(5, 0.5) == 3  # drops round(2.5) = 2
    assert counts.drop_keep_count(10, 0.3) == 3  # drops round(7.0) = 7
    assert counts.drop_keep_count(196, 0.25) == 49
    assert counts.drop_keep_count(7, 1.0) == 7
    assert counts.drop_keep_count(0, 0.5) == 0


@pytest.mark.parametrize(
    "n, keep, match",
    [(-1, 0.5, "n=-1"), (4, 0.0, r"keep_ratio=0.0: must be in \(0, 1\]"), (4, 1.2, "keep_ratio=1.2")],
)
def test_fastv_keep_count_bad_args(n, keep, match):
    with pytest.raises(ValueError, match=match):
        counts.drop_keep_count(n, keep)


def test_fastv_select_by_hand():
    scores = torch.tensor([0.3, 0.1, 0.9, 0.2, 0.5, 0.4])
    assert fastv_select(scores, 0.5).tolist() == [2, 4, 5]  # keeps the 3 best of 6
    assert fastv_select(scores, 1.0).tolist() == list(range(6))
    assert fastv_select(torch.zeros(4), 0.5).tolist() == [0, 1]  # ties → lower positions


def test_fastv_select_agrees_with_select_kept():
    scores = torch.rand(101, generator=torch.Generator().manual_seed(9))
    assert torch.equal(fastv_select(scores, 0.3), select_kept(scores, counts.drop_keep_count(101, 0.3))[0])


def test_fastv_select_bad_args():
    with pytest.raises(ValueError, match=r"scores: expected a 1-D tensor"):
        fastv_select(torch.zeros(2, 3), 0.5)
    with pytest.raises(ValueError, match="keep_ratio=0"):
        fastv_select(torch.zeros(3), 0)
