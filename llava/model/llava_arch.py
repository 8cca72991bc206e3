"""The multimodal half of LLaVA-OneVision / LLaVA-Video: vision tower → projector → pooling → newline
layout → splicing into the prompt at IMAGE_TOKEN_INDEX.

`LlavaMetaModel` adds the vision modules to the language model's backbone (weight names as published:
`model.vision_tower.*`, `model.mm_projector.*`, `model.image_newline`); `LlavaMetaForCausalLM` turns
images and videos into visual token sequences and builds `inputs_embeds`.

Extension points (set per instance, never on the class):
- `video_token_compressor`: callable(model, pooled (F, N, d)) -> tokens (M, d) replacing the vanilla
  video layout (newlines included); None = vanilla.
- `sequence_state`: a `SequenceState` replaced at the start of every sequence (`start_sequence`): where the
  visual tokens sit, the prompt length, whether the prefill has run, and the survivors for the loss.

Devices: under a multi-GPU device map the vision tower, the projector, `image_newline` and `embed_tokens`
may sit on different GPUs. Every concatenation here moves its pieces to the device of the tensor it extends:
the newline to the pooled features' device, the visual tokens to the text embeddings' device.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.model.multimodal_encoder.builder import build_vision_tower
from llava.model.multimodal_projector.builder import build_vision_projector
from llava.model.sequence import SequenceState

POOL_MODES = ("bilinear", "average", "max")
NEWLINE_POSITIONS = ("one_token", "grid", "frame", "no_token")


class LlavaMetaModel:
    """Mixin for the LM backbone: owns the vision tower, projector and learned newline vector."""

    def init_multimodal_modules(self, config: Any) -> None:
        if not getattr(config, "mm_vision_tower", None):
            return
        self.vision_tower = build_vision_tower(config)
        self.mm_projector = build_vision_projector(config)
        self.image_newline = nn.Parameter(torch.zeros(config.hidden_size))

    def get_vision_tower(self):
        return getattr(self, "vision_tower", None)


def pool_2d(features: torch.Tensor, side: int, stride: int, mode: str) -> torch.Tensor:
    """(B, side*side, C) → (B, side'*side', C): 2-D pooling over the patch grid.

    bilinear interpolates to ceil(side/stride); average/max pool with kernel=stride (floor).
    """
    if mode not in POOL_MODES:
        raise ValueError(f"mm_spatial_pool_mode={mode!r} is not supported; valid: {POOL_MODES}")
    b, n, c = features.shape
    if n != side * side:
        raise ValueError(f"cannot pool {n} tokens as a {side}×{side} grid")
    grid = features.view(b, side, side, c).permute(0, 3, 1, 2)
    if mode == "bilinear":
        out = math.ceil(side / stride)
        grid = F.interpolate(grid, size=(out, out), mode="bilinear")
    elif mode == "average":
        grid = F.avg_pool2d(grid, stride)
    else:
        grid = F.max_pool2d(grid, stride)
    return grid.permute(0, 2, 3, 1).reshape(b, -1, c)


def add_video_newlines(pooled: torch.Tensor, newline: torch.Tensor, position: str) -> torch.Tensor:
    """Vanilla video layout. pooled (F, N, d), newline (d,) → (M, d).

    one_token: all frames then one newline; grid: a newline after every row of every frame;
    frame: a newline after every frame; no_token: frames only.
    """
    f, n, d = pooled.shape
    newline = newline.to(device=pooled.device, dtype=pooled.dtype)
    if position == "one_token":
        return torch.cat([pooled.reshape(f * n, d), newline[None]], dim=0)
    if position == "grid":
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"grid newlines need a square token grid, got {n} tokens per frame")
        rows = pooled.view(f, side, side, d)
        rows = torch.cat([rows, newline.expand(f, side, 1, d)], dim=2)
        return rows.reshape(-1, d)
    if position == "frame":
        return torch.cat([pooled, newline.expand(f, 1, d)], dim=1).reshape(-1, d)
    if position == "no_token":
        return pooled.reshape(f * n, d)
    raise ValueError(f"mm_newline_position={position!r} is not supported; valid: {NEWLINE_POSITIONS}")


class LlavaMetaForCausalLM:
    """Mixin for the causal-LM class: visual encoding and prompt splicing."""

    video_token_compressor = None  # per-instance override, see module docstring
    vision_chunk_frames = 16  # frames per pass through tower → projector → pooling (set per instance)

    def get_model(self):
        return self.model

    def get_vision_tower(self):
        return self.get_model().get_vision_tower()

    @property
    def sequence_state(self) -> SequenceState:
        state = self.__dict__.get("_sequence_state")
        if state is None:
            state = self.__dict__["_sequence_state"] = SequenceState()
        return state

    def start_sequence(self, visual_spans: list, prompt_lengths: list[int]) -> SequenceState:
        """Begin a new sequence: a fresh `SequenceState` (nothing of the previous prompt survives) whose
        first LM pass is its prefill."""
        state = self.__dict__["_sequence_state"] = SequenceState(visual_spans, list(prompt_lengths))
        return state

    def start_text_sequence(self, input_ids: torch.Tensor) -> None:
        """Begin a text-only sequence: every row has no visual span."""
        batch, length = input_ids.shape
        self.start_sequence([[] for _ in range(batch)], [length] * batch)

    # ---- visual features -------------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → projected patch features (B, P, d)."""
        model = self.get_model()
        features = model.vision_tower(images)
        projector_dtype = next(model.mm_projector.parameters()).dtype
        return model.mm_projector(features.to(projector_dtype))

    def get_2dPool(self, features: torch.Tensor, stride: int | None = None, mode: str | None = None) -> torch.Tensor:  # noqa: N802 - LLaVA-NeXT name
        """Pool (B, P, C) patch features (or scores with C=1) the way this model pools video frames."""
        stride = int(stride or getattr(self.config, "mm_spatial_pool_stride", None) or 2)
        mode = mode or getattr(self.config, "mm_spatial_pool_mode", None) or "bilinear"
        side = self.get_vision_tower().num_patches_per_side
        return pool_2d(features, side, stride, mode)

    def video_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """One video (T, 3, H, W) → its visual token sequence (M, d), newlines included.

        Frames go through tower → projector → pooling `vision_chunk_frames` at a time, so the memory this
        needs beyond its pooled output does not grow with the number of frames (the projector's output alone
        is 729 × d per frame: 5.4 GB for 1024 frames of the 7B model, 12 GB for 72B).
        """
        if frames.dim() != 4 or frames.shape[0] == 0:
            raise ValueError(f"a video must be a (frames, 3, H, W) tensor with ≥1 frame, got {tuple(frames.shape)}")
        chunk = max(1, int(self.vision_chunk_frames))
        pooled = None
        for start in range(0, frames.shape[0], chunk):
            part = self.get_2dPool(self.encode_images(frames[start : start + chunk]))
            if start == 0 and part.shape[0] == frames.shape[0]:
                pooled = part  # one chunk: no copy
                break
            if pooled is None:  # written chunk by chunk: never the chunks and their concatenation at once
                pooled = part.new_empty(frames.shape[0], *part.shape[1:])
            pooled[start : start + part.shape[0]] = part
        newline = self.get_model().image_newline
        compressor = getattr(self, "video_token_compressor", None)
        if compressor is not None:
            tokens = compressor(self, pooled)
        else:
            position = getattr(self.config, "mm_newline_position", None) or "one_token"
            tokens = add_video_newlines(pooled, newline, position)
        self.sequence_state.pooled_tokens.append(pooled.shape[0] * pooled.shape[1])
        return tokens

    def image_tokens(self, image: torch.Tensor) -> torch.Tensor:
        """One image (1, 3, H, W) at base resolution → (P [+1 newline], d)."""
        if image.dim() == 3:
            image = image[None]
        if image.dim() != 4 or image.shape[0] != 1:
            raise ValueError(
                f"got an image of shape {tuple(image.shape)}: multi-patch (anyres) images are not supported yet; "
                "load with overwrite_config={'image_aspect_ratio': 'pad'} to use the base-resolution path"
            )
        tokens = self.encode_images(image)[0]
        if "unpad" in (getattr(self.config, "mm_patch_merge_type", None) or ""):
            newline = self.get_model().image_newline.to(device=tokens.device, dtype=tokens.dtype)
            tokens = torch.cat([tokens, newline[None]], dim=0)
        self.sequence_state.pooled_tokens.append(tokens.shape[0])
        return tokens

    def visual_tokens(self, images: Any, modalities: Sequence[str] | None) -> list[torch.Tensor]:
        """Per image/video in the batch: its (M_i, d) token sequence."""
        if isinstance(images, torch.Tensor):
            items = list(images) if images.dim() in (4, 5) else [images]
        elif isinstance(images, (list, tuple)):
            items = list(images)
        else:
            raise ValueError(f"images must be a tensor or a list of tensors, got {type(images).__name__}")
        if modalities is None:
            modalities = ["image"] * len(items)
        elif isinstance(modalities, str):
            modalities = [modalities]  # lmms-eval's llava_vid passes modalities="video"
        modalities = list(modalities)
        if len(modalities) < len(items):
            # LLaVA-NeXT callers pass one modality for the whole batch; repeat the last one.
            modalities += [modalities[-1]] * (len(items) - len(modalities))
        tokens = []
        for item, modality in zip(items, modalities):
            if modality == "video":
                tokens.append(self.video_tokens(item))
            elif modality == "image":
                tokens.append(self.image_tokens(item))
            else:
                raise ValueError(f"unknown modality {modality!r}; valid: 'image', 'video'")
        return tokens

    # ---- splicing --------------------------------------------------------------------------------
    def prepare_inputs_labels_for_multimodal(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        past_key_values: Any,
        labels: torch.Tensor | None,
        images: Any,
        modalities: Sequence[str] | None = None,
        image_sizes: Any = None,
        padding_side: str | None = None,
    ):
        """Replace every IMAGE_TOKEN_INDEX in `input_ids` (B, L) by its visual tokens.

        Returns (None, position_ids, attention_mask, past_key_values, inputs_embeds, labels) like
        LLaVA-NeXT; rows are padded on `padding_side` (default: config.tokenizer_padding_side).
        """
        state = self.start_sequence([], [])
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        batch = input_ids.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        attention_mask = attention_mask.bool()
        if labels is None:
            labels = torch.full_like(input_ids, IGNORE_INDEX)
            had_labels = False
        else:
            had_labels = True

        # The one read of the prompt from the device: where the placeholders and the padding are.
        host_ids, host_mask = torch.stack([input_ids, attention_mask.to(input_ids.dtype)]).tolist()
        placeholders = sum(row.count(IMAGE_TOKEN_INDEX) for row in host_ids)
        visual = self.visual_tokens(images, modalities) if placeholders else []
        if images is not None and not placeholders and len(images) > 0:
            raise ValueError(
                "images/videos were given but the prompt has no <image> placeholder (IMAGE_TOKEN_INDEX): "
                "they would be ignored; put DEFAULT_IMAGE_TOKEN in the prompt"
            )
        if images is not None and placeholders and len(visual) != placeholders:
            raise ValueError(
                f"the prompt has {placeholders} <image> placeholder(s) but {len(visual)} image/video input(s) were given"
            )
        embed = self.get_model().embed_tokens
        rows_embeds, rows_labels, spans = [], [], []
        next_visual = 0
        for row in range(batch):
            valid = [i for i, keep in enumerate(host_mask[row]) if keep]
            if valid and valid[-1] - valid[0] + 1 == len(valid):  # left or right padding: a slice
                take: slice | torch.Tensor = slice(valid[0], valid[-1] + 1)
            else:
                take = torch.tensor(valid, dtype=torch.long, device=input_ids.device)
            ids, lab = input_ids[row][take], labels[row][take]
            cut = [j for j, i in enumerate(valid) if host_ids[row][i] == IMAGE_TOKEN_INDEX]
            bounds = [-1, *cut, ids.shape[0]]
            text_embeds = embed(torch.cat([ids[a + 1 : b] for a, b in zip(bounds[:-1], bounds[1:])]))
            pieces, piece_labels, row_spans, offset, text_at = [], [], [], 0, 0
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
                length = b - a - 1
                pieces.append(text_embeds[text_at : text_at + length])
                piece_labels.append(lab[a + 1 : b])
                text_at += length
                offset += length
                if i < len(cut):
                    tokens = visual[next_visual].to(device=text_embeds.device, dtype=text_embeds.dtype)
                    if tokens.shape[0] == 0:
                        raise ValueError(f"image/video {next_visual} produced 0 visual tokens")
                    next_visual += 1
                    pieces.append(tokens)
                    piece_labels.append(torch.full((tokens.shape[0],), IGNORE_INDEX, dtype=lab.dtype, device=lab.device))
                    row_spans.append((offset, tokens.shape[0]))
                    state.visual_tokens.append(tokens.shape[0])
                    offset += tokens.shape[0]
            rows_embeds.append(torch.cat(pieces))
            rows_labels.append(torch.cat(piece_labels))
            spans.append(row_spans)

        max_len = getattr(self.config, "tokenizer_model_max_length", None)
        longest = max(r.shape[0] for r in rows_embeds)
        if max_len is not None and longest > max_len:
            warnings.warn(
                f"the multimodal prompt has {longest} tokens, more than tokenizer_model_max_length={max_len}",
                stacklevel=2,
            )
        side = padding_side or getattr(self.config, "tokenizer_padding_side", None) or "right"
        d = rows_embeds[0].shape[-1]
        device = rows_embeds[0].device
        embeds = rows_embeds[0].new_zeros(batch, longest, d)
        new_labels = torch.full((batch, longest), IGNORE_INDEX, dtype=labels.dtype, device=device)
        new_mask = torch.zeros(batch, longest, dtype=attention_mask.dtype, device=device)
        new_pos = torch.zeros(batch, longest, dtype=torch.long, device=device)
        for row, (e, lab) in enumerate(zip(rows_embeds, rows_labels)):
            n = e.shape[0]
            start = longest - n if side == "left" else 0
            embeds[row, start : start + n] = e
            new_labels[row, start : start + n] = lab
            new_mask[row, start : start + n] = True
            new_pos[row, start : start + n] = torch.arange(n, device=device)
            spans[row] = [(s + start, n_tok) for s, n_tok in spans[row]]
            state.prompt_lengths.append(start + n)
        state.visual_spans = spans
        return (
            None,
            new_pos if position_ids is not None else None,
            new_mask,
            past_key_values,
            embeds,
            new_labels if had_labels else None,
        )
