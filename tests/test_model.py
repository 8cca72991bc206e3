"""The `llava` model: loading, vanilla token layouts, generation, and parity with transformers'
own LlavaOnevisionForConditionalGeneration on the same random weights."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from conftest import load, random_frames, video_prompt_ids

from llava.constants import IMAGE_TOKEN_INDEX


def test_tiny_checkpoint_has_the_published_layout(tiny_ov):
    files = set(os.listdir(tiny_ov))
    assert {"config.json", "model.safetensors.index.json", "tokenizer.json", "vocab.json", "merges.txt", "generation_config.json"} <= files
    assert sum(f.endswith(".safetensors") for f in files) >= 2  # sharded
    with open(os.path.join(tiny_ov, "config.json")) as fh:
        config = json.load(fh)
    assert config["model_type"] == "llava" and config["architectures"] == ["LlavaQwenForCausalLM"]
    assert config["mm_vision_select_layer"] == -2 and config["mm_projector_type"] == "mlp2x_gelu"
    with open(os.path.join(tiny_ov, "model.safetensors.index.json")) as fh:
        keys = set(json.load(fh)["weight_map"])
    prefix = "model.vision_tower.vision_tower.vision_model."
    assert prefix + "encoder.layers.1.self_attn.q_proj.weight" in keys
    assert prefix + "encoder.layers.2.self_attn.q_proj.weight" not in keys  # last SigLIP layer dropped
    assert {"model.mm_projector.0.weight", "model.mm_projector.2.bias", "model.image_newline", "lm_head.weight"} <= keys
    assert "model.layers.3.self_attn.k_proj.weight" in keys and "model.embed_tokens.weight" in keys


def test_load_returns_the_llava_next_tuple(ov_model):
    tokenizer, model, processor, max_length = ov_model
    assert type(model).__name__ == "LlavaQwenForCausalLM"
    assert max_length == 32768
    assert model.get_vision_tower().num_patches_per_side == 27
    assert len(model.get_vision_tower().encoder_layers) == 2
    pixels = processor.preprocess(torch.zeros(2, 50, 60, 3, dtype=torch.uint8).numpy(), return_tensors="pt")["pixel_values"]
    assert pixels.shape == (2, 3, 384, 384)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == model.config.eos_token_id


def test_overwrite_config_is_honoured(tiny_ov):
    _, model, _, _ = load(tiny_ov, overwrite_config={"mm_spatial_pool_mode": "average", "mm_newline_position": "grid"})
    assert model.config.mm_spatial_pool_mode == "average" and model.config.mm_newline_position == "grid"


@pytest.mark.parametrize(
    ("pool_mode", "newline", "per_frame", "extra"),
    [
        ("bilinear", "one_token", 196, 1),
        ("average", "one_token", 169, 1),
        ("max", "one_token", 169, 1),
        ("average", "grid", 182, 0),
        ("bilinear", "grid", 210, 0),
        ("bilinear", "frame", 197, 0),
        ("bilinear", "no_token", 196, 0),
    ],
)
def test_vanilla_visual_token_counts(tiny_ov, pool_mode, newline, per_frame, extra):
    tokenizer, model, _, _ = load(tiny_ov, overwrite_config={"mm_spatial_pool_mode": pool_mode, "mm_newline_position": newline})
    ids = video_prompt_ids(tokenizer)
    frames = random_frames(3)
    with torch.no_grad():
        out = model(input_ids=ids, images=[frames], modalities=["video"])
    n_visual = 3 * per_frame + extra
    assert model.sequence_state.visual_tokens == [n_visual]
    assert out.logits.shape[1] == ids.shape[1] - 1 + n_visual
    (start, length), = model.sequence_state.visual_spans[0]
    assert start == int((ids[0] == IMAGE_TOKEN_INDEX).nonzero()) and length == n_visual


def test_grid_layout_puts_newline_after_every_row(video_model):
    tokenizer, model, _, _ = video_model
    frames = random_frames(2)
    with torch.no_grad():
        tokens = model.video_tokens(frames)
    newline = model.get_model().image_newline
    assert tokens.shape[0] == 2 * 182
    rows = tokens.view(2, 13, 14, -1)
    assert torch.equal(rows[:, :, 13], newline.expand(2, 13, -1))
    assert not torch.isclose(rows[:, :, :13], newline).all(-1).any()


def test_generate_returns_only_new_tokens_and_matches_no_cache(ov_model):
    tokenizer, model, _, _ = ov_model
    ids = video_prompt_ids(tokenizer)
    frames = random_frames(4)
    kwargs = dict(images=[frames], modalities=["video"], max_new_tokens=6, do_sample=False)
    with torch.no_grad():
        cached = model.generate(ids, **kwargs)
        uncached = model.generate(ids, use_cache=False, **kwargs)
        logits = model(input_ids=ids, images=[frames], modalities=["video"]).logits
    assert cached.shape[1] <= 6
    assert torch.equal(cached, uncached)
    assert cached[0, 0] == logits[0, -1].argmax()


def test_forward_loss_uses_labels(ov_model):
    tokenizer, model, _, _ = ov_model
    ids = video_prompt_ids(tokenizer)
    answer = torch.tensor([tokenizer("The answer is B")["input_ids"]])
    full = torch.cat([ids, answer], dim=1)
    labels = full.clone()
    labels[:, : ids.shape[1]] = -100
    with torch.no_grad():
        out = model(input_ids=full, labels=labels, images=[random_frames(2)], modalities=["video"])
    logits = out.logits[0, -answer.shape[1] - 1 : -1]
    expected = torch.nn.functional.cross_entropy(logits, answer[0])
    assert torch.allclose(out.loss, expected, atol=1e-6)


def test_half_precision_frames_are_cast(ov_model):
    tokenizer, model, _, _ = ov_model
    ids = video_prompt_ids(tokenizer)
    frames = random_frames(2)
    with torch.no_grad():
        a = model(input_ids=ids, images=[frames.half()], modalities=["video"]).logits
        b = model(input_ids=ids, images=[frames.half().float()], modalities=["video"]).logits
    assert torch.equal(a, b)


def test_single_image_base_resolution(ov_model):
    tokenizer, model, _, _ = ov_model
    ids = video_prompt_ids(tokenizer, "Describe the image.")
    with torch.no_grad():
        model(input_ids=ids, images=random_frames(1), modalities=["image"])
    assert model.sequence_state.visual_tokens == [729 + 1]
    with pytest.raises(ValueError, match="anyres"):
        model(input_ids=ids, images=[random_frames(5)], modalities=["image"])


def test_placeholder_count_mismatch_is_a_clear_error(ov_model):
    tokenizer, model, _, _ = ov_model
    ids = video_prompt_ids(tokenizer)
    two = torch.cat([ids, ids], dim=1)
    with pytest.raises(ValueError, match="2 <image> placeholder"):
        model(input_ids=two, images=[random_frames(2)], modalities=["video"])
    with pytest.raises(ValueError, match="no images"):
        model(input_ids=ids)


def test_missing_checkpoint_files_are_named(tiny_ov, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(str(tmp_path / "nope"))
    broken = tmp_path / "broken"
    shutil.copytree(tiny_ov, broken)
    shard = sorted(f for f in os.listdir(broken) if f.endswith(".safetensors"))[0]
    os.remove(broken / shard)
    with pytest.raises(FileNotFoundError, match=shard):
        load(str(broken))
    os.remove(broken / "config.json")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load(str(broken))


def _hf_twin(model):
    """transformers' LlavaOnevisionForConditionalGeneration with our weights (its own key layout)."""
    from holitom.hosts.hf_onevision_io import to_hf_onevision

    vocab = model.config.vocab_size
    return to_hf_onevision(model, image_token_id=vocab - 2, video_token_id=vocab - 1)


def test_vanilla_logits_match_transformers_llava_onevision(ov_model):
    tokenizer, model, _, _ = ov_model
    hf = _hf_twin(model)
    ids = video_prompt_ids(tokenizer)
    frames = random_frames(4, seed=3)
    n_visual = 4 * 196 + 1
    at = int((ids[0] == IMAGE_TOKEN_INDEX).nonzero())
    hf_ids = torch.cat([ids[:, :at], torch.full((1, n_visual), hf.config.video_token_id), ids[:, at + 1 :]], dim=1)
    with torch.no_grad():
        ours = model(input_ids=ids, images=[frames], modalities=["video"]).logits
        theirs = hf(input_ids=hf_ids, pixel_values_videos=frames[None]).logits
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    assert ours.abs().max() > 0.1  # a real signal, not zeros
