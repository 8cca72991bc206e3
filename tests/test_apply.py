"""holitom.apply / remove and the model hooks: vision probe, outer compression, inner merging (spec §3),
plus the VisionZip and FastV installs that share the same machinery."""

from __future__ import annotations

import pytest
import torch
from conftest import load, random_frames, video_prompt_ids

import holitom
from holitom.hosts import host_for
from holitom.methods import apply_method
from holitom.outer import compress_video
from holitom.patch.qwen2 import InnerReduction, Stage


def _logits(model, ids, frames, **kwargs):
    with torch.no_grad():
        return model(input_ids=ids, images=[frames], modalities=["video"], **kwargs)


def _generate(model, ids, frames, **kwargs):
    kwargs.setdefault("max_new_tokens", 6)
    kwargs.setdefault("do_sample", False)
    with torch.no_grad():
        return model.generate(ids, images=[frames], modalities=["video"], **kwargs)


@pytest.mark.parametrize("fixture", ["ov_model", "video_model"])
def test_ratio_one_with_tau_above_one_reproduces_vanilla_exactly(fixture, request):
    tokenizer, model, _, _ = request.getfixturevalue(fixture)
    ids, frames = video_prompt_ids(tokenizer), random_frames(4)
    vanilla = _logits(model, ids, frames).logits
    holitom.apply(model, holitom.HoliTomConfig(retain_ratio=1.0, tau=1.5, merge_layer=None))
    assert torch.equal(_logits(model, ids, frames).logits, vanilla)


def test_r0_gives_identical_logits_and_tokens_and_k_beyond_depth_is_an_error(ov_model):
    tokenizer, model, _, _ = ov_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(4)
    vanilla, vanilla_tokens = _logits(model, ids, frames).logits, _generate(model, ids, frames)
    for merge_layer, merge_ratio in [(2, 0.0), (1, 0.0), (3, 0.0)]:
        holitom.apply(model, holitom.HoliTomConfig(retain_ratio=1.0, tau=1.5, merge_layer=merge_layer, merge_ratio=merge_ratio))
        assert torch.equal(_logits(model, ids, frames).logits, vanilla), (merge_layer, merge_ratio)
        assert torch.equal(_generate(model, ids, frames), vanilla_tokens)
    for merge_layer in (4, 99):  # a merge layer the 4-layer LM does not have: never silently "w/o M"
        with pytest.raises(ValueError, match=rf"merge_layer={merge_layer} is beyond this 4-layer LM: layers must be in \[1, 3\]"):
            holitom.apply(model, holitom.HoliTomConfig(retain_ratio=1.0, merge_layer=merge_layer))
        assert holitom.methods.installed(model) is None
    with pytest.raises(ValueError, match=r"merge_layer=18 \(the default\) is beyond this 4-layer LM"):
        holitom.apply_method(model, "holitom", retain_ratio=0.5)
    with pytest.raises(ValueError, match=r"fastv_layer=9 is beyond this 4-layer LM"):
        holitom.apply_method(model, "fastv", fastv_layer=9)
    holitom.remove(model)


def test_inner_merge_counts_cache_lengths_and_positions(ov_model):
    tokenizer, model, _, _ = ov_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(4)
    holitom.apply(model, holitom.HoliTomConfig(retain_ratio=1.0, tau=1.5, merge_layer=2, merge_ratio=0.5))
    out = _logits(model, ids, frames, use_cache=True)
    n_visual = 4 * 196 + 1
    full = ids.shape[1] - 1 + n_visual
    kept = round(n_visual * 0.5)
    stats = holitom.stats(model)
    assert (stats.method, stats.stages) == ("holitom", [{"layer": 2, "visual_in": n_visual, "visual_kept": kept}])
    short = full - (n_visual - kept)
    assert out.logits.shape[1] == short
    lengths = [layer.keys.shape[-2] for layer in out.past_key_values.layers]
    assert lengths == [full, full, short, short]

    seen: list[tuple] = []
    hook = model.get_model().layers[3].register_forward_pre_hook(
        lambda _m, _a, kw: seen.append((kw["position_ids"], kw["position_embeddings"][0].clone())), with_kwargs=True
    )
    try:
        _generate(model, ids, frames, max_new_tokens=3, min_new_tokens=3)
    finally:
        hook.remove()
    (prefill_ids, prefill_cos), (first_ids, _) = seen[0], seen[1]
    survivors = model.sequence_state.survivors
    assert survivors.shape[0] == short and int(survivors[-1]) == full - 1  # original positions, RoPE gaps kept
    assert bool((survivors[1:] > survivors[:-1]).all()) and int(survivors.diff().max()) > 1
    rotary = model.get_model().rotary_emb
    assert torch.equal(prefill_cos, rotary(prefill_cos, survivors[None])[0])  # rotated at those positions
    assert prefill_ids is None  # gapped position ids would read as packed sequences under flash attention
    assert first_ids.tolist() == [[full]]  # decoding continues at the full-length position


def test_generate_with_and_without_cache_agree_under_merging(ov_model):
    tokenizer, model, _, _ = ov_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(6, seed=2)
    holitom.apply(model, holitom.HoliTomConfig(retain_ratio=0.25, tau=0.8, merge_layer=2, merge_ratio=0.5))
    cached = _generate(model, ids, frames, max_new_tokens=8)
    uncached = _generate(model, ids, frames, max_new_tokens=8, use_cache=False)
    assert torch.equal(cached, uncached)
    first = _logits(model, ids, frames).logits[0, -1].argmax()
    assert cached[0, 0] == first


def test_eager_attention_masks_are_cut_to_the_survivors(tiny_ov):
    tokenizer, sdpa, _, _ = load(tiny_ov)
    _, eager, _, _ = load(tiny_ov, attn_implementation="eager")
    ids, frames = video_prompt_ids(tokenizer), random_frames(4, seed=5)
    config = holitom.HoliTomConfig(retain_ratio=0.3, tau=0.8, merge_layer=2, merge_ratio=0.5)
    for model in (sdpa, eager):
        holitom.apply(model, config)
    a, b = _logits(sdpa, ids, frames).logits, _logits(eager, ids, frames).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert torch.equal(_generate(sdpa, ids, frames), _generate(eager, ids, frames))


def test_inner_scores_are_the_last_token_attention_row(tiny_ov):
    """The hook's scores equal layer K-1's eager attention probabilities of the last prompt token."""
    tokenizer, model, _, _ = load(tiny_ov, attn_implementation="eager")
    ids, frames = video_prompt_ids(tokenizer), random_frames(3)
    recorded = {}

    def keep_all(hidden, scores, n_in):
        recorded["scores"] = scores.clone()
        return torch.arange(hidden.shape[0]), hidden

    inner = InnerReduction(host_for(model), [Stage(3, keep_all, 2)], "probe")
    try:
        out = _logits(model, ids, frames, output_attentions=True)
    finally:
        inner.remove()
    (start, length), = model.sequence_state.visual_spans[0]
    expected = out.attentions[2][0, :, -1, start : start + length].mean(0)
    torch.testing.assert_close(recorded["scores"], expected, atol=1e-6, rtol=1e-5)


def test_loss_with_labels_under_inner_merging(ov_model):
    tokenizer, model, _, _ = ov_model
    ids = video_prompt_ids(tokenizer)
    answer = torch.tensor([tokenizer("The answer is B")["input_ids"]])
    full = torch.cat([ids, answer], dim=1)
    labels = full.clone()
    labels[:, : ids.shape[1]] = -100
    holitom.apply(model, holitom.HoliTomConfig(retain_ratio=0.5, tau=0.9, merge_layer=2, merge_ratio=0.5))
    out = _logits(model, full, random_frames(2), labels=labels)
    logits = out.logits[0, -answer.shape[1] - 1 : -1]
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(logits, answer[0]))


def test_remove_restores_vanilla_and_models_stay_independent(tiny_ov):
    tokenizer, a, _, _ = load(tiny_ov)
    _, b, _, _ = load(tiny_ov)
    ids, frames = video_prompt_ids(tokenizer), random_frames(4)
    vanilla = _logits(b, ids, frames).logits
    holitom.apply(a, holitom.HoliTomConfig(retain_ratio=0.2, merge_layer=2))
    holitom.apply(b, holitom.HoliTomConfig(retain_ratio=0.5, merge_layer=None))
    merged_a = _logits(a, ids, frames)
    assert holitom.stats(a).visual_after < holitom.stats(a).visual_tokens
    _logits(b, ids, frames)
    assert not holitom.stats(b).stages and holitom.stats(b).visual_tokens > holitom.stats(a).visual_tokens
    holitom.remove(b)
    assert torch.equal(_logits(b, ids, frames).logits, vanilla)
    assert torch.equal(_logits(a, ids, frames).logits, merged_a.logits)  # a unaffected by b's changes
    holitom.remove(a)
    assert torch.equal(_logits(a, ids, frames).logits, vanilla)
    assert not a.get_model().layers[1]._forward_pre_hooks and not a.get_vision_tower().encoder_layers[-1]._forward_pre_hooks


def test_batch_of_two_with_video_is_a_clear_error(ov_model):
    tokenizer, model, _, _ = ov_model
    ids = video_prompt_ids(tokenizer)
    holitom.apply(model, holitom.HoliTomConfig(merge_layer=2))
    with pytest.raises(ValueError, match="batch size 1"), torch.no_grad():
        model.generate(torch.cat([ids, ids]), images=[random_frames(2), random_frames(2)], modalities=["video"] * 2, max_new_tokens=2)


def _reference_probe_scores(model, frames):
    """Received attention of the last kept SigLIP layer via transformers' eager attention (independent path)."""
    tower = model.get_vision_tower()
    captured = {}
    hook = tower.encoder_layers[-1].register_forward_pre_hook(lambda _m, args: captured.update(x=args[0]))
    with torch.no_grad():
        tower(frames)
    hook.remove()
    layer = tower.encoder_layers[-1]
    tower.config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            _, weights = layer.self_attn(layer.layer_norm1(captured["x"]))
    finally:
        tower.config._attn_implementation = "sdpa"
    return weights.mean(dim=(1, 2))


@pytest.mark.parametrize("fixture", ["ov_model", "video_model"])
def test_holitom_video_tokens_equal_compress_video_on_the_model_inputs(fixture, request):
    tokenizer, model, _, _ = request.getfixturevalue(fixture)
    frames = random_frames(6, seed=1)
    config = holitom.HoliTomConfig(retain_ratio=0.2, tau=0.8, merge_layer=None)
    with torch.no_grad():
        pooled = model.get_2dPool(model.encode_images(frames))
        scores = model.get_2dPool(_reference_probe_scores(model, frames)[..., None]).squeeze(-1)
        newline = model.get_model().image_newline
        if model.config.mm_newline_position == "grid":
            expected = compress_video(pooled, scores, config, newline=newline)
        else:
            expected = torch.cat([compress_video(pooled, scores, config), newline[None]])
        holitom.apply(model, config)
        got = model.video_tokens(frames)
    assert got.shape == expected.shape and got.shape[0] < pooled.shape[0] * pooled.shape[1]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_visionzip_and_fastv_installs(ov_model):
    tokenizer, model, _, _ = ov_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(4)
    vanilla = _logits(model, ids, frames).logits
    apply_method(model, "visionzip", retain_ratio=1.0)
    assert torch.equal(_logits(model, ids, frames).logits, vanilla)
    apply_method(model, "visionzip", retain_ratio=0.1)
    _logits(model, ids, frames)
    assert model.sequence_state.visual_tokens == [4 * 20 + 1]  # F × ceil(196 × 0.1) + newline
    apply_method(model, "fastv", fastv_layer=2, fastv_keep=1.0)
    assert torch.equal(_logits(model, ids, frames).logits, vanilla)
    apply_method(model, "fastv", fastv_layer=2, fastv_keep=0.5)
    out = _logits(model, ids, frames)
    assert holitom.stats(model).visual_after == 4 * 196 + 1 - round((4 * 196 + 1) * 0.5)
    assert out.logits.shape[1] < vanilla.shape[1]
    apply_method(model, "vanilla")
    assert torch.equal(_logits(model, ids, frames).logits, vanilla)
    with pytest.raises(ValueError, match="valid methods"):
        apply_method(model, "tome")
    with pytest.raises(ValueError, match="retain_ratio"):
        apply_method(model, "holitom", retain_ratio=1.5)


def test_text_only_pass_after_a_video_prompt_is_not_merged(ov_model):
    tokenizer, model, _, _ = ov_model
    text = torch.tensor([tokenizer("The man is walking a dog in the park. What is happening?")["input_ids"]])
    with torch.no_grad():
        vanilla = model(input_ids=text).logits
    holitom.apply(model, holitom.HoliTomConfig(retain_ratio=0.5, merge_layer=2, merge_ratio=0.5))
    _logits(model, video_prompt_ids(tokenizer), random_frames(2))
    assert holitom.stats(model).visual_after > 0
    with torch.no_grad():
        after = model(input_ids=text).logits
        batch = model(input_ids=torch.cat([text, text])).logits
    assert torch.equal(after, vanilla) and torch.equal(batch[1:], vanilla)
    stats = holitom.stats(model)
    assert not stats.stages and not stats.outer and stats.visual_tokens == 0  # statistics belong to one sequence


def test_follow_up_turn_on_a_merged_cache(ov_model):
    tokenizer, model, _, _ = ov_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(3)
    follow = torch.tensor([tokenizer("And then?")["input_ids"]])
    outputs = {}
    for name, ratio in [("vanilla", None), ("r0", 0.0), ("r05", 0.5)]:
        if ratio is None:
            holitom.remove(model)
        else:
            holitom.apply(model, holitom.HoliTomConfig(retain_ratio=1.0, tau=1.5, merge_layer=2, merge_ratio=ratio))
        first = _logits(model, ids, frames, use_cache=True)
        with torch.no_grad():
            second = model(input_ids=follow, past_key_values=first.past_key_values, use_cache=True)
        outputs[name] = second.logits
        lengths = [layer.keys.shape[-2] for layer in second.past_key_values.layers]
        if name == "r05":
            assert lengths[0] > lengths[2]  # the continuation kept the short cache of layers ≥ K
    assert torch.equal(outputs["r0"], outputs["vanilla"])
    assert outputs["r05"].shape == outputs["vanilla"].shape


def test_beams_and_sampled_copies_work_with_inner_merging(ov_model):
    tokenizer, model, _, _ = ov_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(2)
    holitom.apply(model, holitom.HoliTomConfig(retain_ratio=0.5, merge_layer=2, merge_ratio=0.5))
    beams = _generate(model, ids, frames, num_beams=2, max_new_tokens=3)
    torch.manual_seed(0)
    sampled = _generate(model, ids, frames, num_return_sequences=2, do_sample=True, max_new_tokens=3)
    assert beams.shape[0] == 1 and sampled.shape[0] == 2


def test_inner_merge_edge_cases(ov_model):
    tokenizer, model, _, _ = ov_model
    # no text after <image>: the last prompt token is the newline vector itself; r=0 still equals vanilla
    at = int((video_prompt_ids(tokenizer)[0] == -200).nonzero())
    ids = video_prompt_ids(tokenizer)[:, : at + 1]
    frames = random_frames(2)
    vanilla = _logits(model, ids, frames).logits
    holitom.apply(model, holitom.HoliTomConfig(retain_ratio=1.0, tau=1.5, merge_layer=2, merge_ratio=0.0))
    assert torch.equal(_logits(model, ids, frames).logits, vanilla)
    # so few visual tokens that round(n·(1−r)) would be 0: one survivor is kept
    holitom.apply(model, holitom.HoliTomConfig(retain_ratio=0.01, tau=1.5, merge_layer=2, merge_ratio=0.9))
    _logits(model, video_prompt_ids(tokenizer), random_frames(1))
    assert holitom.stats(model).visual_after == 1
    with pytest.raises(ValueError, match="DynamicCache"):
        _generate(model, video_prompt_ids(tokenizer), frames, cache_implementation="static", max_new_tokens=2)


def test_forward_output_follows_the_transformers_convention(ov_model):
    tokenizer, model, _, _ = ov_model
    ids = video_prompt_ids(tokenizer)
    labels = ids.clone()
    labels[labels < 0] = -100
    out = _logits(model, ids, random_frames(1), labels=labels)
    assert out[0] is out.loss and list(out.keys())[:2] == ["loss", "logits"]
    as_tuple = _logits(model, ids, random_frames(1), labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[1], out.logits)
    with torch.no_grad():
        by_keyword = model.generate(input_ids=ids, images=[random_frames(1)], modalities=["video"], max_new_tokens=2, do_sample=False)
    assert by_keyword.shape[0] == 1


def test_an_install_that_fails_half_way_leaves_the_model_as_it_was(tiny_ov, monkeypatch):
    """HoliTom installs its vision probe and compressor before its inner-LLM hooks: when the latter fail, the
    former must go too (the model stays vanilla, hook for hook)."""
    import holitom.patch.qwen2 as qwen2
    from holitom.methods import installed

    _, model, _, _ = load(tiny_ov)
    modules = list(model.modules())
    hooks = [(len(m._forward_pre_hooks), len(m._forward_hooks)) for m in modules]

    def fail(*args, **kwargs):
        raise RuntimeError("inner hooks failed")

    monkeypatch.setattr(qwen2.InnerReduction, "__init__", fail)
    with pytest.raises(RuntimeError, match="inner hooks failed"):
        holitom.apply_method(model, "holitom", retain_ratio=0.25, merge_layer=2, merge_ratio=0.5)
    assert [(len(m._forward_pre_hooks), len(m._forward_hooks)) for m in modules] == hooks
    assert installed(model) is None and "video_token_compressor" not in model.__dict__
