"""What a GPU node needs, tested on CPU: device-map splicing (the language model on `meta`, the vision side on
CPU: any cross-device concatenation raises), offloaded device maps refused, flash-attention-style 2-D masks
and position ids after a cut, host syncs per prefill, the vision path in chunks, chunked merges."""

from __future__ import annotations

import pytest
import torch
from conftest import load, random_frames, video_prompt_ids
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

import holitom
from holitom import inner
from holitom.inner import merge_dropped, select_kept
from holitom.outer import compress_video
from holitom.patch.qwen2 import _key_row
from holitom.tools.syncs import count_host_syncs
from holitom.tools.synthetic import synthetic_pixels

# ---------------------------------------------------------------------------------------------- device maps

SPLICE_METHODS = [("vanilla", {}), ("holitom", {"retain_ratio": 0.2, "merge_layer": None}), ("visionzip", {"retain_ratio": 0.2})]


def _language_model_on_meta(model):
    """The LM on `meta` (as if on another GPU), vision tower, projector and newline on CPU. Like accelerate's
    hooks, the embedding moves its inputs to its own device."""
    lm = model.get_model()
    for module in (lm.embed_tokens, lm.layers, lm.norm, model.lm_head):
        module.to("meta")
    lm.embed_tokens.register_forward_pre_hook(lambda _m, args: tuple(a.to("meta") for a in args))


@pytest.mark.parametrize("fixture", ["ov_model", "video_model"])
@pytest.mark.parametrize(("method", "settings"), SPLICE_METHODS, ids=[m for m, _ in SPLICE_METHODS])
def test_visual_tokens_join_the_text_on_the_language_models_device(fixture, method, settings, request):
    tokenizer, model, _, _ = request.getfixturevalue(fixture)
    holitom.apply_method(model, method, **settings)
    ids, frames = video_prompt_ids(tokenizer), random_frames(3)
    with torch.no_grad():
        reference = model.prepare_inputs_labels_for_multimodal(ids, None, None, None, None, [frames], ["video"])[4]
    _language_model_on_meta(model)
    with torch.no_grad():  # torch.cat of a meta and a CPU tensor raises: every piece must move first
        _, _, mask, _, embeds, _ = model.prepare_inputs_labels_for_multimodal(ids, None, None, None, None, [frames], ["video"])
    assert embeds.device.type == "meta" and embeds.shape == reference.shape and mask.device.type == "meta"


def test_offloaded_device_maps_are_refused_with_one_line(ov_model):
    _, model, _, _ = ov_model
    model.hf_device_map = {"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": "cpu", "lm_head": "disk"}
    try:
        with pytest.raises(ValueError, match="the model is partly offloaded .* modules on cpu and disk"):
            holitom.apply_method(model, "holitom", retain_ratio=0.2, merge_layer=2)
        holitom.apply_method(model, "vanilla")  # nothing to hook: fine
        model.hf_device_map = {"": "cpu"}  # a CPU model is not offloaded
        holitom.apply_method(model, "fastv", fastv_layer=2)
    finally:
        del model.hf_device_map
        holitom.remove(model)


# ---------------------------------------------------------------------------------------------- flash-style masks


def test_key_rows_of_4d_2d_bool_and_additive_masks():
    padding = torch.tensor([[0, 1, 1, 1]])  # 2-D (B, K): what flash attention gets
    assert _key_row(padding, 2, 0, 3).tolist() == [[float("-inf"), 0.0, 0.0]]
    causal = torch.ones(1, 1, 3, 3, dtype=torch.bool).tril()
    assert _key_row(causal, 1, 0, 3).tolist() == [[0.0, 0.0, float("-inf")]]
    additive = torch.zeros(1, 1, 3, 3).masked_fill(~causal, float("-inf"))
    assert torch.equal(_key_row(additive, 1, 0, 3), _key_row(causal, 1, 0, 3))


SEEN_POSITION_IDS: list = []


def _flash_like(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention that reads masks and positions as flash attention does: a 2-D padding mask (or None) and
    causality; gapped position ids would mean packed sequences, so they must not arrive."""
    SEEN_POSITION_IDS.append(kwargs.get("position_ids"))
    key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    value = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
    q, k = query.shape[2], key.shape[2]
    allowed = torch.ones(q, k, dtype=torch.bool).tril(k - q)
    if attention_mask is not None:
        assert attention_mask.dim() == 2, "flash attention gets a 2-D padding mask"
        allowed = allowed & attention_mask.bool()[:, None, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=allowed, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register("padding_mask_test", _flash_like)
AttentionMaskInterface.register("padding_mask_test", flash_attention_mask)


def test_inner_merging_under_flash_style_masks_and_positions(tiny_ov):
    tokenizer, sdpa, _, _ = load(tiny_ov)
    _, flash, _, _ = load(tiny_ov, attn_implementation="padding_mask_test")
    ids, frames = video_prompt_ids(tokenizer), random_frames(3, seed=2)
    padded = torch.cat([torch.full((1, 2), tokenizer.pad_token_id), ids], dim=1)  # left padding: a real 2-D mask
    mask = torch.cat([torch.zeros(1, 2, dtype=torch.long), torch.ones_like(ids)], dim=1)
    config = holitom.HoliTomConfig(retain_ratio=0.3, merge_layer=2, merge_ratio=0.5)
    logits = {}
    for name, model in (("sdpa", sdpa), ("flash", flash)):
        holitom.apply(model, config)
        SEEN_POSITION_IDS.clear()
        with torch.no_grad():
            logits[name] = model(input_ids=padded, attention_mask=mask, images=[frames], modalities=["video"]).logits
        if name == "flash":
            assert SEEN_POSITION_IDS[2] is None and SEEN_POSITION_IDS[3] is None  # layers ≥ K, after the cut
            assert SEEN_POSITION_IDS[0] is not None
    torch.testing.assert_close(logits["flash"], logits["sdpa"], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------- host syncs


def _prefill_syncs(model, ids, frames) -> int:
    with torch.no_grad():
        model(input_ids=ids, images=[frames], modalities=["video"])  # warm
        with count_host_syncs() as syncs:
            model(input_ids=ids, images=[frames], modalities=["video"])
    return syncs.total


def test_host_syncs_per_32_frame_prefill(ov_model, video_model):
    """Counted on CPU: the calls that make the host wait for a GPU. HoliTom adds three to a vanilla prefill (one
    copy of the temporal stability mask, counted twice, and one upload of the outer plan); the grid layout reads
    one count more; VisionZip reads nothing but that, the inner-LLM cuts nothing at all."""
    frames = synthetic_pixels(32, seed=0)
    for (tokenizer, model, _, _), extra in ((ov_model, 0), (video_model, 1)):
        ids = video_prompt_ids(tokenizer)
        holitom.remove(model)
        vanilla = _prefill_syncs(model, ids, frames)
        holitom.apply_method(model, "holitom", retain_ratio=0.10, tau=0.8, merge_layer=2)
        assert _prefill_syncs(model, ids, frames) - vanilla == 3 + extra
        for method, settings in (("fastv", {"fastv_layer": 2}), ("pdrop", {"pdrop_layers": (1, 2, 3)})):
            holitom.apply_method(model, method, **settings)
            assert _prefill_syncs(model, ids, frames) == vanilla, method
        holitom.apply_method(model, "visionzip", retain_ratio=0.1)  # per-frame budgets: nothing to read
        assert _prefill_syncs(model, ids, frames) - vanilla == extra
    x = torch.randn(32, 196, 64, generator=torch.Generator().manual_seed(0)).cumsum(0)
    with count_host_syncs() as syncs:
        compress_video(x, torch.rand(32, 196), holitom.HoliTomConfig(retain_ratio=0.1, tau=0.9))
    assert dict(syncs.by_call) == {"cpu": 1, "numpy": 1, "as_tensor": 1}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the real sync count")
def test_outer_merge_syncs_on_cuda():  # pragma: no cover - not run on the project's CPU machines
    import warnings

    x = torch.randn(32, 196, 3584, device="cuda", dtype=torch.float16).cumsum(0)
    a = torch.rand(32, 196, device="cuda")
    config = holitom.HoliTomConfig(retain_ratio=0.1, tau=0.9)
    compress_video(x, a, config)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            compress_video(x, a, config)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert len(caught) <= 3, [str(w.message) for w in caught]


# ---------------------------------------------------------------------------------------------- memory


@pytest.mark.parametrize(("method", "settings"), [("vanilla", {}), ("holitom", {"retain_ratio": 0.2, "merge_layer": None})])
def test_the_vision_path_in_chunks_gives_the_same_tokens(ov_model, method, settings):
    _, model, _, _ = ov_model
    holitom.apply_method(model, method, **settings)
    frames = random_frames(7, seed=3)
    with torch.no_grad():
        whole = model.video_tokens(frames)
        model.vision_chunk_frames = 3  # 3 + 3 + 1 frames: three tower runs, the probe keeps all three
        chunked = model.video_tokens(frames)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-5)


def test_merge_similarities_in_blocks_give_the_same_merge(monkeypatch):
    g = torch.Generator().manual_seed(0)
    hidden, scores = torch.randn(300, 16, generator=g), torch.rand(300, generator=g)
    kept, dropped = select_kept(scores, 120)
    whole = merge_dropped(hidden, kept, dropped)
    reference = merge_dropped(hidden.half(), kept, dropped, "sequential", scores[kept])
    monkeypatch.setattr(inner, "_SIM_BLOCK", 500)  # blocks of 4 dropped rows
    assert torch.equal(merge_dropped(hidden, kept, dropped), whole)
    assert torch.equal(merge_dropped(hidden.half(), kept, dropped, "sequential", scores[kept]), reference)


def test_probe_logits_in_the_model_dtype_softmax_in_float32():
    from holitom.attention import received_attention

    q, k = (torch.randn(2, 4, 20, 8, generator=torch.Generator().manual_seed(i)).bfloat16() for i in (1, 2))
    got = received_attention(q, k, 0.3)
    expected = torch.softmax((q * 0.3) @ k.transpose(-1, -2), dim=-1, dtype=torch.float32).mean(dim=(1, 2))
    assert got.dtype == torch.float32 and torch.equal(got, expected)
    exact = torch.softmax((q.float() * 0.3) @ k.float().transpose(-1, -2), dim=-1).mean(dim=(1, 2))
    torch.testing.assert_close(got, exact, atol=2e-3, rtol=0)
