"""Decode-time pruning of the visual part of the KV cache (DyCoke's stage 2), per host model instance.

In every decode step (one new token), a forward hook on decoder layer L−1 takes the new token's attention over
that layer's cache (recomputed from the layer's input: q of the new token, the cached keys, RoPE applied,
grouped-query aware), averaged over heads, restricted to the candidate visual positions. If this vector's
cosine similarity with the previous step's is below a threshold (always at the first step), the step prunes:
layers L.. attend only to the `int(n·(1−p))` best-scored candidates (plus every non-candidate key); otherwise
the step attends to everything. Nothing is evicted from the cache (the official code gathers per step too),
so a token dropped in one step can be attended again later. The exclusion is an additive −inf mask on the
dropped keys, so it needs sdpa or eager attention.

Positions are original sequence positions throughout; `cache_positions(layer)` maps them to a layer's cache
entries when that layer holds fewer tokens (e.g. after an inner-LLM merge), None = all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from holitom import counts
from holitom.attention import last_query_attention
from holitom.inner import select_kept
from holitom.patch.qwen2 import _hidden, _rope
from llava.model.cache_compat import require_cache

# candidates(sequence state) -> original positions of the prunable visual tokens (None: nothing to prune)
Candidates = Callable[[Any], torch.Tensor | None]


class DecodePruner:
    """DyCoke's decode-time cache pruning before decoder layer `layer` of one host (module docstring)."""

    def __init__(
        self,
        host: Any,
        layer: int,
        prune: float,
        threshold: float,
        candidates: Candidates,
        cache_positions: Callable[[int], torch.Tensor | None] | None = None,
        name: str = "dycoke",
    ) -> None:
        layers = host.decoder_layers
        if not 1 <= layer < len(layers):
            raise ValueError(f"{name}: layer {layer} must be in [1, {len(layers) - 1}] for a {len(layers)}-layer LM")
        attn = getattr(host.model.config, "_attn_implementation", "sdpa") or "sdpa"
        if attn.startswith("flash"):
            raise ValueError(
                f"{name}: decode-time pruning masks keys, which flash attention cannot do; load the model with "
                "attn_implementation='sdpa' or 'eager'"
            )
        counts.check_share(f"{name} prune", prune)
        self.host, self.layer, self.prune, self.threshold, self.name = host, layer, prune, threshold, name
        self.candidates, self.cache_positions = candidates, cache_positions
        self._sequence: Any = None
        self._previous: torch.Tensor | None = None
        self._drop: torch.Tensor | None = None  # original positions dropped in the current step
        self._masks: dict[int, torch.Tensor] = {}
        self._stats = {"steps": 0, "pruned_steps": 0, "candidates": 0, "kept": 0}
        self.handles = [layers[layer - 1].register_forward_hook(self._score, with_kwargs=True)]
        self.handles += [
            layers[i].register_forward_pre_hook(self._masker(i), with_kwargs=True) for i in range(layer, len(layers))
        ]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def decode_stats(self) -> dict[str, Any] | None:
        """The current sequence's decode steps: how many, how many pruned, candidates and kept per pruned step."""
        if self._sequence is not self.host.sequence or not self._stats["steps"]:
            return None
        return {"layer": self.layer, **self._stats}

    def _present(self, layer_index: int, originals: torch.Tensor) -> torch.Tensor:
        """Cache indices of the original positions that layer `layer_index` holds."""
        positions = self.cache_positions(layer_index) if self.cache_positions is not None else None
        if positions is None:
            return originals
        positions = positions.to(originals.device)
        idx = torch.searchsorted(positions, originals).clamp(max=positions.numel() - 1)
        return idx[positions[idx] == originals]

    @torch.no_grad()
    def _score(self, layer: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        hidden = _hidden(args, kwargs)
        state = self.host.sequence
        if state is not self._sequence:  # a new sequence: nothing carries over (the official state leaks)
            self._sequence, self._previous = state, None
            self._stats = {"steps": 0, "pruned_steps": 0, "candidates": 0, "kept": 0}
        self._drop, self._masks = None, {}
        if hidden.shape[1] != 1:
            return  # a prefill or a multi-token continuation: stage 2 acts on decode steps only
        candidates = self.candidates(state)
        if candidates is None or candidates.numel() == 0:
            return
        cache = require_cache(kwargs, f"{self.name} decode-time pruning (layer {self.layer - 1})")
        keys = cache.layers[self.layer - 1].keys[:1]  # (1, KVH, L, hd), this step's key included
        device = keys.device
        candidates = candidates.to(device)
        present = self._present(self.layer - 1, candidates)
        attn = layer.self_attn
        cfg = attn.config
        x = layer.input_layernorm(hidden[:1].to(layer.input_layernorm.weight.device))
        q = attn.q_proj(x).view(1, 1, cfg.num_attention_heads, attn.head_dim).transpose(1, 2)
        cos, sin = kwargs["position_embeddings"]
        q = _rope(q, cos[:1].to(q.device), sin[:1].to(q.device))[:, :, 0]
        row = last_query_attention(q.to(device), keys, attn.scaling)[0, present]
        similarity = 0.0 if self._previous is None else float(F.cosine_similarity(row, self._previous, dim=0))
        self._previous = row
        self._stats["steps"] += 1
        if similarity >= self.threshold:
            return  # attention barely moved: this step keeps the whole cache (as the official code does)
        n_keep = counts.floor_share(row.numel(), 1.0 - self.prune)
        kept, dropped = select_kept(row, n_keep)
        self._drop = self._originals_of(self.layer - 1, present)[dropped]  # original positions
        self._stats.update(pruned_steps=self._stats["pruned_steps"] + 1, candidates=row.numel(), kept=int(kept.numel()))

    def _originals_of(self, layer_index: int, indices: torch.Tensor) -> torch.Tensor:
        """Original positions of cache entries of layer `layer_index`."""
        positions = self.cache_positions(layer_index) if self.cache_positions is not None else None
        return indices if positions is None else positions.to(indices.device)[indices]

    def _masker(self, index: int):
        def hook(layer: nn.Module, args: tuple, kwargs: dict[str, Any]):
            if self._drop is None or _hidden(args, kwargs).shape[1] != 1:
                return None
            cache = require_cache(kwargs, f"{self.name} decode-time pruning (layer {index})")
            length = cache.layers[index].keys.shape[-2] + 1  # this step's key is appended inside the layer
            mask = kwargs.get("attention_mask")
            bias = self._masks.get(length)
            if bias is None:
                dtype = _hidden(args, kwargs).dtype
                bias = torch.zeros(1, 1, 1, length, dtype=dtype, device=self._drop.device)
                bias[..., self._present(index, self._drop)] = float("-inf")
                self._masks[length] = bias
            if isinstance(mask, torch.Tensor):
                bias = mask & (bias == 0) if mask.dtype == torch.bool else mask + bias.to(device=mask.device, dtype=mask.dtype)
            kwargs["attention_mask"] = bias
            return args, kwargs

        return hook
