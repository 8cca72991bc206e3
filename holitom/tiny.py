"""`holitom make-tiny`: a small random LLaVA checkpoint in exactly the published lmms-lab layout.

Same config.json field names, same weight names (sharded safetensors + index), a Qwen2-style byte-level
BPE tokenizer with the chat special tokens, trained here on a built-in text. Sizes are tiny so tests
run in seconds on 2 CPU cores while keeping every structural feature: 27×27 SigLIP patches at 384 px
(pooling 27→14 or 13), 2 kept SigLIP layers (3 in the tower, select layer −2), 4 Qwen2 layers with
grouped-query attention (4 query heads, 2 KV heads).

One field is not in the published configs: `mm_vision_tower_config`, the tiny SigLIP's own config
(the real tower's config is known by name; a tiny tower has no hub repo to read it from).
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

KINDS = ("onevision", "video")
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


def tiny_config(kind: str = "onevision") -> dict[str, Any]:
    """config.json for a tiny checkpoint: the published field names, small sizes."""
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


def make_tiny(out_dir: str, kind: str = "onevision", seed: int = 0, max_shard_size: str = "400KB") -> str:
    """Write a tiny random checkpoint to `out_dir` and return the path."""
    from llava.model.language_model.llava_qwen import LlavaQwenConfig, LlavaQwenForCausalLM

    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: valid kinds are {KINDS}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"OUT_DIR={out_dir!r} exists and is not a directory")
    os.makedirs(out_dir, exist_ok=True)
    tokenizer = build_tokenizer()
    raw = tiny_config(kind)
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    raw["bos_token_id"], raw["eos_token_id"] = ids[0], ids[2]
    if len(tokenizer) > raw["vocab_size"]:
        raise RuntimeError(f"tiny tokenizer has {len(tokenizer)} tokens, more than vocab_size {raw['vocab_size']}")

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
    model.save_pretrained(out_dir, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(out_dir)
    # The published repos also ship the slow-tokenizer files; write them from the same BPE model.
    bpe = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    with open(os.path.join(out_dir, "vocab.json"), "w") as fh:
        json.dump(bpe["vocab"], fh, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w") as fh:
        fh.write("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in bpe["merges"]))

    # config.json exactly as published: model_type "llava", our field names, no transformers extras.
    with open(os.path.join(out_dir, "config.json"), "w") as fh:
        json.dump(raw, fh, indent=2)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as fh:
        json.dump({"bos_token_id": ids[0], "eos_token_id": [ids[2], ids[0]], "pad_token_id": ids[0]}, fh, indent=2)
    return out_dir


def add_make_tiny_arguments(parser) -> None:
    parser.add_argument("out_dir", help="directory to write the checkpoint to")
    parser.add_argument("--kind", choices=KINDS, default="onevision", help="OneVision (one_token, bilinear) or LLaVA-Video (grid, average)")
    parser.add_argument("--seed", type=int, default=0)


def run_make_tiny(args) -> int:
    path = make_tiny(args.out_dir, kind=args.kind, seed=args.seed)
    files = sorted(os.listdir(path))
    print(f"wrote tiny {args.kind} checkpoint to {path}: {', '.join(files)}")
    return 0
