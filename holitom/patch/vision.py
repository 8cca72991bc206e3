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
    """Installed on one host; `scores` holds (frames, patches) float32 after each tower run (reference: the
    authors' eager arithmetic in the tower's dtype, `holitom.attention.received_attention`)."""

    def __init__(self, host: Any, reference: bool = False) -> None:
        self.host, self.reference = host, reference
        self.layer = host.vision_probe_layer
        self.scores: torch.Tensor | None = None
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
        self.scores = received_attention(q, k, attn.scale, reference=self.reference)

    def pop(self) -> torch.Tensor:
        if self.scores is None:
            raise RuntimeError("no vision attention was recorded: the vision tower has not run since the last read")
        scores, self.scores = self.scores, None
        return scores

    def pop_pooled(self) -> torch.Tensor:
        """The recorded scores pooled exactly like the video features: (frames, N)."""
        return self.host.pool(self.pop()[..., None]).squeeze(-1)

    def remove(self) -> None:
        self.handle.remove()
        self.scores = None
