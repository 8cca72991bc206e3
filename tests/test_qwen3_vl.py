"""The methods on transformers' dense Qwen3-VL (`Qwen3VLForConditionalGeneration`), on a tiny random checkpoint in
Qwen's published layout (`holitom make-tiny --kind qwen3-vl`).

The proofs: identity settings (outer and inner) give the unmodified model's logits and `remove` gives it back bit
for bit; the
prompt with a `<t seconds>` timestamp and a vision start/end pair per temporal patch is written by hand, and after
compression every temporal patch's run holds exactly its kept tokens, its timestamp stays (also when all its
tokens merged away), and every token keeps the M-RoPE position it has in the UNREDUCED prompt (checked by hand);
the deepstack rows the text model gets are the same keep / mean / β-merge of the unreduced rows as the tokens;
generation equals a manual prefill + decode loop (inner cuts included); the decoder scoring of the inner cuts is
the attention row transformers computes (q_norm / k_norm before RoPE); an inner cut gathers the survivors' cos/sin
rows; methods that cannot run, and cuts before the deepstack layers end, are refused in one line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import holitom
from holitom.hosts.base import VideoTokens
from holitom.hosts.qwen_vision import patchify_video
from holitom.outer import DOMINANT, apply_merge_plan, compress_video_with_info
from llava.model.cache_compat import CACHE_KEYWORD, output_cache

QUESTION = "What happens in this video?"
FPS = 2.0
N = 6  # tokens per temporal patch of a 64×96 video: (64/16/2)·(96/16/2) = 2·3


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory) -> str:
    from holitom.tools.tiny import make_tiny

    return make_tiny(str(tmp_path_factory.mktemp("tiny_qwen3")), kind="qwen3-vl")


@pytest.fixture(scope="module")
def qwen3(tiny_qwen3):
    from transformers import AutoTokenizer, Qwen3VLForConditionalGeneration

    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_qwen3, dtype=torch.float32).eval()
    return AutoTokenizer.from_pretrained(tiny_qwen3), model


@pytest.fixture(autouse=True)
def _vanilla(qwen3):
    yield
    holitom.remove(qwen3[1])


def frames_of(count: int, height: int = 64, width: int = 96, seed: int = 0, drift: float = 0.05) -> torch.Tensor:
    """Normalised frames (T, 3, H, W): one random picture with a small per-frame drift (temporally similar)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, height, width, generator=gen) * 2 - 1
    return base + drift * (torch.rand(count, 3, height, width, generator=gen) * 2 - 1)


def half_moving(count: int = 8, seed: int = 0) -> torch.Tensor:
    """(T, 3, 64, 96) normalised frames whose left third stays and whose right two thirds change every frame: on
    the 2×3 token grid of a temporal patch, column 0 is static across the video, columns 1–2 dynamic."""
    gen = torch.Generator().manual_seed(seed)
    frames = (torch.rand(1, 3, 64, 96, generator=gen) * 2 - 1).repeat(count, 1, 1, 1)
    frames[..., 32:] = torch.rand(count, 3, 64, 64, generator=gen) * 2 - 1
    return frames


def timestamps(temporal: int, fps: float = FPS) -> list[str]:
    """Qwen3-VL's text per temporal patch: the mean time of its two frames, `<x.x seconds>`."""
    return [f"<{(2 * f / fps + (2 * f + 1) / fps) / 2:.1f} seconds>" for f in range(temporal)]


def inputs_for(tokenizer, model, frames: torch.Tensor, tiny_dir: str) -> dict[str, torch.Tensor]:
    """The prompt Qwen3-VL's processor writes, by hand: per temporal patch its timestamp, <|vision_start|>, its
    h·w/4 placeholders, <|vision_end|>; mm_token_type_ids, the patch rows and their grid."""
    template = json.loads((Path(tiny_dir) / "chat_template.json").read_text())["chat_template"]
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    prompt = tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True, tokenize=False)
    pixels, grid = patchify_video(frames, patch=16)
    per_patch = grid[1] * grid[2] // 4
    video = "".join(f"{stamp}<|vision_start|>{'<|video_pad|>' * per_patch}<|vision_end|>" for stamp in timestamps(grid[0]))
    prompt = prompt.replace("<|vision_start|><|video_pad|><|vision_end|>", video)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    types = 2 * (ids == model.config.video_token_id).to(torch.int)
    return {"input_ids": ids, "mm_token_type_ids": types, "pixel_values_videos": pixels, "video_grid_thw": torch.tensor([grid])}


def record_text_model(model) -> tuple[list[dict], object]:
    """Every call of the text model (after the host's own pre-hook): its arguments."""
    seen: list[dict] = []

    def hook(module, args, kwargs):
        seen.append(dict(kwargs))

    return seen, model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)


def record_compressor(model) -> list[tuple[torch.Tensor, VideoTokens]]:
    """Wrap the installed compressor: keep its inputs (pooled) and outputs (tokens with their origins)."""
    from holitom.hosts import host_for

    host = host_for(model)
    inner, outputs = host.video_compressor, []

    def compressor(pooled):
        out = inner(pooled)
        outputs.append((pooled, out))
        return out

    host.video_compressor = compressor
    host.method_slot["installation"].compressor = compressor
    return outputs


def unreduced_deepstack(model, inputs) -> list[torch.Tensor]:
    """The model's own deepstack maps of the video, (t, N, d) each."""
    with torch.no_grad():
        out = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
    maps = [torch.cat(list(f)) if isinstance(f, (tuple, list)) else f for f in out.deepstack_features]
    return [m.view(-1, N, m.shape[-1]) for m in maps]


# ---------------------------------------------------------------------------------------------- the checkpoint


def test_make_tiny_writes_qwen3s_published_layout_loadable_by_from_pretrained(tiny_qwen3):
    from transformers import AutoConfig, AutoTokenizer, Qwen3VLForConditionalGeneration

    raw = json.loads((Path(tiny_qwen3) / "config.json").read_text())
    assert raw["model_type"] == "qwen3_vl" and raw["text_config"]["rope_scaling"]["mrope_interleaved"]
    assert raw["vision_config"]["deepstack_visual_indexes"] == [0, 2] and raw["vision_config"]["patch_size"] == 16
    names = json.loads((Path(tiny_qwen3) / "model.safetensors.index.json").read_text())["weight_map"]
    assert "model.visual.deepstack_merger_list.1.linear_fc2.weight" in names
    assert "model.language_model.layers.0.self_attn.q_norm.weight" in names and "lm_head.weight" in names
    model, info = Qwen3VLForConditionalGeneration.from_pretrained(tiny_qwen3, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    tokenizer, config = AutoTokenizer.from_pretrained(tiny_qwen3), AutoConfig.from_pretrained(tiny_qwen3)
    for token, key in (("<|video_pad|>", "video_token_id"), ("<|vision_start|>", "vision_start_token_id"), ("<|vision_end|>", "vision_end_token_id")):
        assert tokenizer.convert_tokens_to_ids(token) == getattr(config, key)


# ---------------------------------------------------------------------------------------------- identity, remove

# inner cuts at layers ≥ D = 2 (the tiny model's deepstack adds after decoder layers 0 and 1 of 4)
IDENTITY = [
    ("vanilla", {}),
    ("holitom", {"retain_ratio": 1.0, "max_window_size": 1, "merge_layer": None}),
    ("holitom", {"retain_ratio": 1.0, "max_window_size": 1, "merge_layer": 2, "merge_ratio": 0.0}),
    ("fastv", {"fastv_layer": 2, "fastv_keep": 1.0}),
    ("pdrop", {"pdrop_layers": (2, 3), "pdrop_lambda": 1.0}),
]
REDUCING = [
    ("holitom", {"retain_ratio": 0.25, "merge_layer": None, "contextual_share": 0.3}),
    ("holitom", {"retain_ratio": 0.25, "merge_layer": None, "reference_compat": True}),
]
INNER = [
    ("holitom", {"retain_ratio": 0.5, "merge_layer": 2, "merge_ratio": 0.5, "contextual_share": 0.3}),
    ("holitom", {"retain_ratio": 0.5, "merge_layer": 3, "merge_ratio": 0.5, "reference_compat": True}),
    ("fastv", {"fastv_layer": 2, "fastv_keep": 0.25}),
    ("pdrop", {"pdrop_layers": (2, 3), "pdrop_lambda": 0.5}),
]


def test_identity_settings_give_the_unmodified_logits_and_remove_restores_them_bit_exactly(qwen3, tiny_qwen3):
    tokenizer, model = qwen3
    inputs = inputs_for(tokenizer, model, frames_of(8), tiny_qwen3)
    modules = [model, model.model.visual, model.model.language_model, *model.model.visual.blocks, *model.model.language_model.layers]

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
            assert holitom.stats(model).visual_after == holitom.stats(model).visual_tokens == 4 * N
            assert all(s["visual_kept"] == s["visual_in"] == 4 * N for s in holitom.stats(model).stages), name
            holitom.remove(model)
            assert hooks() == before and "generate" not in model.__dict__
            assert torch.equal(model(**inputs).logits, vanilla), name
        for name, settings in REDUCING + INNER:
            holitom.apply_method(model, name, **settings)
            model(**inputs)
            assert holitom.stats(model).visual_after < 4 * N, name
            holitom.remove(model)
            assert torch.equal(model(**inputs).logits, vanilla), name


# ---------------------------------------------------------------------------------------------- timestamps, positions


def test_the_timestamped_prompt_by_hand_and_its_unreduced_positions(qwen3, tiny_qwen3):
    tokenizer, model = qwen3
    inputs = inputs_for(tokenizer, model, frames_of(8), tiny_qwen3)
    ids = inputs["input_ids"][0]
    config = model.config
    starts = (ids == config.vision_start_token_id).nonzero().flatten().tolist()
    ends = (ids == config.vision_end_token_id).nonzero().flatten().tolist()
    assert len(starts) == len(ends) == 4 and [e - s - 1 for s, e in zip(starts, ends)] == [N] * 4
    assert timestamps(4) == ["<0.2 seconds>", "<1.2 seconds>", "<2.2 seconds>", "<3.2 seconds>"]
    for f, stamp in enumerate(timestamps(4)):  # the text right before each vision start is the patch's timestamp
        stamp_ids = tokenizer(stamp).input_ids
        assert ids[starts[f] - len(stamp_ids) : starts[f]].tolist() == stamp_ids
    full, _ = model.model.get_rope_index(
        inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"]
    )
    # by hand: text counts up by one; a patch's tokens sit at (p, p + row, p + col) with p the position the run starts
    # at (t = 1 per patch: time is in the text), and the text after it continues at p + max(2, 3) = p + 3
    expected, p, i = [], 0, 0
    while i < ids.numel():
        if ids[i] == config.video_token_id:
            rows, cols = torch.arange(N) // 3, torch.arange(N) % 3
            expected.append(torch.stack([torch.full((N,), p), p + rows, p + cols]))
            p, i = p + 3, i + N
        else:
            expected.append(torch.full((3, 1), p))
            p, i = p + 1, i + 1
    assert torch.equal(full[:, 0], torch.cat(expected, dim=1))


def test_each_temporal_patch_keeps_its_own_tokens_its_timestamp_and_its_unreduced_positions(qwen3, tiny_qwen3):
    tokenizer, model = qwen3
    config = model.config
    inputs = inputs_for(tokenizer, model, half_moving(), tiny_qwen3)
    ids = inputs["input_ids"]
    full, _ = model.model.get_rope_index(ids, mm_token_type_ids=inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"])
    holitom.apply_method(model, "holitom", retain_ratio=0.5, tau=0.8, contextual_share=0.5, merge_layer=None)
    outputs = record_compressor(model)
    seen, handle = record_text_model(model)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    ((_, out),) = outputs
    positions = seen[0]["position_ids"][:, 0]
    mask = seen[0]["visual_pos_masks"][0]
    kept = out.tokens.shape[0]
    assert int(mask.sum()) == kept and positions.shape[1] == ids.shape[1] - 4 * N + kept
    # the shortened prompt by hand: every text token stays in order; patch f's run holds the tokens from patch f
    video = ids[0] == config.video_token_id
    text_ids = ids[0][~video]
    counts = iter(torch.bincount(out.frames, minlength=4).tolist())
    short_ids = []
    for token in text_ids.tolist():
        short_ids.append(token)
        if token == config.vision_start_token_id:  # patch f's run: as many placeholders as tokens from patch f
            short_ids += [config.video_token_id] * next(counts)
    assert torch.equal(mask, torch.tensor(short_ids) == config.video_token_id)
    assert torch.equal(seen[0]["inputs_embeds"][0][~mask], model.get_input_embeddings()(text_ids))
    # positions: text keeps its unreduced rows; a kept token from (patch f, index i) the unreduced row of that token
    order = torch.sort(out.frames, stable=True).indices
    placeholders = video.nonzero().flatten()
    origin = placeholders[out.frames[order] * N + out.positions[order]]
    assert torch.equal(positions[:, mask], full[:, 0, origin])
    assert torch.equal(positions[:, ~mask], full[:, 0, ~video])
    by_hand = full[:, 0, placeholders[out.frames[order] * N]] + torch.stack(
        [torch.zeros_like(origin), out.positions[order] // 3, out.positions[order] % 3]
    )
    assert torch.equal(positions[:, mask], by_hand)


def test_a_temporal_patch_whose_tokens_all_merged_away_keeps_its_timestamp(qwen3, tiny_qwen3):
    tokenizer, model = qwen3
    config = model.config
    inputs = inputs_for(tokenizer, model, frames_of(8, drift=0.0), tiny_qwen3)  # a still video: one static window
    holitom.apply_method(model, "holitom", retain_ratio=0.25, tau=0.8, merge_layer=None)
    outputs = record_compressor(model)
    seen, handle = record_text_model(model)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    ((_, out),) = outputs
    assert holitom.stats(model).outer[0]["segments"] == 1 and set(out.frames.tolist()) == {0}
    short_ids = holitom.hosts.host_for(model).sequence.prompt_lengths[0]
    assert short_ids == inputs["input_ids"].shape[1] - 4 * N + out.tokens.shape[0]
    mask = seen[0]["visual_pos_masks"][0]
    # the embeddings entering the LM: at the text positions, the embeddings of the unreduced prompt's text in order
    ids = inputs["input_ids"][0]
    text = model.get_input_embeddings()(ids[ids != config.video_token_id])
    assert torch.equal(seen[0]["inputs_embeds"][0][~mask], text)
    # patches 1–3 keep their timestamp and an empty vision start/end pair
    stamps = [tokenizer(s).input_ids for s in timestamps(4)]
    text_ids = ids[ids != config.video_token_id].tolist()
    start = config.vision_start_token_id
    runs = [i for i, t in enumerate(text_ids) if t == start]
    for f, i in enumerate(runs):
        assert text_ids[i - len(stamps[f]) : i] == stamps[f] and text_ids[i + 1] == config.vision_end_token_id
    first = runs[0] + 1  # patch 0's run right after its vision start holds every kept token
    assert torch.equal(mask.nonzero().flatten(), torch.arange(first, first + out.tokens.shape[0]))


# ---------------------------------------------------------------------------------------------- deepstack


@pytest.mark.parametrize(
    "settings",
    [
        {"retain_ratio": 0.5, "tau": 0.8, "contextual_share": 0.5},
        {"retain_ratio": 0.4, "tau": 0.8, "contextual_share": 0.4, "reference_compat": True},
    ],
    ids=["float32", "reference"],
)
def test_deepstack_rows_follow_the_outer_merge_with_its_weights(qwen3, tiny_qwen3, settings):
    tokenizer, model = qwen3
    inputs = inputs_for(tokenizer, model, half_moving(), tiny_qwen3)
    maps = unreduced_deepstack(model, inputs)
    assert len(maps) == 2
    holitom.apply_method(model, "holitom", merge_layer=None, **settings)
    outputs = record_compressor(model)
    seen, handle = record_text_model(model)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    ((pooled, out),) = outputs
    stats = holitom.stats(model).outer[0]
    assert stats["static"] >= 1 and stats["dynamic"] >= 4  # a β-merged static token, kept and merged dynamic ones
    given = seen[0]["deepstack_visual_embeds"]
    assert len(given) == 2 and all(rows.shape == (out.tokens.shape[0], 64) for rows in given)
    for rows, unreduced in zip(given, maps):
        assert torch.equal(rows, out.carry(unreduced))
        # kept tokens: their own rows, bit for bit
        kinds_dominant = [i for i in range(out.tokens.shape[0]) if torch.equal(out.tokens[i], pooled[out.frames[i], out.positions[i]])]
        assert kinds_dominant
        for i in kinds_dominant:
            assert torch.equal(rows[i], unreduced[out.frames[i], out.positions[i]])
    # the weights are the tokens' own: the same map reproduces every token from the pooled features
    torch.testing.assert_close(out.carry(pooled), out.tokens, atol=1e-5, rtol=1e-5)


def test_static_tokens_deepstack_rows_are_the_window_means(qwen3, tiny_qwen3):
    """ρ = 1 with every position static: every token is the mean of its position over the window (no clustering),
    and so is its deepstack row."""
    tokenizer, model = qwen3
    inputs = inputs_for(tokenizer, model, frames_of(8, drift=0.01), tiny_qwen3)
    maps = unreduced_deepstack(model, inputs)
    holitom.apply_method(model, "holitom", retain_ratio=1.0, tau=-0.99, merge_layer=None)
    outputs = record_compressor(model)
    seen, handle = record_text_model(model)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    ((pooled, out),) = outputs
    assert out.tokens.shape[0] == N and out.frames.tolist() == [0] * N and out.positions.tolist() == list(range(N))
    torch.testing.assert_close(out.tokens, pooled.mean(0), atol=1e-6, rtol=1e-6)
    for rows, unreduced in zip(seen[0]["deepstack_visual_embeds"], maps):
        torch.testing.assert_close(rows, unreduced.mean(0), atol=1e-6, rtol=1e-6)


def test_merge_plan_reproduces_the_tokens_and_keeps_kept_rows_bit_exact():
    from holitom.methods.holitom import HoliTomConfig

    gen = torch.Generator().manual_seed(0)
    base = torch.randn(1, 12, 8, generator=gen)
    features = base + 0.3 * torch.randn(6, 12, 8, generator=gen)
    features[2:5] = base + 0.02 * torch.randn(3, 12, 8, generator=gen)
    scores = torch.rand(6, 12, generator=gen)
    for share in (0.0, 0.5):
        config = HoliTomConfig(retain_ratio=0.3, tau=0.8, contextual_share=share, knn=3)
        result = compress_video_with_info(features, scores, config, with_plan=True)
        assert torch.equal(result.tokens, compress_video_with_info(features, scores, config).tokens)
        torch.testing.assert_close(apply_merge_plan(result.plan, features), result.tokens, atol=1e-6, rtol=1e-6)
        other = torch.randn(6, 12, 5, generator=gen)
        carried = apply_merge_plan(result.plan, other)
        dominant = (result.kinds == DOMINANT).nonzero().flatten()
        assert torch.equal(carried[dominant], other[result.frames[dominant], result.positions[dominant]])
        assert result.plan.sources.numel() <= 6 * 12 and int(result.plan.sources.unique().numel()) == result.plan.sources.numel()
    with pytest.raises(ValueError, match="newline rows"):
        compress_video_with_info(features[:, :9], scores[:, :9], config, newline=torch.zeros(8), with_plan=True)


# ---------------------------------------------------------------------------------------------- inner cuts


def eager_qwen3(tiny_dir: str):
    """The tiny checkpoint with eager attention (it returns the attention weights) and random per-head q/k norm
    weights: with the checkpoint's all-ones weights RMSNorm commutes with RoPE (a rotation keeps the head's norm),
    so only non-uniform weights make the order norm → RoPE observable."""
    from transformers import Qwen3VLForConditionalGeneration

    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_dir, dtype=torch.float32, attn_implementation="eager")
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            for norm in (layer.self_attn.q_norm, layer.self_attn.k_norm):
                norm.weight.copy_(0.5 + torch.rand(norm.weight.shape, generator=gen) * 1.5)
    return model.eval()


def decoder_attention(model, inputs) -> tuple[dict[int, tuple[torch.Tensor, dict]], tuple[torch.Tensor, ...]]:
    """Every decoder layer's input (hidden states, call arguments) and transformers' own attention weights."""
    layers = model.model.language_model.layers
    captured: dict[int, tuple[torch.Tensor, dict]] = {}

    def keep(index):
        def hook(module, args, kwargs):
            captured[index] = (args[0] if args else kwargs["hidden_states"], dict(kwargs))

        return hook

    handles = [layer.register_forward_pre_hook(keep(i), with_kwargs=True) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            attentions = model(**inputs, output_attentions=True).attentions
    finally:
        for handle in handles:
            handle.remove()
    assert len(attentions) == len(layers)
    return captured, attentions


def test_decoder_scores_equal_transformers_attention_row_with_q_k_norms(tiny_qwen3, qwen3):
    from holitom.patch.qwen2 import last_token_scores

    tokenizer, _ = qwen3
    model = eager_qwen3(tiny_qwen3)
    inputs = inputs_for(tokenizer, model, half_moving(), tiny_qwen3)
    ids = inputs["input_ids"][0]
    visual = (ids == model.config.video_token_id).nonzero().flatten()
    last = ids.numel() - 1
    captured, attentions = decoder_attention(model, inputs)
    for index, layer in enumerate(model.model.language_model.layers):
        hidden, kwargs = captured[index]
        assert kwargs["position_embeddings"][0].dim() == 3  # Qwen3-VL's interleaved M-RoPE, (B, L, head_dim)
        scores = last_token_scores(layer, hidden, kwargs, last, visual)
        expected = attentions[index][0, :, last, visual].mean(dim=0)  # the last prompt row, mean over heads
        assert scores.shape == (4 * N,) and scores.dtype == torch.float32
        assert (scores - expected).abs().max() <= 1e-5, index


def test_decoder_scores_without_the_q_k_norms_or_after_rope_are_not_the_attention(tiny_qwen3, qwen3):
    """The test above can fail: the same scoring without the norms (a Qwen2 attention), or with them after RoPE,
    is far from transformers' row."""
    from types import SimpleNamespace

    from transformers.models.qwen3_vl.modeling_qwen3_vl import rotate_half

    from holitom.attention import last_query_attention
    from holitom.patch.qwen2 import last_token_scores

    tokenizer, _ = qwen3
    model = eager_qwen3(tiny_qwen3)
    inputs = inputs_for(tokenizer, model, half_moving(), tiny_qwen3)
    ids = inputs["input_ids"][0]
    visual = (ids == model.config.video_token_id).nonzero().flatten()
    last = ids.numel() - 1
    captured, attentions = decoder_attention(model, inputs)
    for index, layer in enumerate(model.model.language_model.layers):
        hidden, kwargs = captured[index]
        attn = layer.self_attn
        expected = attentions[index][0, :, last, visual].mean(dim=0)
        plain = SimpleNamespace(  # the same layer's attention without q_norm / k_norm
            input_layernorm=layer.input_layernorm,
            self_attn=SimpleNamespace(
                q_proj=attn.q_proj, k_proj=attn.k_proj, config=attn.config, head_dim=attn.head_dim, scaling=attn.scaling
            ),
        )
        assert (last_token_scores(plain, hidden, kwargs, last, visual) - expected).abs().max() > 1e-3, index
        # the norms behind RoPE: (1, L, heads, head_dim) rows, rotated, then normalised per head
        with torch.no_grad():
            cos, sin = (e[:, : last + 1, None] for e in kwargs["position_embeddings"])
            x = layer.input_layernorm(hidden[:1, : last + 1])
            q = attn.q_proj(x).view(1, last + 1, -1, attn.head_dim)
            k = attn.k_proj(x).view(1, last + 1, -1, attn.head_dim)
            q = attn.q_norm(q * cos + rotate_half(q) * sin)[:, -1]  # (1, heads, head_dim): the last row
            k = attn.k_norm(k * cos + rotate_half(k) * sin).transpose(1, 2)
            late = last_query_attention(q, k, attn.scaling)[0, visual]
        assert (late - expected).abs().max() > 1e-3, index


def test_inner_cut_gathers_the_survivors_cos_sin_rows(qwen3, tiny_qwen3):
    tokenizer, model = qwen3
    inputs = inputs_for(tokenizer, model, frames_of(8), tiny_qwen3)
    holitom.apply_method(model, "holitom", retain_ratio=0.5, merge_layer=2, merge_ratio=0.5)
    layers = model.model.language_model.layers
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(index):
        return lambda module, args, kwargs: seen.__setitem__(index, kwargs["position_embeddings"])

    handles = [layers[i].register_forward_pre_hook(keep(i), with_kwargs=True) for i in (0, 2, 3)]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    survivors = holitom.hosts.host_for(model).sequence.survivors
    stage = holitom.stats(model).stages[0]
    assert stage["layer"] == 2 and stage["visual_kept"] == round(stage["visual_in"] * (1 - 0.5)) < stage["visual_in"]
    assert survivors.numel() == seen[0][0].shape[1] - (stage["visual_in"] - stage["visual_kept"])
    for full, cut, after in zip(seen[0], seen[2], seen[3]):
        assert torch.equal(cut, full[:, survivors]) and after is cut


# ---------------------------------------------------------------------------------------------- generation


@pytest.mark.parametrize(("name", "settings"), REDUCING + INNER + [("vanilla", {})], ids=lambda v: str(v))
def test_generate_equals_a_manual_prefill_and_decode_loop(qwen3, tiny_qwen3, name, settings):
    tokenizer, model = qwen3
    inputs = inputs_for(tokenizer, model, frames_of(8, seed=3), tiny_qwen3)
    holitom.apply_method(model, name, **settings)
    steps = 5
    seen, handle = record_text_model(model)
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
    assert generated[0]["deepstack_visual_embeds"] is not None  # the prefill got its deepstack rows
    full, _ = model.model.get_rope_index(prompt, mm_token_type_ids=inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"])
    decode = generated[1]["position_ids"]
    assert decode.shape[-1] == 1 and decode[-3:].flatten().tolist() == [int(full.max()) + 1] * 3
    stats = holitom.stats(model)
    if name == "holitom":
        assert stats.visual_tokens < 4 * N
    if (name, settings) in INNER:  # the manual loop's prefill cut as generate's did
        assert stats.stages and all(s["visual_kept"] < s["visual_in"] for s in stats.stages)


def test_token_counts_per_temporal_patch(qwen3, tiny_qwen3):
    tokenizer, model = qwen3
    inputs = inputs_for(tokenizer, model, frames_of(6, 64, 128, seed=4), tiny_qwen3)  # grid (3, 4, 8): 8 per patch
    with pytest.warns(UserWarning, match="temporal merging is off"):
        holitom.apply_method(model, "holitom", retain_ratio=0.5, tau=1.5, merge_layer=None)
    with torch.no_grad():
        model(**inputs)
    stats = holitom.stats(model)
    kept = 3 * math.ceil(8 * 0.5)
    assert (stats.pooled_tokens, stats.visual_tokens) == (3 * 8, kept)
    assert stats.prompt_tokens == inputs["input_ids"].shape[1] - 3 * 8 + kept


# ---------------------------------------------------------------------------------------------- the probe


def test_probe_scores_equal_the_last_blocks_attention_computed_by_hand(qwen3, tiny_qwen3):
    from transformers.models.qwen3_vl import modeling_qwen3_vl as qwen_module

    from holitom.hosts import host_for

    tokenizer, model = qwen3
    inputs = inputs_for(tokenizer, model, frames_of(4), tiny_qwen3)
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
    x = block.norm1(captured["hidden"])
    q, k, _ = block.attn.qkv(x).reshape(x.shape[0], 3, 2, -1).permute(1, 0, 2, 3).unbind(0)
    q, k = qwen_module.apply_rotary_pos_emb_vision(q, k, *captured["rope"])
    expected = []
    for t in range(2):  # per temporal patch: every head's softmax, mean over heads and queries, groups of 4, grid order
        rows = slice(4 * N * t, 4 * N * (t + 1))
        probs = torch.softmax(torch.einsum("qhd,khd->hqk", q[rows], k[rows]) * block.attn.scaling, dim=-1)
        expected.append(probs.mean(dim=(0, 1)).view(N, 4).mean(dim=1))
    torch.testing.assert_close(scores, torch.stack(expected), atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- refusals


def test_methods_that_cannot_run_are_refused_in_one_line(qwen3, tiny_qwen3):
    from holitom.hosts import host_for

    tokenizer, model = qwen3
    inputs = inputs_for(tokenizer, model, frames_of(4), tiny_qwen3)

    def one_line(error: pytest.ExceptionInfo) -> str:
        text = str(error.value)
        assert "\n" not in text
        return text

    # a cut before decoder layer D = 2: deepstack map 1 is still to be added after layer 1, on the full-length mask
    for name, settings in [
        ("holitom", {"retain_ratio": 0.5, "merge_layer": 1}),
        ("fastv", {"fastv_layer": 1, "fastv_keep": 0.5}),
        ("pdrop", {"pdrop_layers": (1, 2, 3), "pdrop_lambda": 0.5}),
    ]:
        holitom.apply_method(model, name, **settings)
        refusal = f"^{name}: a cut at decoder layer 1 comes before Qwen3-VL's deepstack"
        with pytest.raises(ValueError, match=refusal) as error, torch.no_grad():
            model(**inputs)
        assert "D = 2" in one_line(error) and "cut at layer 2 or later" in one_line(error)
        holitom.remove(model)
    holitom.apply_method(model, "visionzip", retain_ratio=0.5)
    with pytest.raises(ValueError, match="no merge weights for Qwen3-VL's deepstack") as error, torch.no_grad():
        model(**inputs)
    one_line(error)
    holitom.remove(model)
    for name in ("dycoke", "prunevid", "fastvid"):
        with pytest.raises(ValueError, match=f"{name} cannot run on Qwen3VLForConditionalGeneration") as error:
            holitom.apply_method(model, name)
        one_line(error)
    holitom.apply_method(model, "holitom", retain_ratio=0.5, merge_layer=None)
    bad = {**inputs, "video_grid_thw": torch.tensor([[2, 1, 24]])}
    with pytest.raises(ValueError, match="smaller than one 2×2 merged patch") as error, torch.no_grad():
        model(**bad)
    one_line(error)
    moe = type("Qwen3VLMoeForConditionalGeneration", (), {})()
    with pytest.raises(ValueError, match="Qwen3-VL-MoE") as error:
        host_for(moe)
    one_line(error)


def test_qwen3_shape_rows_count_16px_patches_and_feed_the_flops_accounting():
    from holitom.flops import layer_flops, method_flops
    from holitom.shapes import QWEN_SHAPES

    sizes = {name: (s.num_layers, s.hidden, s.ffn, s.heads, s.kv_heads, s.patch) for name, s in QWEN_SHAPES.items()}
    assert sizes["qwen3-vl-2b"] == (28, 2048, 6144, 16, 8, 16) and sizes["qwen3-vl-4b"] == (36, 2560, 9728, 32, 8, 16)
    assert sizes["qwen3-vl-8b"] == (36, 4096, 12288, 32, 8, 16) and sizes["qwen3-vl-32b"] == (64, 5120, 25600, 64, 8, 16)
    shape = QWEN_SHAPES["qwen3-vl-8b"]
    assert shape.grid(32, 448, 448) == (16, 14, 14)  # 448 = 14·32: 196 tokens per temporal patch
    cell = method_flops(shape.model_shape(32, 448, 448), method="holitom", retain_ratio=0.10, merge_layer=None)
    assert cell.schedule == ((0, 16 * 20),)  # ⌈196·0.1⌉ = 20 per temporal patch
    assert cell.flops == 36 * layer_flops(320, 4096, 12288)
