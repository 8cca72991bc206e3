"""DyCoke: stage-1 frame plan and pruning by hand, counts at 32 frames, and stage 2 (decode-time pruning of the
visual cache) checked against transformers' own eager attention weights, per sequence, with merged prefixes."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import load, random_frames, video_prompt_ids

import holitom
from holitom.baselines.dycoke import dycoke_keep, dycoke_merge, dycoke_reference_frames, dycoke_token_count
from holitom.flops import method_flops
from holitom.hosts import host_for
from holitom.methods.dycoke import DyCokeConfig
from holitom.patch.decode import DecodePruner
from holitom.patch.qwen2 import InnerReduction, Stage

# ---------------------------------------------------------------------------------------------- stage 1


def test_frame_plan_pairs_quads_and_the_official_bound():
    assert dycoke_reference_frames(8) == [-1, 0, 0, 2, -1, 4, 4, 6]  # every quad
    assert dycoke_reference_frames(8, all_quads=False) == [-1, 0, 0, 2, -1, 4, -1, 6]  # official: i < F − 4
    assert dycoke_reference_frames(5) == [-1, 0, 0, 2, 3]  # odd: the last frame pruned against the one before
    assert dycoke_reference_frames(2) == [-1, 0] and dycoke_reference_frames(1) == [-1]
    assert dycoke_reference_frames(3) == [-1, 0, 1]
    with pytest.raises(ValueError, match="num_frames=0"):
        dycoke_reference_frames(0)


def test_counts_at_32_frames():
    assert dycoke_keep(196, 0.7) == 58  # int(0.30000000000000004 · 196 = 58.8)
    assert dycoke_keep(196, 0.3) == 137 and dycoke_keep(196, 1.0) == 0 and dycoke_keep(196, 0.0) == 196
    assert dycoke_token_count(32, 196, 1.0) == 1568 == 32 * 196 // 4  # the paper's 25 %: the anchor frames
    assert dycoke_token_count(32, 196, 1.0, all_quads=False) == 1764  # official bound: 9 whole frames
    assert dycoke_token_count(32, 196, 0.7, all_quads=False) == 3098  # the official default
    assert dycoke_token_count(32, 196, 0.7) == 8 * 196 + 24 * 58


def _unit(angles: list[float]) -> torch.Tensor:
    return torch.tensor([[math.cos(a), math.sin(a)] for a in angles])


def test_pruned_frames_keep_their_least_similar_positions_in_similarity_order():
    # F = 8, N = 4, K = 0.5 → keep 2. Frame 1 against frame 0 has cosines [0.9, 0.2, 0.5, 0.1] per position.
    base = _unit([0.0, 0.0, 0.0, 0.0])
    frames = torch.stack([base] * 8)
    frames[1] = _unit([math.acos(c) for c in (0.9, 0.2, 0.5, 0.1)])
    tokens, frame_ids, positions = dycoke_merge(frames, prune=0.5)
    per_frame = {f: positions[frame_ids == f].tolist() for f in range(8)}
    assert per_frame[1] == [3, 1]  # the two least similar, least similar first
    assert per_frame[0] == per_frame[4] == [0, 1, 2, 3]  # anchors whole
    assert [len(per_frame[f]) for f in range(8)] == [4, 2, 2, 2, 4, 2, 2, 2]
    assert torch.equal(tokens, frames[frame_ids, positions])  # exact copies, nothing averaged
    _, _, by_position = dycoke_merge(frames, prune=0.5, order="position")
    assert by_position[4:6].tolist() == [1, 3]


def test_stage_one_keeps_everything_in_order_at_k_zero_and_checks_inputs():
    x = torch.randn(6, 9, 5, generator=torch.Generator().manual_seed(0))
    tokens, _, _ = dycoke_merge(x, prune=0.0, order="position")
    assert torch.equal(tokens, x.reshape(-1, 5))
    assert dycoke_merge(x, prune=0.0)[0].shape == (54, 5)  # similarity order: a permutation per pruned frame
    with pytest.raises(ValueError, match="order='random'"):
        dycoke_merge(x, 0.5, order="random")
    with pytest.raises(ValueError, match=r"expected a floating \(F, N, C\) tensor"):
        dycoke_merge(x[0], 0.5)
    with pytest.raises(ValueError, match=r"DyCokeConfig.dycoke_prune=1.5: must be in \[0, 1\]"):
        DyCokeConfig(dycoke_prune=1.5)


def test_paper_cell_and_official_default_flops():
    assert round(method_flops("ov-7b", method="dycoke").tflops, 2) == 8.71
    official = method_flops("ov-7b", method="dycoke", dycoke_prune=0.7, dycoke_all_quads=False)
    assert (official.n_visual_in, round(official.tflops, 2)) == (3098, 18.16)


# ---------------------------------------------------------------------------------------------- stage 2

SETTINGS = {"dycoke_prune": 0.5, "dycoke_layer": 2, "dycoke_decode_prune": 0.5}


def _expected_drops(model, ids, frames, generated, layer):
    """Independent reference: transformers' eager attention weights of layer L−1 for the decode step after
    `generated`, averaged over heads → the candidates not among the top int(n·(1−p))."""
    holitom.apply_method(model, "dycoke", **(SETTINGS | {"dycoke_decode_prune": 0.0}))  # stage 1 only
    with torch.no_grad():
        first = model(input_ids=ids, images=[frames], modalities=["video"], use_cache=True)
        (start, length), = model.sequence_state.visual_spans[0]
        step = model(input_ids=generated[:, :1], past_key_values=first.past_key_values, use_cache=True, output_attentions=True)
    row = step.attentions[layer - 1][0, :, -1].mean(0)
    candidates = torch.arange(start, start + length - 2)
    scores = row[candidates]
    kept = torch.sort(scores, descending=True, stable=True).indices[: int(candidates.numel() * 0.5)]
    dropped = torch.ones(candidates.numel(), dtype=torch.bool)
    dropped[kept] = False
    return set(candidates[dropped].tolist())


def test_decode_masks_drop_exactly_the_least_attended_candidates(tiny_ov):
    tokenizer, model, _, _ = load(tiny_ov, attn_implementation="eager")
    ids, frames = video_prompt_ids(tokenizer), random_frames(4, seed=6)
    holitom.apply_method(model, "dycoke", **SETTINGS)
    seen = []

    def capture(_module, _args, kwargs):
        mask = kwargs.get("attention_mask")
        if kwargs["hidden_states" if "hidden_states" in kwargs else "position_ids"].shape[-1] == 1 and mask is not None:
            seen.append(mask.clone())

    handle = model.get_model().layers[2].register_forward_pre_hook(capture, with_kwargs=True)
    with torch.no_grad():
        generated = model.generate(ids, images=[frames], modalities=["video"], max_new_tokens=3, min_new_tokens=3, do_sample=False)
    handle.remove()
    stats = holitom.stats(model).decode
    assert stats["layer"] == 2 and stats["steps"] == 2 and stats["pruned_steps"] >= 1  # the first step always prunes
    (start, length), = model.sequence_state.visual_spans[0]
    assert stats["candidates"] == length - 2 and stats["kept"] == int((length - 2) * 0.5)
    first_mask = seen[0][0, 0, -1]
    blocked = set((first_mask == float("-inf")).nonzero().flatten().tolist())
    assert blocked == _expected_drops(model, ids, frames, generated, layer=2)
    assert not blocked & {start + length - 2, start + length - 1}  # the last visual token and the newline stay


def test_a_step_that_barely_changes_keeps_the_whole_cache_and_state_resets_per_sequence(ov_model):
    tokenizer, model, _, _ = ov_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(3, seed=2)
    outputs = {}
    for name, extra in (("never", {"dycoke_threshold": -2.0}), ("off", {"dycoke_decode_prune": 0.0}), ("always", {"dycoke_threshold": 2.0})):
        holitom.apply_method(model, "dycoke", **(SETTINGS | extra))
        with torch.no_grad():
            outputs[name] = model.generate(ids, images=[frames], modalities=["video"], max_new_tokens=4, min_new_tokens=4, do_sample=False)
        if name != "off":
            stats = holitom.stats(model).decode
            # the first step's "previous similarity" is 0, so a threshold ≤ 0 never prunes and 2.0 always does
            assert stats["steps"] == 3 and stats["pruned_steps"] == (0 if name == "never" else 3)
    assert torch.equal(outputs["never"], outputs["off"])  # no step pruned: exactly stage 1 alone
    # a second sequence starts over: its first step prunes again and the counts restart
    with torch.no_grad():
        model.generate(ids, images=[frames], modalities=["video"], max_new_tokens=2, min_new_tokens=2, do_sample=False)
    assert holitom.stats(model).decode["steps"] == 1


def test_the_first_token_never_changes(ov_model):
    tokenizer, model, _, _ = ov_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(3, seed=4)
    firsts = []
    for p in (0.0, 0.9):
        holitom.apply_method(model, "dycoke", **(SETTINGS | {"dycoke_decode_prune": p}))
        with torch.no_grad():
            firsts.append(model.generate(ids, images=[frames], modalities=["video"], max_new_tokens=1, do_sample=False))
    assert torch.equal(firsts[0], firsts[1])


def test_decode_pruning_with_a_merged_prefix_maps_positions_per_layer(ov_model):
    """Layers ≥ K hold only the survivors of an inner merge: masks follow each layer's own cache."""
    tokenizer, model, _, _ = ov_model
    ids, frames = video_prompt_ids(tokenizer), random_frames(3, seed=1)
    host = host_for(model)
    merge = InnerReduction(host, [Stage(2, lambda h, s, n: (torch.arange(0, h.shape[0], 2), h[::2]), 1)], "merge")

    def candidates(state):
        (start, length), = state.visual_spans[0]
        return torch.arange(start, start + length - 2)

    pruner = DecodePruner(host, 1, 0.5, 2.0, candidates, cache_positions=merge.cache_positions)
    lengths = {}

    def capture(index):
        def hook(_module, args, kwargs):
            mask = kwargs.get("attention_mask")
            if args and args[0].shape[1] == 1 and mask is not None:
                lengths.setdefault(index, (mask.shape[-1], int((mask == float("-inf")).sum())))

        return hook

    handles = [model.get_model().layers[i].register_forward_pre_hook(capture(i), with_kwargs=True) for i in (1, 3)]
    try:
        with torch.no_grad():
            out = model(input_ids=ids, images=[frames], modalities=["video"], use_cache=True)
            full, short = out.past_key_values.layers[0].keys.shape[-2], out.past_key_values.layers[3].keys.shape[-2]
            step = model(input_ids=out.logits[:, -1:].argmax(-1), past_key_values=out.past_key_values, use_cache=True)
    finally:
        for handle in handles:
            handle.remove()
        merge.remove()
        pruner.remove()
    assert short < full and torch.isfinite(step.logits).all()
    assert lengths[1][0] == full + 1 and lengths[3][0] == short + 1  # each layer's own cache length
    dropped = pruner._drop
    assert lengths[1][1] == dropped.numel()  # layer 1 holds every candidate
    assert lengths[3][1] == int(torch.isin(dropped, merge.cache_positions(3)).sum())  # only the survivors


def test_flash_attention_is_refused_with_a_clear_message(ov_model):
    _, model, _, _ = ov_model
    model.config._attn_implementation = "flash_attention_2"
    try:
        with pytest.raises(ValueError, match="dycoke: decode-time pruning masks keys, which flash attention cannot do"):
            holitom.apply_method(model, "dycoke", **SETTINGS)
    finally:
        model.config._attn_implementation = "sdpa"
