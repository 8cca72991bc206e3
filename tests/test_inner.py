"""Inner-LLM merging cores: keep count, top-score selection, and the sequential / mean merges."""

from __future__ import annotations

import pytest
import torch

from holitom.counts import merge_keep_count
from holitom.inner import merge_dropped, select_kept
from holitom.spatial import select_top_scores

# --------------------------------------------------------------------------------------- slow references


def ref_assign(hidden: torch.Tensor, kept: list[int], dropped: list[int]) -> dict[int, int]:
    """Dropped position → kept position of highest cosine similarity (float32, first maximum wins)."""
    h = torch.nn.functional.normalize(hidden.float(), dim=-1)
    out = {}
    for p in dropped:
        best, best_sim = None, None
        for k in kept:
            s = float(h[p] @ h[k])
            if best_sim is None or s > best_sim:
                best, best_sim = k, s
        out[p] = best
    return out


def ref_merge(hidden: torch.Tensor, kept: list[int], dropped: list[int], update: str) -> torch.Tensor:
    """The rule as stated: visit dropped tokens in ascending position, one at a time (float64)."""
    assign = ref_assign(hidden, kept, dropped)
    acc = {k: hidden[k].double().clone() for k in kept}
    members = {k: [] for k in kept}
    for p in sorted(dropped):
        k = assign[p]
        members[k].append(hidden[p].double())
        if update == "sequential":
            acc[k] = (acc[k] + hidden[p].double()) / 2
    if update == "mean":
        for k in kept:
            acc[k] = torch.stack([hidden[k].double(), *members[k]]).mean(0)
    return torch.stack([acc[k] for k in kept])


def clustered_hidden(seed: int, n_keep: int, sizes: list[int], d: int = 16) -> tuple[torch.Tensor, list[int]]:
    """Hidden states where dropped tokens are noisy copies of chosen kept tokens (cluster sizes `sizes`),
    shuffled over positions. Returns (hidden, kept positions)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_keep, d, generator=g) * 3
    rows, is_kept = [], []
    for j in range(n_keep):
        rows.append(centres[j])
        is_kept.append(True)
        for _ in range(sizes[j]):
            rows.append(centres[j] + 0.05 * torch.randn(d, generator=g))
            is_kept.append(False)
    perm = torch.randperm(len(rows), generator=g)
    hidden = torch.stack(rows)[perm]
    kept = [i for i, p in enumerate(perm.tolist()) if is_kept[p]]
    return hidden, kept


# --------------------------------------------------------------------------------------- selection


def test_select_kept_by_hand():
    kept, dropped = select_kept(torch.tensor([0.1, 0.5, 0.5, 0.2, 0.9]), 3)
    assert kept.tolist() == [1, 2, 4] and dropped.tolist() == [0, 3]
    assert kept.dtype == dropped.dtype == torch.long


def test_select_kept_ties_go_to_lower_position():
    kept, dropped = select_kept(torch.tensor([1.0, 2.0, 1.0, 1.0, 1.0]), 3)
    assert kept.tolist() == [0, 1, 2] and dropped.tolist() == [3, 4]
    kept, _ = select_kept(torch.zeros(10, dtype=torch.bfloat16), 4)
    assert kept.tolist() == [0, 1, 2, 3]


def test_select_kept_extremes_and_partition():
    scores = torch.randn(50, generator=torch.Generator().manual_seed(0))
    kept, dropped = select_kept(scores, 50)
    assert kept.tolist() == list(range(50)) and dropped.numel() == 0
    kept, dropped = select_kept(scores, 0)
    assert kept.numel() == 0 and dropped.tolist() == list(range(50))
    kept, dropped = select_kept(scores, 20)
    assert sorted(kept.tolist() + dropped.tolist()) == list(range(50))
    assert scores[kept].min() > scores[dropped].max()


def test_top_scores_batched():
    scores = torch.tensor([[3.0, 1.0, 2.0, 5.0], [0.0, 0.0, 9.0, 0.0]])
    assert select_top_scores(scores, 2).tolist() == [[0, 3], [0, 2]]


@pytest.mark.parametrize(
    "scores, n_keep, match",
    [
        (torch.zeros(2, 3), 1, r"scores: expected a 1-D tensor \(n_v,\), got tensor of shape \(2, 3\)"),
        ([0.1, 0.2], 1, "scores: expected a 1-D tensor"),
        (torch.zeros(4), 5, r"n_keep=5: must be an integer in \[0, 4\]"),
        (torch.zeros(4), -1, "n_keep=-1"),
        (torch.zeros(4), 2.0, "n_keep=2.0"),
    ],
)
def test_select_kept_bad_args(scores, n_keep, match):
    with pytest.raises(ValueError, match=match):
        select_kept(scores, n_keep)


# --------------------------------------------------------------------------------------- merge


def hand_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # p0, p1 kept; p2, p4 join p0 (same direction), p3 joins p1.
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 4.0], [6.0, 0.0]])
    return hidden, torch.tensor([0, 1]), torch.tensor([2, 3, 4])


def test_merge_sequential_by_hand():
    hidden, kept, dropped = hand_case()
    out = merge_dropped(hidden, kept, dropped, "sequential")
    # p0: ((1 + 2)/2 + 6)/2 = 3.75 = 1/4 + 2/4 + 6/2 ; p1: (1 + 4)/2 = 2.5
    assert torch.equal(out, torch.tensor([[3.75, 0.0], [0.0, 2.5]]))


def test_merge_mean_by_hand():
    hidden, kept, dropped = hand_case()
    out = merge_dropped(hidden, kept, dropped, "mean")
    assert torch.equal(out, torch.tensor([[3.0, 0.0], [0.0, 2.5]]))


def test_merge_sequential_visits_by_position_not_argument_order():
    hidden, kept, _ = hand_case()
    a = merge_dropped(hidden, kept, torch.tensor([2, 3, 4]))
    b = merge_dropped(hidden, kept, torch.tensor([4, 2, 3]))
    assert torch.equal(a, b)
    # Swapping the members' positions changes the result: the later member weighs more.
    swapped = hidden[[0, 1, 4, 3, 2]]
    assert torch.equal(
        merge_dropped(swapped, kept, torch.tensor([2, 3, 4])), torch.tensor([[2.75, 0.0], [0.0, 2.5]])
    )  # ((1+6)/2 + 2)/2


def test_merge_similarity_tie_goes_to_lowest_kept_index():
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    out = merge_dropped(hidden, torch.tensor([0, 1]), torch.tensor([2]))
    assert torch.equal(out, torch.tensor([[1.0, 0.5], [0.0, 1.0]]))


def test_merge_similarity_is_computed_once_on_the_input():
    # After p1 joins p0 the centre moves toward p2, but p2 must still follow the similarities of the input:
    # p2 is closer to kept p3 in the input, so p0 only receives p1.
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 1.0], [0.4, 1.0]])
    out = merge_dropped(hidden, torch.tensor([0, 3]), torch.tensor([1, 2]))
    # Input cosines: p1→p3 (0.93) > p1→p0 (0), p2→p3 (0.997) > p2→p0 (0.45): both join p3, in position order.
    expected_p3 = ((hidden[3] + hidden[1]) / 2 + hidden[2]) / 2
    assert torch.allclose(out, torch.stack([hidden[0], expected_p3]))


@pytest.mark.parametrize("update", ["sequential", "mean"])
@pytest.mark.parametrize("seed", range(8))
def test_merge_matches_reference_on_clusters(seed, update):
    # Cluster sizes 0, 1 and many in every case.
    g = torch.Generator().manual_seed(100 + seed)
    n_keep = 6
    sizes = [0, 1] + torch.randint(2, 9, (n_keep - 2,), generator=g).tolist()
    hidden, kept = clustered_hidden(seed, n_keep, sizes)
    dropped = [p for p in range(hidden.shape[0]) if p not in kept]
    out = merge_dropped(hidden, torch.tensor(kept), torch.tensor(dropped), update)
    ref = ref_merge(hidden, kept, dropped, update)
    assert out.dtype == torch.float32 and out.shape == (n_keep, hidden.shape[1])
    assert torch.allclose(out.double(), ref, atol=1e-5, rtol=1e-5)
    # The cases really hold clusters of 0, 1 and many members; a centre without members comes back as is.
    assign = list(ref_assign(hidden, kept, dropped).values())
    counts = sorted(assign.count(k) for k in kept)
    assert counts == sorted(sizes) and counts[0] == 0 and counts[1] == 1 and counts[-1] >= 2
    empty = [j for j, k in enumerate(kept) if k not in assign]
    assert len(empty) == 1 and torch.equal(out[empty[0]], hidden[kept[empty[0]]])


@pytest.mark.parametrize("update", ["sequential", "mean"])
@pytest.mark.parametrize("seed", range(6))
def test_merge_matches_reference_on_random_states(seed, update):
    g = torch.Generator().manual_seed(seed)
    n_v = int(torch.randint(2, 40, (1,), generator=g))
    hidden = torch.randn(n_v, 12, generator=g)
    scores = torch.rand(n_v, generator=g)
    kept, dropped = select_kept(scores, merge_keep_count(n_v, 0.5))
    out = merge_dropped(hidden, kept, dropped, update)
    ref = ref_merge(hidden, kept.tolist(), dropped.tolist(), update)
    assert torch.allclose(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_merge_long_cluster_underflows_cleanly():
    # 300 members in one cluster: the centre's weight 2^-300 is 0 in float32; no NaN/inf, still matches.
    hidden, kept = clustered_hidden(3, 2, [300, 2], d=8)
    dropped = [p for p in range(hidden.shape[0]) if p not in kept]
    out = merge_dropped(hidden, torch.tensor(kept), torch.tensor(dropped))
    assert torch.isfinite(out).all()
    assert torch.allclose(out.double(), ref_merge(hidden, kept, dropped, "sequential"), atol=1e-5)


def test_merge_ratio_zero_returns_kept_unchanged():
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        hidden = torch.randn(17, 8, generator=torch.Generator().manual_seed(1)).to(dtype)
        kept, dropped = select_kept(torch.rand(17), merge_keep_count(17, 0.0))
        out = merge_dropped(hidden, kept, dropped)
        assert torch.equal(out, hidden) and out.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("update", ["sequential", "mean"])
def test_merge_preserves_low_precision_dtype(dtype, update):
    g = torch.Generator().manual_seed(7)
    hidden = torch.randn(30, 16, generator=g)
    kept, dropped = select_kept(torch.rand(30, generator=g), 12)
    out = merge_dropped(hidden.to(dtype), kept, dropped, update)
    assert out.dtype == dtype and out.shape == (12, 16)
    # Computed in float32 on the rounded input, then rounded once.
    ref = merge_dropped(hidden.to(dtype).float(), kept, dropped, update)
    assert torch.equal(out, ref.to(dtype))


def test_the_registry_offers_the_merge_rules_inner_implements():
    from holitom.counts import INNER_UPDATES
    from holitom.methods.holitom import METHOD

    assert METHOD.setting("inner_update").choices == INNER_UPDATES == ("sequential", "mean")
    hidden, kept, dropped = hand_case()
    for update in INNER_UPDATES:
        assert merge_dropped(hidden, kept, dropped, update).shape == (kept.numel(), hidden.shape[1])


def test_merge_bad_args():
    hidden, kept, dropped = hand_case()
    with pytest.raises(ValueError, match=r"update='median': must be one of \('sequential', 'mean'\)"):
        merge_dropped(hidden, kept, dropped, "median")
    with pytest.raises(
        ValueError, match=r"hidden: expected a 2-D tensor \(n_v, d\), got tensor of shape \(5,\)"
    ):
        merge_dropped(hidden[:, 0], kept, dropped)
    with pytest.raises(ValueError, match="kept_idx: expected a 1-D LongTensor"):
        merge_dropped(hidden, kept.int(), dropped)
    with pytest.raises(ValueError, match="dropped_idx: expected a 1-D LongTensor"):
        merge_dropped(hidden, kept, [2, 3, 4])
    with pytest.raises(ValueError, match="must partition the positions 0..4"):
        merge_dropped(hidden, kept, torch.tensor([2, 3, 3]))
    with pytest.raises(ValueError, match="must partition"):
        merge_dropped(hidden, kept, torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="must partition"):
        merge_dropped(hidden, kept, torch.tensor([2, 3, 7]))
    with pytest.raises(ValueError, match="must partition"):
        merge_dropped(hidden, kept, torch.tensor([2, 3, -1]))
    with pytest.raises(ValueError, match="kept_idx: is empty"):
        merge_dropped(hidden, torch.tensor([], dtype=torch.long), torch.arange(5))
