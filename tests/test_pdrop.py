"""PDrop (PyramidDrop): stage counts by hand, the multi-stage cut inside the LLM with renumbered positions,
per-layer caches, decode positions, the command line, and the paper's FLOPs cells."""

from __future__ import annotations

import pytest
import torch
from conftest import random_frames, video_prompt_ids

import holitom
from holitom.baselines.pdrop import pdrop_keep_counts, pdrop_keep_ratios, pdrop_select
from holitom.flops import method_flops
from holitom.methods.pdrop import PDropConfig


def test_keep_counts_are_int_of_the_original_count_times_lambda_powers():
    assert pdrop_keep_ratios(0.5, 3) == (0.5, 0.25, 0.125)
    assert pdrop_keep_counts(6272, 0.5, 3) == (3136, 1568, 784)
    assert pdrop_keep_counts(11648, 0.5, 3) == (5824, 2912, 1456)  # LLaVA-Video, row newlines included
    assert pdrop_keep_counts(100, 0.45, 3) == (45, 20, 9)  # int(45.0), int(20.25), int(9.1125)
    assert pdrop_keep_counts(7, 0.5, 4) == (3, 1, 0, 0)
    assert pdrop_keep_counts(10, 1.0, 2) == (10, 10)


def test_select_keeps_the_best_scores_in_position_order():
    scores = torch.tensor([0.1, 0.5, 0.3, 0.5, 0.9, 0.0])
    assert pdrop_select(scores, 3).tolist() == [1, 3, 4]  # 0.9, then the two 0.5s
    assert pdrop_select(torch.zeros(5), 2).tolist() == [0, 1]  # ties → lower positions
    with pytest.raises(ValueError, match="expected a 1-D tensor"):
        pdrop_select(torch.zeros(2, 2), 1)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"pdrop_layers": (7, 2)}, r"pdrop_layers=\(7, 2\): must be increasing integers ≥ 1"),
        ({"pdrop_layers": (0, 2)}, "pdrop_layers"),
        ({"pdrop_layers": ()}, "pdrop_layers"),
        ({"pdrop_lambda": 0.0}, r"pdrop_lambda=0.0: must be in \(0, 1\]"),
        ({"pdrop_lambda": 1.5}, "pdrop_lambda=1.5"),
    ],
)
def test_bad_settings_name_themselves(values, match):
    with pytest.raises(ValueError, match=match):
        PDropConfig(**values)


def test_paper_cells_and_the_stage_schedule():
    ov = method_flops("ov-7b", method="pdrop")
    assert ov.schedule == ((0, 6272), (2, 3136), (7, 1568), (14, 784))
    assert (round(ov.tflops, 1), round(ov.percent_of_vanilla, 1)) == (10.5, 25.7)
    video = method_flops("vid-7b", method="pdrop")
    assert (round(video.tflops, 1), round(video.percent_of_vanilla, 1)) == (19.5, 24.3)
    official = method_flops("ov-7b", method="pdrop", pdrop_layers=(8, 16, 24))  # the official schedule
    assert round(official.tflops, 1) == 20.0
    with pytest.raises(ValueError, match=r"pdrop_layers=2/7/28 is beyond this 28-layer LM"):
        method_flops("ov-7b", method="pdrop", pdrop_layers=(2, 7, 28))


def _capture_positions(model, layer: int) -> tuple[list, list]:
    ids, ropes = [], []

    def hook(_module, _args, kwargs):
        ids.append(kwargs["position_ids"])
        ropes.append(kwargs["position_embeddings"][0].clone())

    return ids, ropes, model.get_model().layers[layer].register_forward_pre_hook(hook, with_kwargs=True)


def test_stages_shrink_the_sequence_with_renumbered_positions_and_short_caches(ov_model):
    tokenizer, model, _, _ = ov_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(3)
    holitom.apply_method(model, "pdrop", pdrop_layers=(1, 2, 3), pdrop_lambda=0.5)
    with torch.no_grad():
        out = model(input_ids=ids, images=[frames], modalities=["video"], use_cache=True)
    n = 3 * 196 + 1
    full = ids.shape[1] - 1 + n
    kept = [n // 2, n // 4, n // 8]  # int(N·0.5^s) of the N that entered the LLM: 294, 147, 73
    stats = holitom.stats(model)
    assert stats.stages == [
        {"layer": 1, "visual_in": n, "visual_kept": kept[0]},
        {"layer": 2, "visual_in": kept[0], "visual_kept": kept[1]},
        {"layer": 3, "visual_in": kept[1], "visual_kept": kept[2]},
    ]
    lengths = [layer.keys.shape[-2] for layer in out.past_key_values.layers]
    assert lengths == [full] + [full - n + k for k in kept]
    assert out.logits.shape[1] == lengths[-1]
    survivors = model.sequence_state.survivors
    assert survivors.shape[0] == lengths[-1] and bool((survivors.diff() > 0).all())  # text and kept, in order

    pos, rope, handle = _capture_positions(model, 3)
    try:
        with torch.no_grad():
            model.generate(ids, images=[frames], modalities=["video"], max_new_tokens=3, min_new_tokens=3, do_sample=False)
    finally:
        handle.remove()
    rotary = model.get_model().rotary_emb
    renumbered = torch.arange(lengths[3])[None]
    assert pos[0] is None and torch.equal(rope[0], rotary(rope[0], renumbered)[0])  # 0..L'−1 after the drops
    assert [p.tolist() for p in pos[1:]] == [[[lengths[3]]], [[lengths[3] + 1]]]  # decode: this layer's cache length
    for p, cos in zip(pos[1:], rope[1:]):
        assert torch.equal(cos, rotary(cos, p)[0])  # the rotary embeddings are those of these positions
    holitom.remove(model)


def test_cached_and_uncached_generation_agree(ov_model):
    tokenizer, model, _, _ = ov_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(4, seed=3)
    holitom.apply_method(model, "pdrop", pdrop_layers=(1, 3), pdrop_lambda=0.4)
    with torch.no_grad():
        cached = model.generate(ids, images=[frames], modalities=["video"], max_new_tokens=5, do_sample=False)
        uncached = model.generate(ids, images=[frames], modalities=["video"], max_new_tokens=5, do_sample=False, use_cache=False)
        first = model(input_ids=ids, images=[frames], modalities=["video"]).logits[0, -1].argmax()
    assert torch.equal(cached, uncached) and cached[0, 0] == first


def test_grid_layout_newlines_are_ranked_like_any_visual_token(video_model):
    tokenizer, model, _, _ = video_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(2)
    holitom.apply_method(model, "pdrop", pdrop_layers=(2,), pdrop_lambda=0.3)
    with torch.no_grad():
        model(input_ids=ids, images=[frames], modalities=["video"])
    n = 2 * 13 * 14  # 13×13 tokens and a newline after each of the 13 rows, per frame
    assert holitom.stats(model).stages == [{"layer": 2, "visual_in": n, "visual_kept": int(n * 0.3)}]


def test_generate_prints_the_tokens_of_every_stage(tiny_ov, tmp_path, capsys):
    from holitom.cli import main
    from holitom.tools.synthetic import write_synthetic_video

    video = str(tmp_path / "clip.mp4")
    write_synthetic_video(video, num_frames=8, size=(64, 48))
    argv = ["generate", "--model", tiny_ov, "--video", video, "--frames", "4", "--max-new-tokens", "2", "--device", "cpu"]
    assert main([*argv, "--method", "pdrop", "--pdrop-layers", "1/2/3"]) == 0
    out = capsys.readouterr().out
    n = 4 * 196 + 1
    assert f"entering the LLM {n} → surviving layer 1: {n // 2} → surviving layer 2: {n // 4} → surviving layer 3: {n // 8}" in out
    assert main([*argv, "--method", "pdrop"]) == 2  # the paper's layers (2, 7, 14) do not fit a 4-layer LM
    assert "pdrop_layers=2/7/14 (the default) is beyond this 4-layer LM: layers must be in [1, 3]" in capsys.readouterr().err


def test_lambda_powers_can_differ_by_one_token_from_a_literal_ratio_list():
    # methods.md: λ**s in double precision, not the official literal list (0.3, 0.09, 0.027)
    assert pdrop_keep_ratios(0.3, 3)[2] == 0.026999999999999996 != 0.027
    assert pdrop_keep_counts(1000, 0.3, 3) == (300, 90, 26) and int(1000 * 0.027) == 27
    assert pdrop_keep_counts(1000, 0.5, 3) == (500, 250, 125)  # powers of two are exact: no difference


def test_scores_are_float32_from_the_logits_on_and_reference_compat_is_not_a_pdrop_setting(ov_model):
    """bfloat16 q = [1, 1], keys [256, 0] and [256, 1]: float32 logits 256 < 257, so PDrop keeps key 1;
    logits rounded to bfloat16 (the official arithmetic, `reference=True`) are 256 and 256 (257 rounds to
    even), a tie that goes to key 0."""
    from holitom.attention import last_query_attention
    from holitom.methods import installed
    from holitom.patch.qwen2 import InnerReduction

    q = torch.tensor([[[1.0, 1.0]]], dtype=torch.bfloat16)
    keys = torch.tensor([[[[256.0, 0.0], [256.0, 1.0]]]], dtype=torch.bfloat16)
    ours = last_query_attention(q, keys, 1.0)
    assert ours.dtype == torch.float32 and pdrop_select(ours[0], 1).tolist() == [1]
    official = last_query_attention(q, keys, 1.0, reference=True)
    assert official[0, 0] == official[0, 1] and pdrop_select(official[0].float(), 1).tolist() == [0]
    # the installed stages score with the float32 path (no reference arithmetic) ...
    _, model, _, _ = ov_model
    holitom.apply_method(model, "pdrop", pdrop_layers=(1, 2), pdrop_lambda=0.5)
    try:
        (reduction,) = [part for part in installed(model).parts if isinstance(part, InnerReduction)]
        assert [(s.layer, s.score_layer, s.reference_scores) for s in reduction.stages] == [(1, 1, False), (2, 2, False)]
    finally:
        holitom.remove(model)
    # ... and reference_compat (HoliTom's) is no PDrop setting
    with pytest.raises(ValueError, match=r"unknown pdrop settings \['reference_compat'\]"):
        holitom.methods.get("pdrop").make_config({"reference_compat": True})
