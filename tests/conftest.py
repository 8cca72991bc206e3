"""Shared fixtures: tiny random checkpoints written in the published layout, loaded through the real
`load_pretrained_model` path."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, os.cpu_count() or 1))

TINY_LAYERS = 4  # decoder layers of the tiny checkpoints


@pytest.fixture(scope="session")
def tiny_ov(tmp_path_factory) -> str:
    from holitom.tools.tiny import make_tiny

    return make_tiny(str(tmp_path_factory.mktemp("tiny_ov")), kind="onevision")


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory) -> str:
    from holitom.tools.tiny import make_tiny

    return make_tiny(str(tmp_path_factory.mktemp("tiny_video")), kind="video")


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory) -> str:
    """A tiny SigLIP with its MAP head (what FastVID reads), as wide as the tiny LLaVA towers."""
    from holitom.tools.tiny import make_tiny_siglip

    return make_tiny_siglip(str(tmp_path_factory.mktemp("siglip") / "tiny-siglip"))


def tiny_value(item, value, siglip: str | None = None):
    """A value of a setting that fits the 4-layer tiny LM (layer settings moved into [1, 3]; FastVID's SigLIP
    head from the tiny SigLIP checkpoint when one is given: the tests run offline)."""
    if item.name == "fastvid_siglip" and siglip is not None:
        return siglip
    if item.layer and value is not None:
        return tuple(range(1, min(len(value), 3) + 1)) if item.sequence else min(value, TINY_LAYERS - 1)
    return value


def load(path: str, **kwargs):
    from llava.model.builder import load_pretrained_model

    kwargs.setdefault("torch_dtype", "float32")
    kwargs.setdefault("device_map", "cpu")
    return load_pretrained_model(path, None, "llava_qwen", **kwargs)


@pytest.fixture()
def ov_model(tiny_ov):
    """A fresh (tokenizer, model, image_processor, max_length) per test: tests may install methods."""
    return load(tiny_ov)


@pytest.fixture()
def video_model(tiny_video):
    return load(tiny_video)


def video_prompt_ids(tokenizer, question: str = "What is happening in this video?") -> torch.Tensor:
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.conversation import conv_templates
    from llava.mm_utils import tokenizer_image_token

    conv = conv_templates["qwen_1_5"].copy()
    conv.append_message(conv.roles[0], "<image>\n" + question)
    conv.append_message(conv.roles[1], None)
    return tokenizer_image_token(conv.get_prompt(), tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt")[None]


def random_frames(num_frames: int = 4, seed: int = 0) -> torch.Tensor:
    """Preprocessed frames (T, 3, 384, 384) in the processor's value range [-1, 1], temporally correlated."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 384, 384, generator=gen) * 2 - 1
    drift = torch.rand(num_frames, 3, 384, 384, generator=gen) * 2 - 1
    return (0.8 * base + 0.2 * drift).clamp(-1, 1)
