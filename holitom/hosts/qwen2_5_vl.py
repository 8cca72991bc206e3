"""Host adapter for transformers' Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`).

A video enters the LM as one run of t·(h/2)·(w/2) `video_token_id` placeholders (grid (t, h, w) in 14-px patches, two
frames per temporal patch, 2×2 patches per token; no newline). HoliTom's "frame" here is the temporal patch, and
its N = (h/2)·(w/2) tokens depend on the video's resolution. The LM numbers tokens with M-RoPE: every video token
has a (t, h, w) position of its own, text continues from the video's largest position (`get_rope_index`).

With a video-token compressor installed, a pass that starts a sequence is rewritten before the model runs:
1. the positions of the UNREDUCED prompt, with the model's own `get_rope_index` (mm_token_type_ids derived from the
   input ids when not given);
2. each video encoded by the host (tower → merger, a few temporal patches at a time), compressed by the method,
   which returns the kept tokens with their origins (`VideoTokens`: temporal patch and index in its grid);
3. the placeholder run shrunk to the tokens kept (input ids, attention mask, labels, mm_token_type_ids), the kept
   tokens written over it (`inputs_embeds`), and `position_ids` = the unreduced positions' rows of the survivors:
   a kept token keeps its own (t, h, w), a merged token takes the position of the token it was merged into, and
   text after the video keeps the unreduced numbering;
4. `model.model.rope_deltas` = the unreduced deltas plus the tokens removed, so decoding (which counts from the
   cache length) continues the unreduced numbering; `generate` gets the same position_ids and extends them.
Inside the LM, cuts (HoliTom's merge at K, FastV, PDrop) gather the survivors' rows of the decoder layers' cos/sin
(`holitom.patch.qwen2`), so positions survive there too. The per-sequence machinery (prompt state, loss on
survivors, the instance-level `generate`) is the llava-hf host's (`holitom.hosts.hf_onevision.SequenceTracker`).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from holitom.hosts.base import VideoTokens
from holitom.hosts.hf_onevision import SequenceTracker, TransformersHost
from holitom.hosts.qwen_vision import QwenVisionProbe
from llava.errors import HookError
from llava.model.sequence import SequenceState

VISION_CHUNK = 8  # temporal patches per tower run while a method encodes a video (`model.vision_chunk_patches`)


def _version_error(what: str) -> HookError:
    import transformers

    return HookError(f"Qwen2.5-VL host: {what} (transformers {transformers.__version__})")


class Qwen25VLHost(TransformersHost):
    """A transformers `Qwen2_5_VLForConditionalGeneration` instance as a method host."""

    positions = "mrope"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        for path in ("model.visual.blocks", "model.language_model.layers", "model.get_rope_index"):
            target: Any = model
            for part in path.split("."):
                target = getattr(target, part, None)
            if target is None:
                raise _version_error(f"{type(model).__name__} has no {path}")

    @staticmethod
    def accepts(model: Any) -> bool:
        from transformers import Qwen2_5_VLForConditionalGeneration

        return isinstance(model, Qwen2_5_VLForConditionalGeneration)

    @property
    def vision_probe_layer(self) -> nn.Module:
        """The tower's last block; it must be a full-attention block (one chunk per temporal patch)."""
        blocks = self.model.model.visual.blocks
        full = self.model.config.vision_config.fullatt_block_indexes
        if len(blocks) - 1 not in full:
            raise ValueError(
                f"the last vision block ({len(blocks) - 1}) is a window-attention block (fullatt_block_indexes={full}): "
                "HoliTom's scores need a full-attention last block"
            )
        return blocks[-1]

    @property
    def newline_layout(self) -> str:
        return "no_token"

    @property
    def image_newline(self) -> torch.Tensor:
        raise ValueError("Qwen2.5-VL has no newline token")

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """(B, P, C) patch values in the processor's order → (B, P/4, C): the mean over each 2×2 merge group."""
        unit = self.model.model.visual.spatial_merge_size ** 2
        return features.view(features.shape[0], -1, unit, features.shape[-1]).mean(dim=2)

    def attention_probe(self, reference: bool = False) -> QwenVisionProbe:
        return QwenVisionProbe(self, reference=reference)

    def attach(self) -> QwenSequenceTracker:
        return QwenSequenceTracker(self)


def token_types(ids: torch.Tensor, config: Any) -> torch.Tensor:
    """mm_token_type_ids as Qwen's processor makes them: 0 text, 1 image, 2 video placeholder. (B, L) int."""
    return (ids == config.image_token_id).to(torch.int) + 2 * (ids == config.video_token_id).to(torch.int)


def check_grids(grids: torch.Tensor, patches: int, rows: int, merge: int) -> list[tuple[int, int, int]]:
    """video_grid_thw (rows, 3) → [(t, h, w)], checked against the patch rows given (one video per prompt row)."""
    if not isinstance(grids, torch.Tensor) or grids.dim() != 2 or grids.shape != (rows, 3):
        shape = tuple(grids.shape) if isinstance(grids, torch.Tensor) else type(grids).__name__
        raise ValueError(f"video_grid_thw must be ({rows}, 3): one video per prompt row, got {shape}")
    found = [tuple(int(v) for v in row) for row in grids.tolist()]
    for t, h, w in found:
        if t < 1 or h < merge or w < merge or h % merge or w % merge:
            raise ValueError(f"video grid (t={t}, h={h}, w={w}) is smaller than one {merge}×{merge} merged patch or not a multiple of it")
    if sum(t * h * w for t, h, w in found) != patches:
        raise ValueError(f"pixel_values_videos has {patches} patch rows, video_grid_thw {found} needs {sum(t * h * w for t, h, w in found)}")
    return found


def unreduced_positions(model: nn.Module, ids: torch.Tensor, types: torch.Tensor, kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's own M-RoPE positions (3, B, L) and deltas (B, 1) of the unreduced prompt."""
    rope_index = model.model.get_rope_index
    if "mm_token_type_ids" not in inspect.signature(rope_index).parameters:
        raise _version_error("get_rope_index takes no mm_token_type_ids")
    return rope_index(
        ids,
        mm_token_type_ids=types,
        video_grid_thw=kwargs.get("video_grid_thw"),
        second_per_grid_ts=kwargs.get("second_per_grid_ts"),
        attention_mask=kwargs.get("attention_mask"),
    )


def survivor_sources(is_video: torch.Tensor, keep: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
    """Where each token of the shortened prompt sits in the unreduced one. is_video/keep (B, L) bool; origins
    (B, M) indices into each row's placeholder run. Returns (B, L') long: text tokens their own index, the m-th
    remaining placeholder run start + origins[:, m]."""
    batch, length = is_video.shape
    short = int(keep[0].sum())
    source = torch.arange(length, device=is_video.device).expand(batch, length)[keep].view(batch, short)
    start = is_video.to(torch.int8).argmax(dim=1, keepdim=True)
    slots = is_video[keep].view(batch, short)
    return source.masked_scatter(slots, (start + origins.to(start.device)).reshape(-1))


class QwenSequenceTracker(SequenceTracker):
    """The llava-hf host's hooks (sequence state, loss on survivors, instance-level generate) with Qwen2.5-VL's
    compression: placeholders shrunk, M-RoPE positions of the survivors gathered from the unreduced prompt."""

    def video_arguments(self, kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, list, int]:
        """The checked video arguments of a pass to compress: (input_ids, pixel_values_videos, grids, merge size);
        fills in `mm_token_type_ids` when the caller gave none."""
        config = self.host.model.config
        ids = kwargs.get("input_ids")
        if ids is None:
            raise ValueError("video compression needs input_ids with the video placeholders, not inputs_embeds")
        for name in ("position_ids", "inputs_embeds", "mm_encoder_outputs", "pixel_values"):
            if kwargs.get(name) is not None:
                raise ValueError(f"{name} cannot be given with pixel_values_videos while a video-token compressor is installed")
        merge = config.vision_config.spatial_merge_size
        videos = kwargs["pixel_values_videos"]
        grids = check_grids(kwargs.get("video_grid_thw"), videos.shape[0], ids.shape[0], merge)
        if kwargs.get("mm_token_type_ids") is None:
            kwargs["mm_token_type_ids"] = token_types(ids, config)
        return ids, videos, grids, merge

    def compress(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        model = self.host.model
        config = model.config
        ids, videos, grids, merge = self.video_arguments(kwargs)
        full, deltas = unreduced_positions(model, ids, kwargs["mm_token_type_ids"], kwargs)
        for name in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
            kwargs.pop(name, None)

        state = self._pending = self.host.start_sequence()
        outputs = []
        offsets = [0]
        for t, h, w in grids:
            offsets.append(offsets[-1] + t * h * w)
        for (t, h, w), start in zip(grids, offsets):
            pooled = self.pooled_video(videos[start : start + t * h * w], (t, h, w))
            state.pooled_tokens.append(pooled.shape[0] * pooled.shape[1])
            out = self.host.video_compressor(pooled)
            if not isinstance(out, VideoTokens):
                raise HookError(f"the installed compressor returned {type(out).__name__}, not VideoTokens (token origins)")
            outputs.append((out, pooled.shape[1]))
        kept = {out.tokens.shape[0] for out, _ in outputs}
        if len(kept) > 1:
            raise ValueError(f"the videos of this batch compress to different token counts {sorted(kept)}; pass one video per call")
        n_kept = kept.pop()
        is_video = ids == config.video_token_id
        found = is_video.sum(dim=1).tolist()
        need = [t * h * w // merge**2 for t, h, w in grids]
        if found != need:
            raise ValueError(f"each prompt row needs one run of t·h·w/{merge**2} = {need} video placeholders, found {found}")
        keep = ~is_video | (is_video.cumsum(dim=1) <= n_kept)  # the first n_kept placeholders take the tokens
        origins = torch.stack([out.frames.to(ids.device) * n + out.positions.to(ids.device) for out, n in outputs])
        source = survivor_sources(is_video, keep, origins)
        short = source.shape[1]
        self.shorten(kwargs, keep, short, torch.cat([out.tokens for out, _ in outputs]), ("labels", "mm_token_type_ids"))
        kwargs["position_ids"] = full.gather(2, source.to(full.device)[None].expand(3, -1, -1))
        # decoding counts from the cache length (the short prompt): add back the tokens removed
        model.model.rope_deltas = deltas + (ids.shape[1] - short)
        return kwargs

    def pooled_video(self, pixels: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """One video's patch rows (t·h·w, D) → merged tokens (t, N, d), N = h·w/4, through the tower a few
        temporal patches at a time (temporal patches are independent in the tower: memory stays linear)."""
        model = self.host.model
        t, h, w = grid
        chunk = max(1, int(getattr(model, "vision_chunk_patches", VISION_CHUNK)))
        per = h * w
        parts = []
        for start in range(0, t, chunk):
            count = min(chunk, t - start)
            grid_part = torch.tensor([[count, h, w]], device=pixels.device)
            out = model.model.get_video_features(pixels[start * per : (start + count) * per], grid_part)
            features = getattr(out, "pooler_output", None)
            if features is None:
                raise _version_error("get_video_features returned no pooler_output")
            features = features[0] if isinstance(features, (tuple, list)) else features
            parts.append(features.view(count, per // self.host.model.model.visual.spatial_merge_size**2, -1))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _read_prompt(self, state: SequenceState, kwargs: dict[str, Any], ids: torch.Tensor | None) -> None:
        """Visual spans (runs of image/video placeholders), prompt lengths and token counts of a sequence's first
        pass; the pooled count of a compressed video is the compression's (no newline here)."""
        if ids is None:
            super()._read_prompt(state, kwargs, ids)
            return
        config = self.host.model.config
        batch, length = ids.shape
        visual = (ids == config.image_token_id) | (ids == config.video_token_id)
        zero = visual.new_zeros(batch, 1, dtype=torch.int8)
        edges = torch.diff(visual.to(torch.int8), dim=1, prepend=zero, append=zero)
        rows, cols = edges.nonzero(as_tuple=True)  # per run: its start (+1), then its end (−1)
        kinds = ids[rows, cols.clamp(max=length - 1)]
        runs = list(zip(*torch.stack([rows, cols, kinds]).tolist()))  # the one read of the prompt from the device
        spans: list[list[tuple[int, int]]] = [[] for _ in range(batch)]
        compressed = iter(state.pooled_tokens)
        pooled = []
        for (row, start, kind), (_, end, _) in zip(runs[0::2], runs[1::2]):
            spans[row].append((start, end - start))
            state.visual_tokens.append(end - start)
            is_video = kind == config.video_token_id
            pooled.append((next(compressed, None) if is_video else None) or end - start)
        state.pooled_tokens = pooled
        state.visual_spans, state.prompt_lengths = spans, [length] * batch
