"""Random-weight models at a published shape (for benchmarks; `holitom.tools.tiny` writes test checkpoints).

`build_random_model("ov-7b", layers=8)` builds `LlavaQwenForCausalLM` with the published LM sizes
(`holitom.shapes.SHAPES`) and the SigLIP-so400m tower, directly on the device in the dtype, without
transformers' (slow) initialisation and without any download; weights are a seeded uniform of std 0.02.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from holitom.shapes import SHAPES, SIGLIP_SO400M

INIT_STD = 0.02  # Qwen2 / SigLIP initializer_range
# holitom.tools.tiny's configs (4 LM layers, 2 SigLIP layers): OneVision and LLaVA-Video (grid newlines, average pooling)
TINY_SHAPES = {"tiny": "onevision", "tiny-video": "video"}
SHAPE_CHOICES = (*TINY_SHAPES, *SHAPES)


def shape_config(shape: str, layers: int | None = None, vision_layers: int | None = None, attn: str = "sdpa"):
    """LlavaQwenConfig of a named shape (the published config.json fields), optionally truncated.

    layers: Qwen2 decoder layers (default: full depth); vision_layers: kept SigLIP layers (default 26 for
    so400m, 2 for tiny). `tiny` / `tiny-video` are holitom.tools.tiny's OneVision / LLaVA-Video configs.
    """
    from holitom.tools.tiny import tiny_config
    from llava.model.language_model.llava_qwen import LlavaQwenConfig
    from llava.model.multimodal_encoder.siglip_encoder import KNOWN_TOWERS

    if shape not in SHAPE_CHOICES:
        raise ValueError(f"--shape={shape!r}: valid shapes are {', '.join(SHAPE_CHOICES)}")
    raw = tiny_config(SHAPES[shape].kind if shape in SHAPES else TINY_SHAPES[shape])
    raw.pop("model_type")
    if shape in SHAPES:
        lm = SHAPES[shape]
        raw.update(
            hidden_size=lm.hidden,
            intermediate_size=lm.ffn,
            num_hidden_layers=lm.num_layers,
            num_attention_heads=lm.heads,
            num_key_value_heads=lm.kv_heads,
            vocab_size=lm.vocab,
            tie_word_embeddings=lm.tied,
            max_window_layers=lm.num_layers,
            mm_hidden_size=KNOWN_TOWERS[SIGLIP_SO400M]["hidden_size"],
            mm_vision_tower=SIGLIP_SO400M,
            torch_dtype="bfloat16",
        )
        tower = dict(KNOWN_TOWERS[SIGLIP_SO400M])
    else:
        tower = dict(raw["mm_vision_tower_config"])
    full_layers, full_vision = raw["num_hidden_layers"], tower["num_hidden_layers"] - 1
    for name, value, full in (
        ("--layers", layers, full_layers),
        ("--vision-layers", vision_layers, full_vision),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= full
        ):
            raise ValueError(f"{name}={value!r}: must be an integer in [1, {full}] for --shape {shape}")
    if layers is not None:
        raw["num_hidden_layers"] = raw["max_window_layers"] = layers
    if vision_layers is not None:
        tower["num_hidden_layers"] = vision_layers + 1  # select layer −2: the last layer is dropped
    # Explicit, so that a truncated tower is built (the full one is known by name).
    raw["mm_vision_tower_config"] = tower
    config = LlavaQwenConfig(**raw)
    config._attn_implementation = attn
    return config


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@torch.no_grad()
def fill_random_(model: nn.Module, seed: int = 0, std: float = INIT_STD) -> nn.Module:
    """Random weights in place, fast: uniform with standard deviation `std` (≈6× faster than normal_ on
    CPU); norm weights 1, biases 0, the newline vector unit scale. Shared (tied) tensors are filled once."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    bound = std * math.sqrt(3.0)
    for name, param in model.named_parameters():  # named_parameters() yields a tied tensor once
        if name.endswith("bias"):
            param.zero_()
        elif param.dim() == 1 and "norm" in name:
            param.fill_(1.0)
        elif name.endswith("image_newline"):
            param.uniform_(-math.sqrt(3.0), math.sqrt(3.0), generator=gen)
        else:
            param.uniform_(-bound, bound, generator=gen)
    return model


def build_random_model(
    shape: str,
    layers: int | None = None,
    vision_layers: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    attn: str = "sdpa",
    seed: int = 0,
) -> nn.Module:
    """A `LlavaQwenForCausalLM` with random weights at a named shape, built directly on `device` in `dtype`."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5
        from transformers.modeling_utils import no_init_weights

    from llava.model.language_model.llava_qwen import LlavaQwenForCausalLM

    config = shape_config(shape, layers, vision_layers, attn)
    with no_init_weights(), torch.device(device), _default_dtype(dtype):
        model = LlavaQwenForCausalLM(config)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.get_model().embed_tokens.weight
    return fill_random_(model, seed).eval()


def estimated_bytes(config, dtype: torch.dtype) -> int:
    """Parameter bytes of a LlavaQwen config (LM + tower + projector), to refuse what cannot fit."""
    d, m, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = d // config.num_attention_heads * config.num_key_value_heads
    lm = n * (2 * d * d + 2 * d * kv + 3 * d * m) + config.vocab_size * d * (
        1 if config.tie_word_embeddings else 2
    )
    tower = config.mm_vision_tower_config
    v, vm = tower["hidden_size"], tower["intermediate_size"]
    vision = (tower["num_hidden_layers"] - 1) * (4 * v * v + 2 * v * vm) + v * d + d * d
    return (lm + vision) * torch.finfo(dtype).bits // 8


def write_random_map_head(out_dir: str, tower_config, seed: int = 0, std: float = INIT_STD) -> str:
    """A SigLIP attention-pooling (MAP) head with random weights for a tower of this config, in the
    transformers `SiglipVisionModel` layout `holitom.baselines.siglip_head.load_map_head` reads (config.json +
    the head's safetensors only): FastVID's extra part, for timing it with no download."""
    import json
    import os

    from safetensors.torch import save_file

    width, mlp = tower_config.hidden_size, tower_config.intermediate_size
    gen = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * std

    tensors = {
        "post_layernorm.weight": torch.ones(width), "post_layernorm.bias": torch.zeros(width),
        "head.probe": normal(1, 1, width),
        "head.attention.in_proj_weight": normal(3 * width, width), "head.attention.in_proj_bias": torch.zeros(3 * width),
        "head.attention.out_proj.weight": normal(width, width), "head.attention.out_proj.bias": torch.zeros(width),
        "head.layernorm.weight": torch.ones(width), "head.layernorm.bias": torch.zeros(width),
        "head.mlp.fc1.weight": normal(mlp, width), "head.mlp.fc1.bias": torch.zeros(mlp),
        "head.mlp.fc2.weight": normal(width, mlp), "head.mlp.fc2.bias": torch.zeros(width),
    }  # fmt: skip
    config = {
        "model_type": "siglip_vision_model",
        "hidden_size": width,
        "intermediate_size": mlp,
        "num_attention_heads": tower_config.num_attention_heads,
        "num_hidden_layers": tower_config.num_hidden_layers,
        "image_size": tower_config.image_size,
        "patch_size": tower_config.patch_size,
        "hidden_act": tower_config.hidden_act,
        "layer_norm_eps": tower_config.layer_norm_eps,
        "vision_use_head": True,
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2)
    save_file(tensors, os.path.join(out_dir, "model.safetensors"))
    return out_dir
