"""The methods on transformers' Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`), on a tiny random checkpoint in
Qwen's published layout (`holitom make-tiny --kind qwen2.5-vl`).

The proofs: identity settings give the unmodified model's logits and `remove` gives it back bit for bit; every
token the LM gets after compression carries the (t, h, w) M-RoPE position it has in the UNREDUCED prompt (kept,
static and merged tokens alike, checked by hand from the grid), text after the video keeps the unreduced
numbering, inner cuts gather the survivors' cos/sin rows, and generation equals a manual prefill + decode loop.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import holitom
from holitom.hosts.base import VideoTokens
from holitom.hosts.qwen_vision import patchify_video, pooled_received, preprocess_video, smart_resize
from llava.model.cache_compat import CACHE_KEYWORD, output_cache

QUESTION = "What happens in this video?"


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory) -> str:
    from holitom.tools.tiny import make_tiny

    return make_tiny(str(tmp_path_factory.mktemp("tiny_qwen")), kind="qwen2.5-vl")


@pytest.fixture(scope="module")
def qwen(tiny_qwen):
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen, dtype=torch.float32).eval()
    return AutoTokenizer.from_pretrained(tiny_qwen), model


@pytest.fixture(autouse=True)
def _vanilla(qwen):
    yield
    holitom.remove(qwen[1])


def frames_of(count: int, height: int = 56, width: int = 84, seed: int = 0, drift: float = 0.05) -> torch.Tensor:
    """Normalised frames (T, 3, H, W): one random picture with a small per-frame drift (temporally similar)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, height, width, generator=gen) * 2 - 1
    return base + drift * (torch.rand(count, 3, height, width, generator=gen) * 2 - 1)


def inputs_for(tokenizer, model, frames: torch.Tensor, tiny_dir: str) -> dict[str, torch.Tensor]:
    """What Qwen's processor would return for one video and the question: the chat prompt with t·h·w/4 video
    placeholders, mm_token_type_ids, the patch rows and their grid."""
    template = json.loads((Path(tiny_dir) / "chat_template.json").read_text())["chat_template"]
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    prompt = tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True, tokenize=False)
    pixels, grid = patchify_video(frames)
    prompt = prompt.replace("<|video_pad|>", "<|video_pad|>" * (grid[0] * grid[1] * grid[2] // 4))
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    types = 2 * (ids == model.config.video_token_id).to(torch.int)
    return {"input_ids": ids, "mm_token_type_ids": types, "pixel_values_videos": pixels, "video_grid_thw": torch.tensor([grid])}


def record_lm_inputs(model) -> tuple[list[dict], object]:
    """Every call of the text model: its position_ids and length."""
    seen: list[dict] = []

    def hook(module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        seen.append({"position_ids": kwargs.get("position_ids"), "length": embeds.shape[1]})

    return seen, model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)


def record_compressor(model) -> list[VideoTokens]:
    """Wrap the installed compressor so that its outputs (tokens with their origins) are kept."""
    from holitom.hosts import host_for

    host = host_for(model)
    inner, outputs = host.video_compressor, []

    def compressor(pooled):
        out = inner(pooled)
        outputs.append(out)
        return out

    host.video_compressor = compressor
    host.method_slot["installation"].compressor = compressor
    return outputs


# ---------------------------------------------------------------------------------------------- the checkpoint


def test_make_tiny_writes_qwens_published_layout_loadable_by_from_pretrained(tiny_qwen):
    from transformers import AutoConfig, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    raw = json.loads((Path(tiny_qwen) / "config.json").read_text())
    assert raw["model_type"] == "qwen2_5_vl" and "text_config" not in raw and raw["rope_scaling"]["type"] == "mrope"
    assert raw["vision_config"]["fullatt_block_indexes"][-1] == raw["vision_config"]["depth"] - 1
    names = json.loads((Path(tiny_qwen) / "model.safetensors.index.json").read_text())["weight_map"]
    assert "visual.blocks.0.attn.qkv.weight" in names and "model.layers.0.self_attn.q_proj.weight" in names
    assert "lm_head.weight" in names and not any(n.startswith("model.language_model.") for n in names)
    for name in ("chat_template.json", "preprocessor_config.json", "tokenizer.json", "vocab.json", "merges.txt"):
        assert (Path(tiny_qwen) / name).is_file(), name
    model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen)
    config = AutoConfig.from_pretrained(tiny_qwen)
    for token, key in (("<|video_pad|>", "video_token_id"), ("<|image_pad|>", "image_token_id"), ("<|vision_start|>", "vision_start_token_id")):
        assert tokenizer.convert_tokens_to_ids(token) == getattr(config, key)
    assert model.config.text_config.num_hidden_layers == 4


# ---------------------------------------------------------------------------------------------- identity, remove


IDENTITY = [
    ("vanilla", {}),
    ("holitom", {"retain_ratio": 1.0, "max_window_size": 1, "merge_layer": None}),
    ("holitom", {"retain_ratio": 1.0, "max_window_size": 1, "merge_layer": 2, "merge_ratio": 0.0}),
    ("visionzip", {"retain_ratio": 1.0}),
    ("fastv", {"fastv_layer": 2, "fastv_keep": 1.0}),
    ("pdrop", {"pdrop_layers": (1, 2, 3), "pdrop_lambda": 1.0}),
]
REDUCING = [
    ("holitom", {"retain_ratio": 0.25, "merge_layer": 2, "contextual_share": 0.3}),
    ("holitom", {"retain_ratio": 0.25, "merge_layer": 2, "reference_compat": True}),
    ("visionzip", {"retain_ratio": 0.25}),
    ("fastv", {"fastv_layer": 2, "fastv_keep": 0.25}),
    ("pdrop", {"pdrop_layers": (1, 2, 3), "pdrop_lambda": 0.5}),
]


def test_identity_settings_give_the_unmodified_logits_and_remove_restores_them_bit_exactly(qwen, tiny_qwen):
    tokenizer, model = qwen
    inputs = inputs_for(tokenizer, model, frames_of(8), tiny_qwen)
    modules = [model, model.model.visual, *model.model.visual.blocks, *model.model.language_model.layers]

    def hooks():
        return [(dict(m._forward_pre_hooks), dict(m._forward_hooks)) for m in modules]

    before = hooks()
    with torch.no_grad():
        vanilla = model(**inputs).logits
        for name, settings in IDENTITY:
            holitom.apply_method(model, name, **settings)
            same = model(**inputs).logits
            assert same.shape == vanilla.shape, name
            assert (same - vanilla).abs().max() <= 1e-5, name
            assert holitom.stats(model).visual_after == holitom.stats(model).visual_tokens == 24
            holitom.remove(model)
            assert hooks() == before and "generate" not in model.__dict__
            assert torch.equal(model(**inputs).logits, vanilla), name
        for name, settings in REDUCING:
            holitom.apply_method(model, name, **settings)
            model(**inputs)
            assert holitom.stats(model).visual_after < 24, name
            holitom.remove(model)
            assert torch.equal(model(**inputs).logits, vanilla), name


# ---------------------------------------------------------------------------------------------- positions


def half_moving(count: int = 8, seed: int = 0) -> torch.Tensor:
    """(T, 3, 56, 112) normalised frames whose left half stays and whose right half changes every frame: on the
    2×4 token grid of a temporal patch, columns 0–1 are static across the video, columns 2–3 dynamic."""
    gen = torch.Generator().manual_seed(seed)
    frames = (torch.rand(1, 3, 56, 112, generator=gen) * 2 - 1).repeat(count, 1, 1, 1)
    frames[..., 56:] = torch.rand(count, 3, 56, 56, generator=gen) * 2 - 1
    return frames


def test_every_kept_token_keeps_its_unreduced_mrope_position_and_text_continues_the_unreduced_numbering(qwen, tiny_qwen):
    tokenizer, model = qwen
    inputs = inputs_for(tokenizer, model, half_moving(), tiny_qwen)  # grid (4, 4, 8): 4 temporal patches of 2×4
    ids = inputs["input_ids"][0]
    video = (ids == model.config.video_token_id).nonzero().flatten()
    start, run = int(video[0]), video.numel()
    assert run == 32 and torch.equal(video, torch.arange(start, start + 32))
    full, _ = model.model.get_rope_index(
        inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"]
    )
    # the unreduced numbering by hand: text 0..start−1; video (start + 2·t, start + row, start + col) with
    # tokens_per_second·second_per_grid = 2·1; text after it from start + max(h, w)/2 = start + 4 (transformers 5's
    # rule: the video's spatial extent, whatever its temporal one)
    t, row, col = torch.arange(32) // 8, (torch.arange(32) % 8) // 4, torch.arange(32) % 4
    assert torch.equal(full[:, 0, :start], torch.arange(start).expand(3, -1))
    assert torch.equal(full[:, 0, start : start + 32], torch.stack([start + 2 * t, start + row, start + col]))
    after = torch.arange(ids.numel() - start - 32) + start + 4
    assert torch.equal(full[:, 0, start + 32 :], after.expand(3, -1))

    holitom.apply_method(model, "holitom", retain_ratio=0.25, tau=0.8, contextual_share=0.5, merge_layer=None)
    outputs = record_compressor(model)
    seen, handle = record_lm_inputs(model)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    (out,) = outputs
    # one window over the 4 temporal patches: the 4 static positions merge into round(4·ρ') = 2 tokens (DPC-KNN
    # centres, frame 0); per temporal patch ⌈4·ρ'⌉ = 2 dynamic tokens: 1 dominant + 1 merged (contextual)
    stats = holitom.stats(model).outer[0]
    assert (stats["segments"], stats["reduced"], stats["adjusted_ratio"]) == (1, 12, 0.4)
    assert (stats["static"], stats["dynamic"], out.tokens.shape[0]) == (2, 8, 10)
    assert out.frames.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert set(out.positions[:2].tolist()) <= {0, 1, 4, 5} and set(out.positions[2:].tolist()) <= {2, 3, 6, 7}
    kept = out.tokens.shape[0]
    positions = seen[0]["position_ids"][:, 0]
    assert seen[0]["length"] == ids.numel() - 32 + kept == positions.shape[1]
    # every video token of the short prompt: the unreduced position of the token it came from
    origin = start + out.frames * 8 + out.positions
    assert torch.equal(positions[:, start : start + kept], full[:, 0, origin])
    # by hand from its grid origin: (start + 2·frame, start + index // 4, start + index % 4)
    by_hand = torch.stack([start + 2 * out.frames, start + out.positions // 4, start + out.positions % 4])
    assert torch.equal(positions[:, start : start + kept], by_hand)
    assert torch.equal(positions[:, :start], full[:, 0, :start])
    assert torch.equal(positions[:, start + kept :], full[:, 0, start + 32 :])  # the unreduced numbering
    # decoding continues it: the cache holds the short prompt, the deltas add back what was removed
    assert int(model.model.rope_deltas) + positions.shape[1] == int(full.max()) + 1


def test_inner_cut_gathers_the_survivors_cos_sin_rows(qwen, tiny_qwen):
    tokenizer, model = qwen
    inputs = inputs_for(tokenizer, model, frames_of(8), tiny_qwen)
    holitom.apply_method(model, "holitom", retain_ratio=0.5, merge_layer=2, merge_ratio=0.5)
    layers = model.model.language_model.layers
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(index):
        return lambda module, args, kwargs: seen.__setitem__(index, kwargs["position_embeddings"])

    handles = [layers[i].register_forward_pre_hook(keep(i), with_kwargs=True) for i in (0, 2)]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    survivors = holitom.hosts.host_for(model).sequence.survivors
    stage = holitom.stats(model).stages[0]
    assert stage["visual_kept"] == round(stage["visual_in"] * (1 - 0.5))
    assert survivors.numel() == seen[0][0].shape[1] - (stage["visual_in"] - stage["visual_kept"])
    for full, cut in zip(seen[0], seen[2]):
        assert torch.equal(cut, full[:, survivors])


# ---------------------------------------------------------------------------------------------- generation


@pytest.mark.parametrize(("name", "settings"), REDUCING + [("vanilla", {})], ids=lambda v: str(v))
def test_generate_equals_a_manual_prefill_and_decode_loop(qwen, tiny_qwen, name, settings):
    tokenizer, model = qwen
    inputs = inputs_for(tokenizer, model, frames_of(8, seed=3), tiny_qwen)
    holitom.apply_method(model, name, **settings)
    steps = 5
    seen, handle = record_lm_inputs(model)
    try:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=steps, do_sample=False, min_new_tokens=steps)
            generated = seen[:]
            seen.clear()
            prompt = inputs["input_ids"]
            assert torch.equal(out[:, : prompt.shape[1]], prompt)  # the caller's prompt, not the shortened one
            result = model(**inputs, use_cache=True)
            tokens = [int(result.logits[0, -1].argmax())]
            cache = output_cache(result)
            for _ in range(steps - 1):
                result = model(input_ids=torch.tensor([[tokens[-1]]]), use_cache=True, **{CACHE_KEYWORD: cache})
                tokens.append(int(result.logits[0, -1].argmax()))
                cache = output_cache(result)
    finally:
        handle.remove()
    assert out[0, prompt.shape[1] :].tolist() == tokens
    # both continue the unreduced numbering: the first new token sits right after the prompt's largest position
    full, _ = model.model.get_rope_index(
        prompt, mm_token_type_ids=inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"]
    )
    first_new = int(full.max()) + 1
    decode = generated[1]["position_ids"]
    assert decode.shape[-1] == 1 and decode[-3:].flatten().tolist() == [first_new] * 3
    if name != "vanilla" and name not in ("fastv", "pdrop"):
        assert holitom.stats(model).visual_tokens < 24


# ---------------------------------------------------------------------------------------------- counts


def test_token_counts_by_hand_for_two_resolutions(qwen, tiny_qwen):
    tokenizer, model = qwen
    # preprocessing: smart_resize with the tiny checkpoint's pixel bounds (56², 112²), factor 28
    assert smart_resize(56, 84, 28, 56 * 56, 112 * 112) == (56, 84)  # already multiples: 2×3 tokens
    # 100×150: rounded 112×140 = 15680 px > 12544 → β = √(15000/12544); ⌊100/β/28⌋·28 = 84, ⌊150/β/28⌋·28 = 112
    assert smart_resize(100, 150, 28, 56 * 56, 112 * 112) == (84, 112)  # 3×4 tokens
    uint8 = torch.randint(0, 256, (6, 100, 150, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    pixels, grid = preprocess_video(uint8, min_pixels=56 * 56, max_pixels=112 * 112)
    assert grid == [3, 6, 8] and pixels.shape == (3 * 6 * 8, 3 * 2 * 14 * 14)
    cases = [(frames_of(6, 56, 84, seed=4), 3, 6), (frames_of(6, 84, 112, seed=5), 3, 12)]
    for frames, temporal, per_patch in cases:
        inputs = inputs_for(tokenizer, model, frames, tiny_qwen)
        assert inputs["video_grid_thw"].tolist()[0][0] == temporal
        # τ > 1: no temporal window; ρ = 0.5 keeps ⌈N·0.5⌉ tokens per temporal patch
        with pytest.warns(UserWarning, match="temporal merging is off"):
            holitom.apply_method(model, "holitom", retain_ratio=0.5, tau=1.5, merge_layer=2, merge_ratio=0.5)
        with torch.no_grad():
            model(**inputs)
        stats = holitom.stats(model)
        kept = temporal * math.ceil(per_patch * 0.5)
        assert (stats.pooled_tokens, stats.visual_tokens) == (temporal * per_patch, kept)
        # inner: round(n·(1 − r)) kept, Python's round (9 → round(4.5) = 4)
        assert stats.stages == [{"layer": 2, "visual_in": kept, "visual_kept": round(kept * (1 - 0.5))}]
        assert stats.prompt_tokens == inputs["input_ids"].shape[1] - temporal * per_patch + kept
        holitom.apply_method(model, "visionzip", retain_ratio=0.25)
        with torch.no_grad():
            model(**inputs)
        assert holitom.stats(model).visual_tokens == temporal * math.ceil(per_patch * 0.25)


def test_an_odd_frame_count_repeats_the_last_frame_as_transformers_processor_does(qwen, tiny_qwen):
    tokenizer, model = qwen
    frames = frames_of(5)
    pixels, grid = patchify_video(frames)
    padded, padded_grid = patchify_video(torch.cat([frames, frames[-1:]]))
    assert grid == padded_grid == [3, 4, 6] and torch.equal(pixels, padded)
    inputs = inputs_for(tokenizer, model, frames, tiny_qwen)
    holitom.apply_method(model, "holitom", retain_ratio=0.5, merge_layer=None)
    with torch.no_grad():
        model(**inputs)
    stats = holitom.stats(model)
    assert stats.pooled_tokens == 3 * 6 and stats.outer[0]["frames"] == 3


# ---------------------------------------------------------------------------------------------- the probe


def test_probe_pools_each_merge_group_and_undoes_the_window_order():
    # grid (1, 4, 6): merged 2×3; windows of 2×2 merged tokens → window order [0, 1, 3, 4, 2, 5] (the tower's)
    window = torch.tensor([0, 1, 3, 4, 2, 5])
    per_group = torch.tensor([10.0, 11, 13, 14, 12, 15])  # in window order: group g holds 10 + g
    patches = (per_group[:, None] + torch.tensor([-1.0, 1, -2, 2])).reshape(-1)  # four patches each, mean 10 + g
    (scores,) = pooled_received(patches, window, torch.tensor([[1, 4, 6]]), 4)
    assert torch.equal(scores, torch.tensor([[10.0, 11, 12, 13, 14, 15]]))


def test_probe_scores_equal_the_last_blocks_attention_computed_by_hand(qwen, tiny_qwen):
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen_module

    from holitom.hosts import host_for

    tokenizer, model = qwen
    inputs = inputs_for(tokenizer, model, frames_of(4), tiny_qwen)
    probe = host_for(model).attention_probe()
    captured = {}
    block = model.model.visual.blocks[-1]
    handle = block.register_forward_pre_hook(
        lambda m, args, kwargs: captured.update(hidden=args[0], rope=kwargs["position_embeddings"]), with_kwargs=True
    )
    try:
        with torch.no_grad():
            model.model.visual(inputs["pixel_values_videos"], grid_thw=inputs["video_grid_thw"])
        scores = probe.pop_pooled(2)
    finally:
        handle.remove()
        probe.remove()
    # by hand: per temporal patch, softmax(q kᵀ / √d) of every head, mean over heads and queries; groups of 4
    x = block.norm1(captured["hidden"])
    q, k, _ = block.attn.qkv(x).reshape(x.shape[0], 3, 2, -1).permute(1, 0, 2, 3).unbind(0)
    q, k = qwen_module.apply_rotary_pos_emb_vision(q, k, *captured["rope"])
    expected = []
    for t in range(2):
        rows = slice(24 * t, 24 * (t + 1))
        probs = torch.softmax(torch.einsum("qhd,khd->hqk", q[rows], k[rows]) * block.attn.scaling, dim=-1)
        expected.append(probs.mean(dim=(0, 1)).view(6, 4).mean(dim=1))
    window = torch.tensor([0, 1, 3, 4, 2, 5])  # per temporal patch, as above
    expected = torch.stack([e[torch.argsort(window)] for e in expected])
    torch.testing.assert_close(scores, expected, atol=1e-6, rtol=1e-5)
    assert torch.allclose(scores.sum(dim=1) * 4, torch.ones(2), atol=1e-5)  # each patch's 24 scores sum to 1


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_input_gives_one_line(qwen, tiny_qwen):
    tokenizer, model = qwen

    def one_line(error: pytest.ExceptionInfo) -> str:
        text = str(error.value)
        assert "\n" not in text
        return text

    with pytest.raises(ValueError, match="smaller than one 14×14 patch") as error:
        preprocess_video(torch.zeros(2, 10, 10, 3, dtype=torch.uint8))
    one_line(error)
    with pytest.raises(ValueError, match="smaller than one 28×28 merged patch") as error:
        patchify_video(torch.zeros(2, 3, 14, 28))
    one_line(error)
    inputs = inputs_for(tokenizer, model, frames_of(4), tiny_qwen)
    holitom.apply_method(model, "holitom", retain_ratio=0.5, merge_layer=None)
    bad = {**inputs, "video_grid_thw": torch.tensor([[2, 1, 24]])}
    with pytest.raises(ValueError, match="smaller than one 2×2 merged patch") as error, torch.no_grad():
        model(**bad)
    one_line(error)
    with pytest.raises(ValueError, match="beyond this 4-layer LM") as error:
        holitom.apply_method(model, "holitom", merge_layer=4)
    one_line(error)
    for name in ("dycoke", "prunevid", "fastvid"):
        with pytest.raises(ValueError, match=f"{name} cannot run on Qwen2_5_VLForConditionalGeneration") as error:
            holitom.apply_method(model, name)
        assert "vanilla, holitom, visionzip, fastv, pdrop" in one_line(error)


# ---------------------------------------------------------------------------------------------- preprocessing


def test_preprocessing_without_torchvision_equals_transformers_qwen_image_processor():
    """transformers' PIL image processor (it needs no torchvision) treats an image as one temporal patch of two
    equal frames: our rescale + normalise + patchify give its pixel values bit for bit, and our smart_resize its
    sizes. (Its video processor needs torchvision; the layout is the same `patchify`.)"""
    import numpy as np
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as theirs

    image = np.random.default_rng(0).integers(0, 256, (84, 112, 3), dtype=np.uint8)
    processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
    expected = processor(images=[image], return_tensors="pt", do_resize=False)
    pixels, grid = preprocess_video(torch.from_numpy(image)[None].repeat(2, 1, 1, 1), min_pixels=56 * 56, max_pixels=112 * 112)
    assert expected["image_grid_thw"].tolist() == [grid] == [[1, 6, 8]]
    assert torch.equal(pixels, expected["pixel_values"])
    sizes = [(h, w) for h in range(14, 400, 7) for w in range(14, 400, 11)]
    assert all(smart_resize(h, w, 28, 56 * 56, 112 * 112) == theirs(h, w, 28, 56 * 56, 112 * 112) for h, w in sizes)


def test_qwen_shape_rows_count_tokens_from_the_resolution_and_feed_the_flops_accounting():
    from holitom.flops import layer_flops, method_flops
    from holitom.shapes import QWEN_SHAPES

    shape = QWEN_SHAPES["qwen2.5-vl-7b"]
    assert (shape.num_layers, shape.hidden, shape.ffn) == (28, 3584, 18944)
    assert shape.grid(32, 448, 448) == (16, 16, 16)  # 448 = 16·28, within [128·28², 768·28²]: 256 tokens per patch
    # 720×1280 → 728×1288 = 937664 px > 602112 → β = √(921600/602112); ⌊720/β/28⌋ = 20, ⌊1280/β/28⌋ = 36
    assert shape.grid(33, 720, 1280) == (17, 20, 36)  # 33 frames: the last repeated, 17 temporal patches
    vanilla = method_flops(shape.model_shape(32, 448, 448), method="vanilla")
    assert vanilla.schedule == ((0, 4096),) and vanilla.flops == 28 * layer_flops(4096, 3584, 18944)
    cell = method_flops(shape.model_shape(32, 448, 448), method="holitom", retain_ratio=0.10, merge_layer=18, merge_ratio=0.5)
    # 16 temporal patches × ⌈256·0.1⌉ = 416 tokens; round(416·0.5) = 208 from layer 18
    assert cell.schedule == ((0, 416), (18, 208))
    assert cell.flops == 18 * layer_flops(416, 3584, 18944) + 10 * layer_flops(208, 3584, 18944)
    assert round(cell.tflops, 1) == 1.8 and round(vanilla.tflops, 1) == 24.8
