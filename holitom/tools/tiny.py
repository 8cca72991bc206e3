"""`holitom make-tiny`: a small random LLaVA checkpoint in exactly the published lmms-lab layout.

Same config.json field names, same weight names (sharded safetensors + index), a Qwen2-style byte-level
BPE tokenizer with the chat special tokens, trained here on a built-in text. Sizes are tiny so tests
run in seconds on 2 CPU cores while keeping every structural feature: 27×27 SigLIP patches at 384 px
(pooling 27→14 or 13), 2 kept SigLIP layers (3 in the tower, select layer −2), 4 Qwen2 layers with
grouped-query attention (4 query heads, 2 KV heads).

One field is not in the published configs: `mm_vision_tower_config`, the tiny SigLIP's own config
(the real tower's config is known by name; a tiny tower has no hub repo to read it from).

`--kind onevision-hf` writes the same OneVision model in transformers' llava-hf layout instead
(`holitom.hosts.hf_onevision_io`): config.json with `text_config` / `vision_config`, the llava-hf weight names, the
tokenizer with `<image>` and `<video>` added, and the processor files.

`--kind qwen2.5-vl` writes a tiny Qwen2.5-VL in Qwen's published layout (`_make_tiny_qwen2_5_vl`): the flat
config.json of Qwen/Qwen2.5-VL-*-Instruct (LM fields at the top, `vision_config`, `rope_scaling` with an
`mrope_section`), weights under the published names (`model.layers.*`, `visual.*`, `lm_head`), the tokenizer with
Qwen's vision tokens, preprocessor_config.json and chat_template.json.

`--kind qwen3-vl` writes a tiny dense Qwen3-VL in Qwen's published layout (`_make_tiny_qwen3_vl`): config.json with
`text_config` (`rope_scaling` with an interleaved `mrope_section`) and `vision_config` (16-px patches, a learned
4×4 position grid, deepstack from vision blocks 0 and 2), weights under transformers' names as Qwen3-VL publishes
them (`model.language_model.*`, `model.visual.*`, `lm_head`), the same tokenizer and chat template.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

KINDS = ("onevision", "video", "onevision-hf", "qwen2.5-vl", "qwen3-vl")
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Text for the tiny tokenizer's merges: chat-like English about videos, enough for a few hundred merges.
_CORPUS = """
You are a helpful assistant. Describe the video in detail. What is happening in this video?
The man is walking a dog in the park. A woman is cooking dinner in the kitchen. The car drives down the road.
Answer with the option's letter from the given choices directly. Question: What color is the ball?
Options: (A) red (B) blue (C) green (D) yellow. Best option: (A). The answer is B. The person picks up a cup.
Please answer the question based on the video. How many people are there? Where does the scene take place?
A moving square crosses the frame from left to right while the background stays still. First, then, finally.
The camera pans slowly over the city at night. Children are playing football on the grass near the river.
"""


# The llava-hf chat template's prompt layout: each turn "<|im_start|>{role}\n", then "<image>\n" per image,
# "<video>\n" per video, the text, "<|im_end|>\n"; the generation prompt "<|im_start|>assistant\n".
HF_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] if item['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for item in message['content'] if item['type'] == 'video' %}{{ '<video>\n' }}{% endfor %}"
    "{% for item in message['content'] if item['type'] == 'text' %}{{ item['text'] }}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_config(kind: str = "onevision") -> dict[str, Any]:
    """config.json for a tiny checkpoint (lmms-lab layout): the published field names, small sizes."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: valid kinds are {KINDS}")
    video = kind == "video"
    return {
        "architectures": ["LlavaQwenForCausalLM"],
        "model_type": "llava",
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 64,
        "intermediate_size": 128,
        "initializer_range": 0.02,
        "max_position_embeddings": 32768,
        "max_window_layers": 4,
        "num_attention_heads": 4,
        "num_hidden_layers": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": False,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 640,
        "image_aspect_ratio": "anyres_max_9",
        "image_crop_resolution": None,
        "image_grid_pinpoints": [[384, 384], [384, 768], [768, 384], [768, 768]],
        "image_split_resolution": None,
        "mm_hidden_size": 32,
        "mm_newline_position": "grid" if video else "one_token",
        "mm_patch_merge_type": "spatial_unpad",
        "mm_projector_lr": None,
        "mm_projector_type": "mlp2x_gelu",
        "mm_resampler_type": None,
        "mm_spatial_pool_mode": "average" if video else "bilinear",
        "mm_spatial_pool_stride": 2,
        "mm_tunable_parts": "mm_vision_tower,mm_mlp_adapter,mm_language_model",
        "mm_use_im_patch_token": False,
        "mm_use_im_start_end": False,
        "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2,
        "mm_vision_tower": "holitom/tiny-siglip-patch14-384",
        "mm_vision_tower_config": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 3,
            "num_attention_heads": 2,
            "image_size": 384,
            "patch_size": 14,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
        },
        "mm_vision_tower_lr": None,
        "tokenizer_model_max_length": 32768,
        "tokenizer_padding_side": "right",
        "torch_dtype": "float32",
        "use_mm_proj": True,
        "use_pos_skipping": False,
        "vision_tower_pretrained": None,
    }


def build_tokenizer(vocab_size: int = 600):
    """A Qwen2Tokenizer (byte-level BPE, Qwen's pre-tokenizer) trained on the built-in text."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    vocab = dict(model["vocab"])
    for token in SPECIAL_TOKENS:
        vocab.setdefault(token, len(vocab))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.model_max_length = 32768
    return tokenizer


def _random_llava(kind: str, seed: int) -> tuple[dict[str, Any], Any, Any]:
    """(config.json dict, tokenizer, model) of a tiny random checkpoint in our llava layout."""
    from llava.model.language_model.llava_qwen import LlavaQwenConfig, LlavaQwenForCausalLM

    tokenizer = build_tokenizer()
    raw = tiny_config(kind)
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    raw["bos_token_id"], raw["eos_token_id"] = ids[0], ids[2]
    if len(tokenizer) + 2 > raw["vocab_size"]:  # room for <image> and <video> in the llava-hf layout
        raise RuntimeError(f"tiny tokenizer has {len(tokenizer)} tokens, too many for vocab_size {raw['vocab_size']}")

    config = LlavaQwenConfig(**{k: v for k, v in raw.items() if k != "model_type"})
    with torch.random.fork_rng(devices=[]):  # construction's random init must not move the caller's RNG
        model = LlavaQwenForCausalLM(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # Every weight from the local generator: larger-than-default random matrices so that different
        # inputs give visibly different outputs, a unit-scale newline, norms 1, biases 0.
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.08, generator=gen)
            elif name.endswith("image_newline"):
                param.normal_(0.0, 1.0, generator=gen)
            elif "norm" in name and name.endswith("weight"):
                param.fill_(1.0)
            else:
                param.zero_()
    return raw, tokenizer, model


def _write_tokenizer(tokenizer: Any, out_dir: str) -> None:
    tokenizer.save_pretrained(out_dir)
    # The published repos also ship the slow-tokenizer files; write them from the same BPE model.
    bpe = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    with open(os.path.join(out_dir, "vocab.json"), "w") as fh:
        json.dump(bpe["vocab"], fh, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w") as fh:
        fh.write("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in bpe["merges"]))


def _write_json(out_dir: str, name: str, value: Any) -> None:
    with open(os.path.join(out_dir, name), "w") as fh:
        json.dump(value, fh, indent=2)


def make_tiny(out_dir: str, kind: str = "onevision", seed: int = 0, max_shard_size: str = "400KB") -> str:
    """Write a tiny random checkpoint to `out_dir` and return the path. `onevision-hf` is the `onevision`
    model of the same seed (the same weights) in the llava-hf layout."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: valid kinds are {KINDS}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"OUT_DIR={out_dir!r} exists and is not a directory")
    os.makedirs(out_dir, exist_ok=True)
    if kind == "onevision-hf":
        return _make_tiny_hf(out_dir, seed, max_shard_size)
    if kind == "qwen2.5-vl":
        return _make_tiny_qwen2_5_vl(out_dir, seed, max_shard_size)
    if kind == "qwen3-vl":
        return _make_tiny_qwen3_vl(out_dir, seed, max_shard_size)
    raw, tokenizer, model = _random_llava(kind, seed)
    model.save_pretrained(out_dir, max_shard_size=max_shard_size)
    _write_tokenizer(tokenizer, out_dir)
    # config.json exactly as published: model_type "llava", our field names, no transformers extras.
    _write_json(out_dir, "config.json", raw)
    bos, eos = raw["bos_token_id"], raw["eos_token_id"]
    _write_json(out_dir, "generation_config.json", {"bos_token_id": bos, "eos_token_id": [eos, bos], "pad_token_id": bos})
    return out_dir


def _make_tiny_hf(out_dir: str, seed: int, max_shard_size: str) -> str:
    """The tiny OneVision checkpoint in the llava-hf layout (see `holitom.hosts.hf_onevision_io`)."""
    from huggingface_hub import save_torch_state_dict
    from tokenizers import AddedToken

    from holitom.hosts.hf_onevision_io import IMAGE_TOKEN, VIDEO_TOKEN, hf_config_from_llava, hf_state_dict

    raw, tokenizer, model = _random_llava("onevision", seed)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in (IMAGE_TOKEN, VIDEO_TOKEN)], special_tokens=True)
    image_id, video_id = tokenizer.convert_tokens_to_ids([IMAGE_TOKEN, VIDEO_TOKEN])
    config = hf_config_from_llava(model.config, model.get_vision_tower().config, image_id, video_id)
    config.architectures = ["LlavaOnevisionForConditionalGeneration"]
    config.save_pretrained(out_dir)
    state = {k: v.contiguous() for k, v in hf_state_dict(model.state_dict(), published=True).items()}
    save_torch_state_dict(state, out_dir, max_shard_size=max_shard_size)
    _write_tokenizer(tokenizer, out_dir)
    bos, eos = raw["bos_token_id"], raw["eos_token_id"]
    _write_json(out_dir, "generation_config.json", {"bos_token_id": bos, "eos_token_id": [eos, bos], "pad_token_id": bos})
    side = model.get_vision_tower().config.image_size
    pixels = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "LlavaOnevisionProcessor",
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"height": side, "width": side},
    }
    _write_json(out_dir, "preprocessor_config.json", {
        **pixels, "do_pad": True, "image_grid_pinpoints": raw["image_grid_pinpoints"],
        "image_processor_type": "LlavaOnevisionImageProcessor",
    })  # fmt: skip
    _write_json(out_dir, "video_preprocessor_config.json", {**pixels, "video_processor_type": "LlavaOnevisionVideoProcessor"})
    patches = (side // model.get_vision_tower().config.patch_size) ** 2
    _write_json(out_dir, "processor_config.json", {
        "num_image_tokens": patches, "processor_class": "LlavaOnevisionProcessor",
        "vision_aspect_ratio": "anyres_max_9", "vision_feature_select_strategy": "full",
    })  # fmt: skip
    _write_json(out_dir, "chat_template.json", {"chat_template": HF_CHAT_TEMPLATE})
    return out_dir


# Qwen2.5-VL's prompt layout, written for the tiny checkpoints: a default system turn, then per turn
# "<|im_start|>{role}\n", each image/video as <|vision_start|><|image_pad|>/<|video_pad|><|vision_end|>, the text,
# "<|im_end|>\n"; the generation prompt "<|im_start|>assistant\n".
QWEN_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'video' %}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN_VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


def tiny_qwen2_5_vl_config(ids: dict[str, int]) -> dict[str, Any]:
    """config.json of a tiny Qwen2.5-VL in the published (flat) layout; `ids`: the special tokens' ids.
    LM: 4 layers, width 64, 4 query / 2 KV heads of 16 (mrope_section 2+3+3 = 16/2); tower: 4 blocks of width 32,
    full attention in blocks 1 and 3 (the last), windows of 56 px (2×2 merged tokens)."""
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 32768,
        "max_window_layers": 4,
        "model_type": "qwen2_5_vl",
        "num_attention_heads": 4,
        "num_hidden_layers": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {
            "depth": 4,
            "hidden_act": "silu",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "in_chans": 3,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "window_size": 56,
            "fullatt_block_indexes": [1, 3],
            "tokens_per_second": 2,
            "temporal_patch_size": 2,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "vocab_size": 640,
    }


def _published_qwen_name(name: str) -> str:
    """transformers' module name → the published checkpoint's (model.language_model.* → model.*, model.visual.* →
    visual.*); transformers maps them back on loading."""
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model.") :]
    if name.startswith("model.visual."):
        return name[len("model.") :]
    return name


def _make_tiny_qwen2_5_vl(out_dir: str, seed: int, max_shard_size: str) -> str:
    from huggingface_hub import save_torch_state_dict
    from tokenizers import AddedToken
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = build_tokenizer()
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_VISION_TOKENS], special_tokens=True)
    ids = dict(zip(SPECIAL_TOKENS + QWEN_VISION_TOKENS, tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS + QWEN_VISION_TOKENS))))
    raw = tiny_qwen2_5_vl_config(ids)
    if len(tokenizer) > raw["vocab_size"]:
        raise RuntimeError(f"tiny tokenizer has {len(tokenizer)} tokens, too many for vocab_size {raw['vocab_size']}")
    config = Qwen2_5_VLConfig(**{k: v for k, v in raw.items() if k != "model_type"})
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):  # construction's random init must not move the caller's RNG
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every weight from the local generator (as the llava kinds): matrices, norms 1, biases 0
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.08, generator=gen)
            elif "norm" in name or name.endswith("ln_q.weight"):
                param.fill_(1.0)
            else:
                param.zero_()
    state = {_published_qwen_name(k): v.contiguous() for k, v in model.state_dict().items()}
    save_torch_state_dict(state, out_dir, max_shard_size=max_shard_size)
    _write_json(out_dir, "config.json", raw)
    _write_tokenizer(tokenizer, out_dir)
    bos, eos = raw["bos_token_id"], raw["eos_token_id"]
    _write_json(out_dir, "generation_config.json", {"bos_token_id": bos, "eos_token_id": [eos, bos], "pad_token_id": bos, "do_sample": False})
    _write_json(out_dir, "preprocessor_config.json", {
        "min_pixels": 56 * 56, "max_pixels": 112 * 112, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
    })  # fmt: skip
    _write_json(out_dir, "chat_template.json", {"chat_template": QWEN_CHAT_TEMPLATE})
    return out_dir


def tiny_qwen3_vl_config(ids: dict[str, int]) -> dict[str, Any]:
    """config.json of a tiny dense Qwen3-VL in the published layout (`text_config`, `vision_config`); `ids`: the
    special tokens' ids. LM: 4 layers, width 64, 4 query / 2 KV heads of 16 (interleaved mrope_section 2+3+3 = 16/2);
    tower: 4 blocks of width 32, 16-px patches, a 4×4 learned position grid, deepstack after blocks 0 and 2 (added
    after LM layers 0 and 1)."""
    return {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "model_type": "qwen3_vl",
        "tie_word_embeddings": False,
        "text_config": {
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "dtype": "float32",
            "head_dim": 16,
            "hidden_act": "silu",
            "hidden_size": 64,
            "initializer_range": 0.02,
            "intermediate_size": 128,
            "max_position_embeddings": 32768,
            "model_type": "qwen3_vl_text",
            "num_attention_heads": 4,
            "num_hidden_layers": 4,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-06,
            "rope_scaling": {"mrope_interleaved": True, "mrope_section": [2, 3, 3], "rope_type": "default"},
            "rope_theta": 5000000,
            "use_cache": True,
            "vocab_size": 640,
        },
        "vision_config": {
            "deepstack_visual_indexes": [0, 2],
            "depth": 4,
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_size": 32,
            "in_channels": 3,
            "initializer_range": 0.02,
            "intermediate_size": 64,
            "model_type": "qwen3_vl",
            "num_heads": 2,
            "num_position_embeddings": 16,
            "out_hidden_size": 64,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
    }


def _make_tiny_qwen3_vl(out_dir: str, seed: int, max_shard_size: str) -> str:
    from huggingface_hub import save_torch_state_dict
    from tokenizers import AddedToken
    from transformers import AutoConfig, Qwen3VLForConditionalGeneration

    tokenizer = build_tokenizer()
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_VISION_TOKENS], special_tokens=True)
    ids = dict(zip(SPECIAL_TOKENS + QWEN_VISION_TOKENS, tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS + QWEN_VISION_TOKENS))))
    raw = tiny_qwen3_vl_config(ids)
    if len(tokenizer) > raw["text_config"]["vocab_size"]:
        raise RuntimeError(f"tiny tokenizer has {len(tokenizer)} tokens, too many for vocab_size {raw['text_config']['vocab_size']}")
    os.makedirs(out_dir, exist_ok=True)
    _write_json(out_dir, "config.json", raw)
    config = AutoConfig.from_pretrained(out_dir)  # read back as transformers reads the published file
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):  # construction's random init must not move the caller's RNG
        model = Qwen3VLForConditionalGeneration(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every weight from the local generator: matrices, norms 1, biases 0
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.08, generator=gen)
            elif "norm" in name:
                param.fill_(1.0)
            else:
                param.zero_()
    save_torch_state_dict({k: v.contiguous() for k, v in model.state_dict().items()}, out_dir, max_shard_size=max_shard_size)
    _write_tokenizer(tokenizer, out_dir)
    bos, eos = raw["text_config"]["bos_token_id"], raw["text_config"]["eos_token_id"]
    _write_json(out_dir, "generation_config.json", {"bos_token_id": bos, "eos_token_id": [eos, bos], "pad_token_id": bos, "do_sample": False})
    _write_json(out_dir, "preprocessor_config.json", {
        "size": {"shortest_edge": 64 * 64, "longest_edge": 128 * 128}, "patch_size": 16, "temporal_patch_size": 2,
        "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "image_processor_type": "Qwen2VLImageProcessorFast", "processor_class": "Qwen3VLProcessor",
    })  # fmt: skip
    _write_json(out_dir, "chat_template.json", {"chat_template": QWEN_CHAT_TEMPLATE})
    return out_dir


def make_tiny_siglip(
    out_dir: str, layout: str = "siglip", width: int = 32, heads: int = 2, head: bool = True, seed: int = 0
) -> str:
    """A tiny random SigLIP checkpoint with its MAP head, the part of SigLIP that LLaVA drops and FastVID
    needs (`fastvid_siglip=OUT_DIR`); the tower width matches the tiny LLaVA checkpoints' (32).

    layout "siglip": the published google/siglip-so400m-patch14-384 layout (a SiglipModel: vision_model.head.*,
    a text tower, model_type siglip); "vision": transformers' SiglipVisionModel (head.*, siglip_vision_model).
    """
    from transformers import SiglipConfig, SiglipModel, SiglipVisionConfig, SiglipVisionModel

    if layout not in ("siglip", "vision"):
        raise ValueError(f"layout={layout!r}: valid layouts are 'siglip' and 'vision'")
    vision = {
        "hidden_size": width,
        "intermediate_size": 2 * width,
        "num_hidden_layers": 3,
        "num_attention_heads": heads,
        "image_size": 384,
        "patch_size": 14,
        "vision_use_head": head,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if layout == "siglip":
            text = {"hidden_size": width, "intermediate_size": 2 * width, "num_hidden_layers": 1,
                    "num_attention_heads": heads, "vocab_size": 64, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}  # fmt: skip
            model = SiglipModel(SiglipConfig(vision_config=vision, text_config=text))
        else:
            model = SiglipVisionModel(SiglipVisionConfig(**vision))
        if head:  # a sharper probe, so the head's attention is far from uniform
            with torch.no_grad():
                (model.vision_model if layout == "siglip" else model).head.probe.mul_(4.0)
    model.save_pretrained(str(out_dir))
    return str(out_dir)


def add_make_tiny_arguments(parser) -> None:
    parser.add_argument("out_dir", help="directory to write the checkpoint to")
    parser.add_argument(
        "--kind", choices=KINDS, default="onevision",
        help="OneVision (one_token, bilinear), LLaVA-Video (grid, average), OneVision in transformers' llava-hf layout, "
        "or Qwen2.5-VL / Qwen3-VL in Qwen's published layout",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)


def run_make_tiny(args) -> int:
    path = make_tiny(args.out_dir, kind=args.kind, seed=args.seed)
    files = sorted(os.listdir(path))
    print(f"wrote tiny {args.kind} checkpoint to {path}: {', '.join(files)}")
    return 0
