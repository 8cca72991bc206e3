"""Inner-LLM token reduction hooks on the Qwen2 decoder layers of one model instance (spec §3).

Pre-hooks on three kinds of layer, installed per instance and removed through their handles:
- layer K−1: on a prefill with a visual span, compute the last prompt token's attention row
  (mean over query heads) from the layer's input: q for that one position, k for the prefix, RoPE
  applied, grouped-query aware. sdpa keeps running; no attention matrix is materialised.
- layer K: call the reducer on the visual hidden states → kept tokens (merged or not); cut the
  sequence to the survivors and swap in their ORIGINAL RoPE positions and mask rows/columns.
- layers > K: swap in the shortened position embeddings / ids / mask for the same pass; on later
  decode passes, drop the removed key columns from any materialised mask (the mask is built for the
  full length, but layers ≥ K cache only the survivors).
Layers < K see and cache the full sequence. Decoding continues at the full-length position because
the cache length of layer 0 is the full length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache
from transformers.models.qwen2.modeling_qwen2 import rotate_half

from holitom.attention import last_query_attention

# reducer(visual_hidden (n_v, d), scores (n_v,)) -> (kept_idx (n_keep,) ascending, kept_hidden (n_keep, d))
Reducer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, heads, L, hd); cos/sin (B, L, hd)."""
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


def _hidden(args: tuple, kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _with_hidden(args: tuple, kwargs: dict[str, Any], hidden: torch.Tensor) -> tuple[tuple, dict[str, Any]]:
    if args:
        return (hidden, *args[1:]), kwargs
    kwargs["hidden_states"] = hidden
    return args, kwargs


def _as_bias(mask: torch.Tensor) -> torch.Tensor:
    """A boolean (True = attend) or additive float mask → additive float32."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, device=mask.device).masked_fill(~mask, float("-inf"))
    return mask.float()


class InnerReduction:
    """Token reduction before decoder layer `layer` of one model instance."""

    def __init__(self, model: nn.Module, layer: int, reducer: Reducer, name: str = "inner") -> None:
        layers = model.get_model().layers
        if not 1 <= layer < len(layers):
            raise ValueError(f"merge layer {layer} must be in [1, {len(layers) - 1}] for a {len(layers)}-layer LM")
        self.model, self.layer, self.reducer, self.name = model, layer, reducer, name
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._short: dict[str, Any] | None = None
        self._kept_positions: torch.Tensor | None = None
        self._prefill_len = 0
        self.handles = [
            layers[layer - 1].register_forward_pre_hook(self._score, with_kwargs=True),
            layers[layer].register_forward_pre_hook(self._reduce, with_kwargs=True),
            *(layers[i].register_forward_pre_hook(self._follow, with_kwargs=True) for i in range(layer + 1, len(layers))),
        ]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
        self.model.mm_state.pop("kept_positions", None)

    # ---- layer K-1: score ------------------------------------------------------------------------
    @torch.no_grad()
    def _score(self, layer: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        hidden = _hidden(args, kwargs)
        self._pending, self._short = None, None
        length = hidden.shape[1]
        if length == 1:
            return  # a decode step: nothing to score
        state = self.model.mm_state
        if not state.pop("fresh", False):
            return  # continues a cached sequence (e.g. a follow-up turn): its visual tokens are already reduced
        spans = state.get("visual_spans") or []
        self._kept_positions = None
        state["kept_positions"] = None
        if not any(spans):
            return
        position_ids = kwargs.get("position_ids")
        if position_ids is not None and int(position_ids[0, 0]) != 0:
            raise ValueError(
                f"{self.name}: inner merging needs a multimodal prompt in the first prefill pass of a sequence "
                "(this one continues a cached sequence)"
            )
        if len(spans) != 1:
            raise ValueError(
                f"{self.name}: inner-LLM merging supports batch size 1, got a batch of {len(spans)} prompts with "
                "visual tokens; run one sample at a time"
            )
        # batch > 1 with one spliced prompt: generate() copied it (num_beams / num_return_sequences);
        # the rows are identical at prefill, so row 0 decides for all of them.
        prompt_len = int(state["prompt_length"][0])
        if prompt_len > length:
            raise ValueError(f"{self.name}: recorded prompt length {prompt_len} exceeds the sequence length {length}")
        query_at = prompt_len - 1  # the last prompt token (it may itself be visual when nothing follows <image>)
        visual = torch.cat([torch.arange(s, s + n, device=hidden.device) for s, n in spans[0]])

        attn = layer.self_attn
        cfg = attn.config
        # Pre-hooks run before accelerate moves inputs to a layer's device (multi-GPU device maps).
        device = layer.input_layernorm.weight.device
        x = layer.input_layernorm(hidden[:1, : query_at + 1].to(device))
        cos, sin = kwargs["position_embeddings"]
        cos, sin = cos[:, : query_at + 1].to(device), sin[:, : query_at + 1].to(device)
        q = attn.q_proj(x[:, -1:]).view(1, 1, cfg.num_attention_heads, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(x).view(1, query_at + 1, cfg.num_key_value_heads, attn.head_dim).transpose(1, 2)
        q = _rope(q, cos[:, -1:], sin[:, -1:])[:, :, 0]
        k = _rope(k, cos, sin)
        mask = kwargs.get("attention_mask")
        bias = None
        if isinstance(mask, torch.Tensor):
            past = mask.shape[-1] - length
            bias = _as_bias(mask[:1, 0, query_at, past : past + query_at + 1].to(device))
        probs = last_query_attention(q, k, attn.scaling, bias)
        self._pending = (visual, probs[0, visual.to(device)])

    # ---- layer K: reduce -------------------------------------------------------------------------
    @torch.no_grad()
    def _reduce(self, layer: nn.Module, args: tuple, kwargs: dict[str, Any]):
        if self._pending is None:
            return self._decode_mask(args, kwargs)
        visual, scores = self._pending
        self._pending = None
        cache = kwargs.get("past_key_values")
        if cache is not None and not isinstance(cache, DynamicCache):
            raise ValueError(
                f"{self.name}: inner merging needs a DynamicCache (layers ≥ K cache fewer tokens), got "
                f"{type(cache).__name__}; do not set cache_implementation"
            )
        hidden = _hidden(args, kwargs)
        length = hidden.shape[1]
        visual = visual.to(hidden.device)
        kept_local, kept_hidden = self.reducer(hidden[0, visual], scores.to(hidden.device))
        keep = torch.ones(length, dtype=torch.bool, device=hidden.device)
        keep[visual] = False
        keep[visual[kept_local]] = True
        kept_positions = keep.nonzero().flatten()
        short = hidden[:, kept_positions].clone()
        short[:, torch.searchsorted(kept_positions, visual[kept_local])] = kept_hidden.to(short.dtype)

        def cut(x: torch.Tensor) -> torch.Tensor:
            return x[:, kept_positions.to(x.device)]

        cos, sin = kwargs["position_embeddings"]
        replace: dict[str, Any] = {"position_embeddings": (cut(cos), cut(sin))}
        if kwargs.get("position_ids") is not None:
            replace["position_ids"] = cut(kwargs["position_ids"])
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            past = mask.shape[-1] - length
            rows = kept_positions.to(mask.device)
            keys = torch.cat([torch.arange(past, device=mask.device), past + rows])
            replace["attention_mask"] = mask[:, :, rows][..., keys]
        elif mask is not None:
            raise ValueError(f"{self.name}: unsupported attention mask type {type(mask).__name__} (use sdpa or eager)")

        self._short = replace
        self._kept_positions, self._prefill_len = kept_positions, length
        state = self.model.mm_state
        state["kept_positions"] = kept_positions
        state["inner"] = {"method": self.name, "layer": self.layer, "visual_in": int(visual.numel()), "visual_kept": int(kept_local.numel())}
        kwargs.update(replace)
        return _with_hidden(args, kwargs, short)

    # ---- layers > K --------------------------------------------------------------------------------
    def _follow(self, layer: nn.Module, args: tuple, kwargs: dict[str, Any]):
        if self._short is not None:
            kwargs.update(self._short)
            return args, kwargs
        return self._decode_mask(args, kwargs)

    def _decode_mask(self, args: tuple, kwargs: dict[str, Any]):
        """A pass continuing a reduced prefill: drop the removed keys from a materialised mask."""
        mask = kwargs.get("attention_mask")
        if self._kept_positions is None or not isinstance(mask, torch.Tensor):
            return None
        kept = self._kept_positions.to(mask.device)
        keys = torch.cat([kept, torch.arange(self._prefill_len, mask.shape[-1], device=mask.device)])
        kwargs["attention_mask"] = mask[..., keys]
        return args, kwargs
