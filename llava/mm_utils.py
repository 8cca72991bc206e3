"""Multimodal helpers with LLaVA-NeXT's names and call signatures (what lmms-eval's wrappers import).

- `tokenizer_image_token`: prompt text → token ids with `IMAGE_TOKEN_INDEX` where "<image>" was.
- `process_images`: PIL images → stacked pixel tensor at the tower's base resolution.
- `KeywordsStoppingCriteria`: stop generation once a keyword (e.g. "<|im_end|>") has been generated.
- `get_model_name_from_path`, `expand2square`, `load_image_from_base64`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from io import BytesIO
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import StoppingCriteria

from llava.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX

# Aspect-ratio modes served by a plain resize to the base resolution.
_RESIZE_MODES = (None, "", "square", "resize")


def _anyres_error(mode: str) -> ValueError:
    return ValueError(
        f"image_aspect_ratio={mode!r}: anyres image tiling is not supported yet; load the model with "
        "overwrite_config={'image_aspect_ratio': 'pad'} to process images at the base resolution "
        "(videos are not affected)"
    )


def _bos_id(tokenizer: Any) -> int | None:
    return getattr(tokenizer, "bos_token_id", None)


def _strip_bos(ids: list[int], bos: int | None) -> list[int]:
    return ids[1:] if bos is not None and ids and ids[0] == bos else ids


def tokenizer_image_token(
    prompt: str,
    tokenizer: Any,
    image_token_index: int = IMAGE_TOKEN_INDEX,
    return_tensors: str | None = None,
) -> list[int] | torch.Tensor:
    """Tokenize `prompt`, putting `image_token_index` where each "<image>" was.

    The text between placeholders is tokenized chunk by chunk (so "<image>" never reaches the tokenizer).
    If the tokenizer adds a BOS token, the result keeps exactly one, at the start (as LLaVA does).

    Returns a list of ints, or a 1-D LongTensor (L,) with `return_tensors="pt"`.
    """
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
    if return_tensors not in (None, "pt"):
        raise ValueError(f"return_tensors must be None or 'pt', got {return_tensors!r}")
    bos = _bos_id(tokenizer)
    chunks = [list(tokenizer(chunk)["input_ids"]) for chunk in prompt.split(DEFAULT_IMAGE_TOKEN)]
    ids = [bos] if bos is not None and chunks[0][:1] == [bos] else []
    for i, chunk in enumerate(chunks):
        if i > 0:
            ids.append(image_token_index)
        ids.extend(_strip_bos(chunk, bos))
    if return_tensors == "pt":
        return torch.tensor(ids, dtype=torch.long)
    return ids


def get_model_name_from_path(model_path: str | os.PathLike) -> str:
    """Model name from a hub id or local path: its last component, or "<run>_checkpoint-N" for trainer dirs."""
    parts = os.fspath(model_path).strip().rstrip("/").split("/")
    if not parts[-1]:
        raise ValueError(f"model_path has no name component: {model_path!r}")
    if parts[-1].startswith("checkpoint-") and len(parts) > 1:
        return f"{parts[-2]}_{parts[-1]}"
    return parts[-1]


def expand2square(pil_img: Image.Image, background_color: Sequence[int] | int) -> Image.Image:
    """Pad an image to a square canvas of `background_color`, keeping it centred (LLaVA's "pad" mode)."""
    width, height = pil_img.size
    if width == height:
        return pil_img
    side = max(width, height)
    fill = background_color if isinstance(background_color, int) else tuple(int(c) for c in background_color)
    canvas = Image.new(pil_img.mode, (side, side), fill)
    canvas.paste(pil_img, ((side - width) // 2, (side - height) // 2))
    return canvas


def process_anyres_image(image: Image.Image, processor: Any, grid_pinpoints: Any) -> torch.Tensor:
    """Anyres tiling is not implemented; present so imports of LLaVA-NeXT's name succeed."""
    raise _anyres_error("anyres")


def _is_frames(images: Any) -> bool:
    """Arrays/tensors are decoded video frames; PIL images are images."""
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return True
    return (
        isinstance(images, (list, tuple))
        and len(images) > 0
        and all(isinstance(im, (np.ndarray, torch.Tensor)) for im in images)
    )


def process_images(images: Any, image_processor: Any, model_cfg: Any) -> torch.Tensor:
    """Images → pixel tensor (N, 3, H, W) at the processor's base resolution.

    `model_cfg.image_aspect_ratio` picks the mode for PIL images: "pad" pads each image to a square of
    the processor's mean colour first; None/"square" resizes directly; "anyres*" (tiling) raises a
    ValueError saying how to fall back to "pad".

    uint8 arrays ((T, H, W, 3), or a list of (H, W, 3)) are video frames: like LLaVA-NeXT's video path
    they are resized directly, never padded or tiled, whatever the aspect-ratio mode — so a single
    decoded frame works even on an anyres config.
    """
    if _is_frames(images):
        return image_processor.preprocess(images, return_tensors="pt")["pixel_values"]
    if isinstance(images, Image.Image):
        images = [images]
    if not isinstance(images, (list, tuple)) or not images:
        raise ValueError(f"images must be a non-empty list of PIL images, got {type(images).__name__}")
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise ValueError(f"images[{i}] must be a PIL image, got {type(image).__name__}")
    mode = getattr(model_cfg, "image_aspect_ratio", None)
    if isinstance(mode, str) and mode.startswith("anyres"):
        raise _anyres_error(mode)
    if mode == "pad":
        fill = tuple(int(m * 255) for m in image_processor.image_mean)
        images = [expand2square(image.convert("RGB"), fill) for image in images]
    elif mode not in _RESIZE_MODES:
        raise ValueError(f"image_aspect_ratio={mode!r} is not supported (use 'pad' or 'square')")
    return image_processor.preprocess(list(images), return_tensors="pt")["pixel_values"]


def load_image_from_base64(image: str) -> Image.Image:
    return Image.open(BytesIO(base64.b64decode(image)))


class KeywordsStoppingCriteria(StoppingCriteria):
    """Stop a sequence once its generated text ends in (token ids) or contains (decoded text) a keyword.

    Args:
        keywords: stop strings, e.g. ["<|im_end|>"].
        tokenizer: used to tokenize the keywords and decode the generated tail.
        input_ids: the prompt, (B, L) or (L,); only tokens after it count as generated.

    `__call__(output_ids (B, L'), scores) -> BoolTensor (B,)`, True for rows that are done (the return
    type transformers 5's `StoppingCriteriaList` combines with `|`).
    """

    def __init__(self, keywords: str | Sequence[str], tokenizer: Any, input_ids: torch.Tensor) -> None:
        if isinstance(keywords, str):
            keywords = [keywords]
        keywords = list(keywords)
        if not keywords or not all(isinstance(k, str) and k for k in keywords):
            raise ValueError(f"keywords must be a non-empty list of non-empty strings, got {keywords!r}")
        self.keywords = keywords
        self.tokenizer = tokenizer
        bos = _bos_id(tokenizer)
        ids = [_strip_bos(list(tokenizer(k)["input_ids"]), bos) for k in keywords]
        self.keyword_ids = [torch.tensor(k, dtype=torch.long) for k in ids if k]
        # Decode window: a keyword can split into more tokens in context than alone, but never into more
        # tokens than it has characters.
        self.window = max([len(k) for k in ids] + [len(k) for k in keywords])
        self.start_len = int(input_ids.shape[-1])

    def __call__(self, output_ids: torch.LongTensor, scores: Any = None, **kwargs: Any) -> torch.BoolTensor:
        batch, length = output_ids.shape
        done = torch.zeros(batch, dtype=torch.bool, device=output_ids.device)
        generated = length - self.start_len
        if generated <= 0:
            return done
        for kw in self.keyword_ids:
            if len(kw) <= generated:
                done |= (output_ids[:, -len(kw) :] == kw.to(output_ids.device)).all(dim=1)
        if bool(done.all()):
            return done
        tails = self.tokenizer.batch_decode(
            output_ids[:, -min(generated, self.window) :], skip_special_tokens=False
        )
        found = [any(k in text for k in self.keywords) for text in tails]
        return done | torch.tensor(found, dtype=torch.bool, device=output_ids.device)
