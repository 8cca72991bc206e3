"""Qwen2.5-VL's vision side for the host (`holitom.hosts.qwen2_5_vl`): the attention probe of the tower's last
block, and video preprocessing without torchvision.

The tower embeds 2 frames × 14 × 14 px per patch (a temporal patch is HoliTom's "frame"), runs window attention
in most blocks and full attention, one temporal patch per `cu_seqlens` chunk, in `fullatt_block_indexes` (the last
block among them), and its merger folds each 2×2 group of patches into one LM token. Inside the tower the groups
are reordered by `window_index`; the merger's output is put back in grid order.

`QwenVisionProbe` scores every LM token by the attention its four patches receive in the last block: q/k recomputed
from that block's input (its norm, qkv projection and rotary embedding, in the model dtype), per temporal patch a
softmax in float32 averaged over heads and queries (`holitom.attention.received_attention`, a few temporal patches
at a time, so memory grows linearly with the frames), the mean over each 2×2 group, the window order undone.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
from torch import nn

from holitom.attention import received_attention
from holitom.shapes import qwen_smart_resize as smart_resize  # one rule, in the torch-free shape table
from llava.errors import HookError

QWEN_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's, as in Qwen's preprocessor_config.json
QWEN_STD = (0.26862954, 0.26130258, 0.27577711)


def _missing(what: str) -> HookError:
    import transformers

    return HookError(f"Qwen2.5-VL host: {what} (transformers {transformers.__version__})")


def window_index(grid_thw: torch.Tensor, vision_config: Any) -> torch.Tensor:
    """The tower's reordering of merge groups for window attention (its own function), (groups,) long."""
    try:
        from transformers.vision_utils import get_vision_window_index
    except ImportError as error:
        raise _missing("transformers.vision_utils.get_vision_window_index is missing") from error
    index, _ = get_vision_window_index(
        grid_thw,
        spatial_merge_size=vision_config.spatial_merge_size,
        window_size=vision_config.window_size,
        patch_size=vision_config.patch_size,
    )
    return index


def pooled_received(
    scores: torch.Tensor, window: torch.Tensor, grid_thw: torch.Tensor, merge_unit: int
) -> list[torch.Tensor]:
    """Patch scores in the tower's window order (P,) → per grid entry (t, N) scores of its LM tokens, in grid
    order: the mean over each merge group (its `merge_unit` = 4 consecutive patches), then `window` undone."""
    groups = scores.view(-1, merge_unit).mean(dim=1)  # (P/4,) in window order
    unwindowed = groups[torch.argsort(window.to(groups.device))]
    sizes = [(int(t), int(h * w) // merge_unit) for t, h, w in grid_thw.tolist()]
    parts = torch.split(unwindowed, [t * n for t, n in sizes])
    return [part.view(t, n) for part, (t, n) in zip(parts, sizes)]


class QwenVisionProbe:
    """Received-attention scores of the LM tokens of every tower run on one Qwen2.5-VL instance (pre-hooks on the
    tower, for its grid, and on its last block). `pop_pooled(frames)` returns the last `frames` temporal patches'
    (frames, N) scores. `seconds`: time spent in the probe (device-synchronised when `timed`)."""

    def __init__(self, host: Any, reference: bool = False, timed: bool = False) -> None:
        self.host, self.reference, self.timed = host, reference, timed
        visual = host.model.model.visual
        self.block = host.vision_probe_layer
        self.merge_unit = visual.spatial_merge_size**2
        self.rotary = getattr(sys.modules[type(self.block.attn).__module__], "apply_rotary_pos_emb_vision", None)
        if self.rotary is None:
            raise _missing("apply_rotary_pos_emb_vision not found next to the vision attention")
        self.grid: torch.Tensor | None = None
        self.scores: list[torch.Tensor] = []
        self.seconds = 0.0
        self.handles = [
            visual.register_forward_pre_hook(self._tower, with_kwargs=True),
            self.block.register_forward_pre_hook(self._hook, with_kwargs=True),
        ]

    def _tower(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        grid = args[1] if len(args) > 1 else kwargs.get("grid_thw")
        if grid is None:
            raise _missing("the vision tower was called without grid_thw")
        self.grid = grid

    @torch.no_grad()
    def _hook(self, block: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        start = time.perf_counter()
        hidden = args[0] if args else kwargs["hidden_states"]
        rope = kwargs.get("position_embeddings")
        if self.grid is None or rope is None:
            raise _missing("the last vision block ran without grid_thw / position_embeddings")
        attn = block.attn
        x = block.norm1(hidden.to(block.norm1.weight.device))
        q, k, _ = attn.qkv(x).reshape(x.shape[0], 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        q, k = self.rotary(q, k, *rope)  # (P, heads, hd), window order
        scores = []
        offset = 0
        for t, h, w in self.grid.tolist():  # per image/video; within it one chunk per temporal patch
            size = int(h * w)
            span = slice(offset, offset + int(t) * size)
            q_t = q[span].view(int(t), size, attn.num_heads, -1).transpose(1, 2)  # (t, heads, P_t, hd)
            k_t = k[span].view(int(t), size, attn.num_heads, -1).transpose(1, 2)
            scores.append(received_attention(q_t, k_t, attn.scaling, reference=self.reference).reshape(-1))
            offset += int(t) * size
        if offset != q.shape[0]:
            raise _missing(f"the last vision block got {q.shape[0]} patches for grids {self.grid.tolist()}")
        window = self.window(self.grid)
        self.scores.extend(pooled_received(torch.cat(scores), window, self.grid, self.merge_unit))
        if self.timed and q.device.type == "cuda":
            torch.cuda.synchronize(q.device)
        self.seconds += time.perf_counter() - start

    def window(self, grid: torch.Tensor) -> torch.Tensor:
        """The tower's order of merge groups, (groups,) long: Qwen2.5-VL's window order (Qwen3-VL: grid order)."""
        return window_index(grid, self.host.model.config.vision_config)

    def pop_pooled(self, frames: int) -> torch.Tensor:
        """(frames, N): the scores of the last `frames` temporal patches the tower ran on (all of one resolution)."""
        scores, self.scores = self.scores, []
        rows = [row for part in scores for row in part]  # every temporal patch, in order
        if len(rows) < frames:
            raise RuntimeError(f"vision attention was recorded for {len(rows)} temporal patch(es), not {frames}")
        return torch.stack(rows[len(rows) - frames :])

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.scores = [], []


# ---------------------------------------------------------------------------------------------- preprocessing


def patchify_video(frames: torch.Tensor, patch: int = 14, merge: int = 2, temporal: int = 2) -> tuple[torch.Tensor, list[int]]:
    """Normalised frames (T, 3, H, W), H and W multiples of patch·merge → (pixel_values_videos (t·h·w, 3·temporal·
    patch²), grid [t, h, w]) in the processor's layout: temporal patches, then 2×2 merge groups row by row, each
    group's patches row by row. An odd frame count repeats the last frame (as transformers' processor does)."""
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (T, 3, H, W), got {tuple(frames.shape)}")
    count, channels, height, width = frames.shape
    side = patch * merge
    if count == 0 or height < side or width < side:
        raise ValueError(f"a {count}-frame {height}×{width} video is smaller than one {side}×{side} merged patch")
    if height % side or width % side:
        raise ValueError(f"frame sides {height}×{width} must be multiples of {side} (resize them with smart_resize)")
    if pad := -count % temporal:
        frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
    t, h, w = frames.shape[0] // temporal, height // patch, width // patch
    grid = frames.reshape(t, temporal, channels, h // merge, merge, patch, w // merge, merge, patch)
    grid = grid.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # t, row group, col group, row in group, col in group, c, tp, py, px
    return grid.reshape(t * h * w, channels * temporal * patch * patch), [t, h, w]


def preprocess_video(
    frames: torch.Tensor,
    min_pixels: int = 56 * 56,
    max_pixels: int = 28 * 28 * 1280,
    patch: int = 14,
    merge: int = 2,
    temporal: int = 2,
    mean: tuple[float, ...] = QWEN_MEAN,
    std: tuple[float, ...] = QWEN_STD,
) -> tuple[torch.Tensor, list[int]]:
    """uint8 frames (T, H, W, 3) → (pixel_values_videos, grid [t, h, w]): smart_resize (bicubic), rescale to
    [0, 1], normalise, patchify. The processor's steps, without torchvision."""
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {tuple(frames.shape)}")
    if min(frames.shape[1:3]) < patch:
        raise ValueError(f"a {frames.shape[1]}×{frames.shape[2]} video is smaller than one {patch}×{patch} patch")
    height, width = smart_resize(frames.shape[1], frames.shape[2], patch * merge, min_pixels, max_pixels)
    x = frames.permute(0, 3, 1, 2).float()
    if (height, width) != tuple(x.shape[-2:]):
        x = torch.nn.functional.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
        x = x.round().clamp(0, 255)
    x = x / 255.0
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    return patchify_video(x, patch, merge, temporal)
