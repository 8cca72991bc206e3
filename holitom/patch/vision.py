"""Vision-side hook: the received-attention score of every patch at the last kept SigLIP layer.

Only that layer's attention is materialised (a forward pre-hook recomputes its q/k from the layer
input); every layer, that one included, keeps running with sdpa.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from holitom.attention import received_attention


class VisionAttentionProbe:
    """Installed on one host; holds the (frames, patches) scores of the tower runs since the last read (the host
    may run the tower on a video's frames in chunks). Float32, or with `reference` the authors' eager arithmetic
    in the tower's dtype (`holitom.attention.received_attention`)."""

    def __init__(self, host: Any, reference: bool = False) -> None:
        self.host, self.reference = host, reference
        self.layer = host.vision_probe_layer
        self.scores: list[torch.Tensor] = []
        self.handle = self.layer.register_forward_pre_hook(self._hook, with_kwargs=True)

    @torch.no_grad()
    def _hook(self, layer: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        attn = layer.self_attn
        # Pre-hooks run before accelerate moves inputs to the layer's device (multi-GPU device maps).
        x = layer.layer_norm1(hidden.to(layer.layer_norm1.weight.device))
        shape = (*x.shape[:-1], attn.num_heads, attn.head_dim)
        q = attn.q_proj(x).view(shape).transpose(1, 2)
        k = attn.k_proj(x).view(shape).transpose(1, 2)
        self.scores.append(received_attention(q, k, attn.scale, reference=self.reference))

    def pop(self, frames: int) -> torch.Tensor:
        """(frames, patches): the scores of the last `frames` frames the tower ran on (the host may run a video
        in chunks; earlier runs, e.g. of an image in the same prompt, are dropped)."""
        scores, self.scores = self.scores, []
        scores = torch.cat(scores) if len(scores) > 1 else (scores[0] if scores else None)
        if scores is None or scores.shape[0] < frames:
            have = 0 if scores is None else scores.shape[0]
            raise RuntimeError(f"vision attention was recorded for {have} frame(s) since the last read, not {frames}")
        return scores[scores.shape[0] - frames :]

    def pop_pooled(self, frames: int) -> torch.Tensor:
        """The last `frames` frames' scores pooled exactly like the video features: (frames, N)."""
        return self.host.pool(self.pop(frames)[..., None]).squeeze(-1)

    def remove(self) -> None:
        self.handle.remove()
        self.scores = []
