"""Host adapter for transformers' Qwen3-VL (`Qwen3VLForConditionalGeneration`, dense).

It is the Qwen2.5-VL host (`holitom.hosts.qwen2_5_vl`: per-instance state, M-RoPE positions of the unreduced
prompt gathered for the survivors, decoding from the unreduced deltas, the instance-level `generate`) with what
Qwen3-VL adds:
- Timestamps. The prompt gives every temporal patch its own `<t seconds>` text, then <|vision_start|>, the
  patch's N = h·w/4 placeholders, <|vision_end|>; `get_rope_index` numbers each patch as a grid of t = 1 (time
  is carried by the text). Compression shrinks each temporal patch's run to the tokens whose origin
  (`VideoTokens.frames`) is that patch, the first ones of the run; text is never dropped, so a patch whose
  tokens all merged away keeps its timestamp and an empty <|vision_start|><|vision_end|> pair.
- Deepstack. The tower's `deepstack_visual_indexes` blocks each give a feature map (own merger) that the text
  model adds to the visual positions after its first len(indexes) decoder layers. The compressor returns the map
  that made its tokens (`VideoTokens.carry`, HoliTom's `MergePlan`); the host applies it to every deepstack map,
  so row m of each is the same keep / static mean / β-merge of the unreduced rows as token m, and hands them to
  the text model with the shortened `visual_pos_masks` (a pre-hook on the text model: every version's forward
  takes both arguments, while `mm_encoder_outputs` is not in all of them). A compressor without `carry` is
  refused (its merges could not be applied to the deepstack rows).
- Scores. The tower has full attention in every block: the probe is the Qwen2.5-VL one on the last block, per
  temporal patch, without a window order.
- Inner-LLM cuts (HoliTom's merge at K, FastV, PDrop): `holitom.patch.qwen2`'s hooks, scoring with the decoder
  attention's own per-head q_norm / k_norm, the survivors keeping their gathered M-RoPE rows. The text model adds
  deepstack map ℓ after decoder layer ℓ < D = len(indexes) through `visual_pos_masks`, a full-length mask local to
  its forward that no hook can shorten: a cut before layer D would meet a mask and rows for tokens it removed, so
  such a cut is refused in one line at the first forward (scoring in layer D − 1 is fine: it only reads).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from holitom.hosts.base import VideoTokens
from holitom.hosts.qwen2_5_vl import VISION_CHUNK, Qwen25VLHost, QwenSequenceTracker
from holitom.hosts.qwen_vision import QwenVisionProbe
from llava.errors import HookError
from llava.model.cache_compat import find_cache
from llava.model.sequence import SequenceState


def _version_error(what: str) -> HookError:
    import transformers

    return HookError(f"Qwen3-VL host: {what} (transformers {transformers.__version__})")


def _flat(features: Any) -> torch.Tensor:
    """A feature map as `get_video_features` gives it (one tensor, or one per grid: 5.2x splits them) → (P, d)."""
    return torch.cat(list(features)) if isinstance(features, (tuple, list)) else features


class Qwen3VLHost(Qwen25VLHost):
    """A transformers `Qwen3VLForConditionalGeneration` instance as a method host."""

    positions = "mrope"
    carries_features = True  # the deepstack rows follow every merge (`VideoTokens.carry`)

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        for path in (
            "model.visual.blocks",
            "model.visual.deepstack_visual_indexes",
            "model.language_model.layers",
            "model.language_model._deepstack_process",
            "model.get_rope_index",
        ):
            target: Any = model
            for part in path.split("."):
                target = getattr(target, part, None)
            if target is None:
                raise _version_error(f"{type(model).__name__} has no {path}")
        params = inspect.signature(model.model.language_model.forward).parameters
        if not {"visual_pos_masks", "deepstack_visual_embeds"} <= set(params):
            raise _version_error("the text model's forward takes no visual_pos_masks / deepstack_visual_embeds")

    @staticmethod
    def accepts(model: Any) -> bool:
        from transformers import Qwen3VLForConditionalGeneration

        return isinstance(model, Qwen3VLForConditionalGeneration)

    @property
    def vision_probe_layer(self) -> nn.Module:
        """The tower's last block (every Qwen3-VL block attends over its whole temporal patch)."""
        return self.model.model.visual.blocks[-1]

    @property
    def deepstack_layers(self) -> int:
        """How many first decoder layers get deepstack features added after them."""
        return len(self.model.model.visual.deepstack_visual_indexes)

    def attention_probe(self, reference: bool = False) -> Qwen3VisionProbe:
        return Qwen3VisionProbe(self, reference=reference)

    def attach(self) -> Qwen3SequenceTracker:
        return Qwen3SequenceTracker(self)


class Qwen3VisionProbe(QwenVisionProbe):
    """`QwenVisionProbe` on Qwen3-VL's tower: no window attention, the merge groups stay in grid order."""

    def window(self, grid: torch.Tensor) -> torch.Tensor:
        groups = int((grid[:, 0] * grid[:, 1] * grid[:, 2]).sum()) // self.merge_unit
        return torch.arange(groups, device=grid.device)


def placeholder_plan(is_video: torch.Tensor, per_patch: int, kept: torch.Tensor) -> torch.Tensor:
    """Which placeholders stay when temporal patch f keeps kept[b, f] tokens: the first ones of its run.

    is_video (B, L) bool, each row t·per_patch placeholders (patch f's are the f-th per_patch of them); kept (B, t)
    long. Returns keep (B, L) bool: text always, a placeholder iff its rank within its patch < kept[b, f]."""
    index = is_video.cumsum(dim=1) - 1  # the placeholder's number 0..t·N−1 in its row
    patch = (index // per_patch).clamp(0, kept.shape[1] - 1)
    rank = index % per_patch
    return ~is_video | (rank < kept.gather(1, patch))


def placeholder_sources(is_video: torch.Tensor, keep: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
    """Where each token of the shortened prompt sits in the unreduced one. is_video/keep (B, L) bool; origins (B, M)
    numbers 0..t·N−1 of the placeholders whose positions the M kept tokens take, in the kept slots' order.
    Returns (B, L') long: a text token its own index, the m-th kept placeholder the index of placeholder origins[m]."""
    batch, length = is_video.shape
    short = int(keep[0].sum())
    every = torch.arange(length, device=is_video.device).expand(batch, length)
    source = every[keep].view(batch, short)
    placeholders = every[is_video].view(batch, -1)  # (B, t·N) indices of the unreduced placeholders
    slots = is_video[keep].view(batch, short)
    return source.masked_scatter(slots, placeholders.gather(1, origins.to(placeholders.device)))


class Qwen3SequenceTracker(QwenSequenceTracker):
    """The Qwen2.5-VL tracker with Qwen3-VL's per-temporal-patch placeholders and the deepstack rows of the kept
    tokens (handed to the text model by a pre-hook on the prefill that follows a compression)."""

    def __init__(self, host: Qwen3VLHost) -> None:
        super().__init__(host)
        self._deepstack: tuple[torch.Tensor, list[torch.Tensor]] | None = None
        text = host.model.model.language_model
        self.handles.append(text.register_forward_pre_hook(self._text_model, with_kwargs=True))

    def _before(self, model: nn.Module, args: tuple, kwargs: dict[str, Any]):
        from holitom.patch.qwen2 import InnerReduction

        installation = self.host.method_slot.get("installation")
        deepstack = self.host.deepstack_layers
        parts = installation.parts if installation is not None else []
        for part in (part for part in parts if isinstance(part, InnerReduction)):
            early = [stage.layer for stage in part.stages if stage.layer < deepstack]
            if early:
                raise ValueError(
                    f"{installation.name}: a cut at decoder layer {early[0]} comes before Qwen3-VL's deepstack "
                    f"features are all added (after layers 0..{deepstack - 1}, D = {deepstack}, on the full-length "
                    f"visual positions); cut at layer {deepstack} or later"
                )
        return super()._before(model, args, kwargs)

    def _text_model(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]):
        pending = self._deepstack
        if pending is None:
            return None
        cache = find_cache(kwargs, f"{type(module).__name__}.forward")
        embeds = kwargs.get("inputs_embeds")
        if (cache is not None and cache.get_seq_length() > 0) or embeds is None:
            return None
        mask, rows = pending
        if embeds.shape[:2] != mask.shape:
            raise HookError(f"Qwen3-VL host: the prefill has {tuple(embeds.shape[:2])} tokens, the compressed prompt {tuple(mask.shape)}")
        self._deepstack = None
        kwargs["visual_pos_masks"] = mask.to(embeds.device)
        kwargs["deepstack_visual_embeds"] = [row.to(embeds.device, embeds.dtype) for row in rows]
        return args, kwargs

    def compress(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        model = self.host.model
        config = model.config
        ids, videos, grids, merge = self.video_arguments(kwargs)
        rope_index = model.model.get_rope_index
        if "mm_token_type_ids" not in inspect.signature(rope_index).parameters:
            raise _version_error("get_rope_index takes no mm_token_type_ids")
        full, deltas = rope_index(
            ids,
            mm_token_type_ids=kwargs["mm_token_type_ids"],
            video_grid_thw=kwargs.get("video_grid_thw"),
            attention_mask=kwargs.get("attention_mask"),
        )
        for name in ("pixel_values_videos", "video_grid_thw"):
            kwargs.pop(name, None)
        per_patch = {h * w // merge**2 for _, h, w in grids}
        patches = {t for t, _, _ in grids}
        if len(per_patch) > 1 or len(patches) > 1:
            raise ValueError(f"the videos of this batch have different grids {grids}; pass one video per call")
        n, t = per_patch.pop(), patches.pop()
        is_video = ids == config.video_token_id
        found = is_video.sum(dim=1).tolist()
        if found != [t * n] * len(grids):
            raise ValueError(f"each prompt row needs t·h·w/{merge**2} = {t * n} video placeholders (one run per temporal patch), found {found}")

        state = self._pending = self.host.start_sequence()
        tokens, deep, kept, origins = [], [], [], []
        offset = 0
        for grid in grids:
            size = grid[0] * grid[1] * grid[2]
            pooled, stacks = self.pooled_video(videos[offset : offset + size], grid)
            offset += size
            state.pooled_tokens.append(pooled.shape[0] * pooled.shape[1])
            out = self.host.video_compressor(pooled)
            if not isinstance(out, VideoTokens):
                raise HookError(f"the installed compressor returned {type(out).__name__}, not VideoTokens (token origins)")
            if out.carry is None and stacks:
                raise ValueError("the installed method records no merge weights for Qwen3-VL's deepstack features; it cannot run on Qwen3-VL")
            order = torch.sort(out.frames, stable=True).indices  # every temporal patch's tokens go to its own run
            frames = out.frames[order]
            tokens.append(out.tokens[order])
            deep.append([out.carry(stack)[order] for stack in stacks])
            kept.append(torch.bincount(frames, minlength=t)[:t])
            origins.append(frames * n + out.positions[order])
        totals = {part.shape[0] for part in tokens}
        if len(totals) > 1:
            raise ValueError(f"the videos of this batch compress to different token counts {sorted(totals)}; pass one video per call")
        keep = placeholder_plan(is_video, n, torch.stack(kept).to(ids.device))
        source = placeholder_sources(is_video, keep, torch.stack(origins).to(ids.device))
        short = source.shape[1]
        short_ids = self.shorten(kwargs, keep, short, torch.cat(tokens), ("labels", "mm_token_type_ids"))
        kwargs["position_ids"] = full.gather(2, source.to(full.device)[None].expand(3, -1, -1))
        model.model.rope_deltas = deltas + (ids.shape[1] - short)  # decoding counts from the short cache
        slots = short_ids == config.video_token_id
        layers = len(deep[0])
        self._deepstack = (slots, [torch.cat([rows[i] for rows in deep]) for i in range(layers)]) if layers else None
        return kwargs

    def pooled_video(self, pixels: torch.Tensor, grid: tuple[int, int, int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One video's patch rows (t·h·w, D) → (merged tokens (t, N, d), its deepstack maps [(t, N, d)]), through the
        tower a few temporal patches at a time."""
        model = self.host.model
        t, h, w = grid
        chunk = max(1, int(getattr(model, "vision_chunk_patches", VISION_CHUNK)))
        per = h * w
        n = per // model.model.visual.spatial_merge_size**2
        parts: list[torch.Tensor] = []
        stacks: list[list[torch.Tensor]] = []
        for start in range(0, t, chunk):
            count = min(chunk, t - start)
            grid_part = torch.tensor([[count, h, w]], device=pixels.device)
            out = model.model.get_video_features(pixels[start * per : (start + count) * per], grid_part)
            features = getattr(out, "pooler_output", None)
            deepstack = getattr(out, "deepstack_features", None)
            if features is None or deepstack is None:
                raise _version_error("get_video_features returned no pooler_output / deepstack_features")
            parts.append(_flat(features).view(count, n, -1))
            stacks.append([_flat(feature).view(count, n, -1) for feature in deepstack])
        pooled = torch.cat(parts)
        return pooled, [torch.cat([chunk_maps[i] for chunk_maps in stacks]) for i in range(len(stacks[0]))]

    def _read_prompt(self, state: SequenceState, kwargs: dict[str, Any], ids: torch.Tensor | None) -> None:
        """The Qwen2.5-VL reading (one visual span per placeholder run: here one per temporal patch); the pooled
        count of a compressed video is the compression's, one entry per video."""
        compressed = list(state.pooled_tokens)
        state.pooled_tokens = []
        super()._read_prompt(state, kwargs, ids)
        if compressed:
            state.pooled_tokens = compressed
