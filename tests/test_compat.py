"""reference_compat: behaving like the authors' runs (bidirectional layer K−1 in the prefill, model-dtype
arithmetic), and the default (causal, float32) staying what the paper describes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import random_frames, video_prompt_ids
from transformers.models.qwen2.modeling_qwen2 import eager_attention_forward

import holitom
from holitom.attention import last_query_attention, received_attention
from holitom.inner import merge_dropped, merge_dropped_reference, select_kept
from holitom.spatial import cluster_merge
from holitom.temporal import frame_similarity

K = 2  # merge layer on the 4-layer tiny LM


def _layer_outputs(model, ids, frames):
    """Output hidden states of every decoder layer in one prefill, and the logits."""
    seen: list[torch.Tensor] = []
    handles = [
        layer.register_forward_hook(lambda _m, _a, out: seen.append((out[0] if isinstance(out, tuple) else out).clone()))
        for layer in model.get_model().layers
    ]
    try:
        with torch.no_grad():
            logits = model(input_ids=ids, images=[frames], modalities=["video"]).logits
    finally:
        for handle in handles:
            handle.remove()
    return seen, logits


def _config(compat: bool, **changes):
    # no outer merging (ρ = 1, τ > 1): the LM sees the same sequence in both modes
    values = dict(retain_ratio=1.0, tau=1.5, merge_layer=K, merge_ratio=0.5, reference_compat=compat)
    return holitom.HoliTomConfig(**(values | changes))


def test_compat_keeps_the_same_tokens_and_differs_from_layer_k_minus_1_on(ov_model):
    tokenizer, model, _, _ = ov_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(3, seed=4)
    runs = {}
    for compat in (False, True):
        holitom.apply(model, _config(compat))
        outputs, _ = _layer_outputs(model, ids, frames)
        runs[compat] = (outputs, model.sequence_state.survivors.clone(), holitom.stats(model).stages)
    (default, kept_default, stages_default), (compat, kept_compat, stages_compat) = runs[False], runs[True]
    assert torch.equal(kept_default, kept_compat) and stages_default == stages_compat  # the same tokens kept
    for layer in range(K - 1):
        assert torch.equal(default[layer], compat[layer]), layer  # identical before layer K−1
    assert not torch.equal(default[K - 1], compat[K - 1])  # layer K−1 attended bidirectionally
    # ... at every position but the last, whose causal row already saw every key
    diff = (default[K - 1] - compat[K - 1]).abs().amax(-1)[0]
    assert bool((diff[:-1] > 0).all()) and float(diff[-1]) < 1e-5
    assert all(not torch.equal(a, b) for a, b in zip(default[K:], compat[K:]))


def test_r0_equals_the_unmerged_model_only_in_the_default_mode(ov_model):
    tokenizer, model, _, _ = ov_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(3, seed=1)
    with torch.no_grad():
        vanilla = model(input_ids=ids, images=[frames], modalities=["video"]).logits
    holitom.apply(model, _config(False, merge_ratio=0.0))
    assert torch.equal(_layer_outputs(model, ids, frames)[1], vanilla)
    holitom.apply(model, _config(True, merge_ratio=0.0))
    compat = _layer_outputs(model, ids, frames)[1]
    assert compat.shape == vanilla.shape and not torch.allclose(compat, vanilla, atol=1e-4)
    # the decode steps run every layer causally, in both modes
    holitom.apply(model, _config(True, merge_ratio=0.0, merge_layer=3))
    with torch.no_grad():
        out = model.generate(ids, images=[frames], modalities=["video"], max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 3)


def test_compat_is_a_setting_of_every_front_end():
    from holitom.methods import get

    item = get("holitom").setting("reference_compat")
    assert item.type is bool and item.default is False and item.parse("true") is True
    assert holitom.HoliTomConfig().reference_compat is False
    with pytest.raises(ValueError, match="reference_compat='yes please'"):
        holitom.HoliTomConfig(reference_compat="yes please")


# ---------------------------------------------------------------------------------------------- arithmetic


def test_reference_scores_equal_transformers_eager_attention_in_bfloat16():
    """The inner score row of compat mode is the head mean of transformers' own eager probabilities."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 12, 8, generator=g).bfloat16()
    k = torch.randn(1, 2, 12, 8, generator=g).bfloat16()

    class Module:
        num_key_value_groups, training = 2, False

    mask = torch.full((12, 12), float("-inf")).triu(1)[None, None].bfloat16()
    _, weights = eager_attention_forward(Module(), q, k, k, mask, scaling=8**-0.5)
    expected = weights.mean(dim=1)[0, -1]  # their row: mean over heads, last token
    got = last_query_attention(q[:, :, -1], k, 8**-0.5, reference=True)[0]
    assert got.dtype == torch.bfloat16 and torch.equal(got, expected)
    assert not torch.equal(got.float(), last_query_attention(q[:, :, -1], k, 8**-0.5)[0])


def test_reference_vision_scores_are_head_then_query_means_of_eager_probabilities():
    g = torch.Generator().manual_seed(1)
    q, k = (torch.randn(2, 3, 9, 4, generator=g).half() for _ in range(2))
    probs = torch.softmax((q @ k.transpose(-1, -2)) * 0.5, dim=-1, dtype=torch.float32).half()
    expected = probs.mean(dim=1).mean(dim=1)
    got = received_attention(q, k, 0.5, reference=True)
    assert got.dtype == torch.float16 and torch.equal(got, expected)


def test_reference_frame_similarity_is_the_authors_normalise_then_cosine_in_the_model_dtype():
    x = torch.randn(5, 7, 16, generator=torch.Generator().manual_seed(2)).half()
    unit = F.normalize(x, dim=-1)
    expected = F.cosine_similarity(unit[:-1], unit[1:], dim=-1)
    got = frame_similarity(x, reference=True)
    assert got.dtype == torch.float16 and torch.equal(got, expected)
    assert torch.allclose(got.float(), frame_similarity(x), atol=2e-3)


def test_reference_beta_merge_rounds_like_the_authors():
    x = torch.randn(12, 8, generator=torch.Generator().manual_seed(3)).half()
    merged, centres = cluster_merge(x, 3, 3, 0.6, reference=True)
    dist = torch.cdist(x.float(), x.float())[:, centres]
    assign = dist.argmin(-1)
    for j, c in enumerate(centres.tolist()):
        members = [i for i in range(12) if assign[i] == j and i != c]
        if not members:
            assert torch.equal(merged[j], x[c])
            continue
        mean = (x[members].float().sum(0) * (1.0 / len(members))).half()
        assert torch.equal(merged[j], x[c] * 0.6 + mean * (1 - 0.6))


def _their_loop(hidden, kept, dropped, kept_scores):
    """The authors' inner merge, token by token: kept list in descending-score order, sim = dot/(‖d‖‖k‖)."""
    order = sorted(range(len(kept)), key=lambda j: -float(kept_scores[j]))
    state = {kept[j]: hidden[kept[j]].clone() for j in range(len(kept))}
    cand = hidden[[kept[j] for j in order]]
    for d in sorted(dropped):
        x = hidden[d]
        sim = (cand @ x) / (torch.linalg.vector_norm(x) * torch.linalg.vector_norm(cand, dim=-1))
        target = kept[order[int(sim.argmax())]]
        state[target] = (state[target] + x) / 2
    return torch.stack([state[p] for p in kept])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("seed", range(4))
def test_reference_inner_merge_is_bit_identical_to_the_token_by_token_loop(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(40, 16, generator=g).to(dtype)
    scores = torch.rand(40, generator=g)
    kept, dropped = select_kept(scores, 12)
    got = merge_dropped_reference(hidden, kept, dropped, scores[kept])
    assert got.dtype == dtype
    assert torch.equal(got, _their_loop(hidden, kept.tolist(), dropped.tolist(), scores[kept]))
    assert torch.equal(merge_dropped(hidden, kept, dropped, "sequential", scores[kept]), got)
    assert torch.allclose(merge_dropped(hidden, kept, dropped).float(), got.float(), atol=0.05)
