"""Token reduction inside the Qwen2 decoder of one host model (HoliTom spec §3, FastV, PDrop).

A reduction is a list of stages. Stage s cuts the visual tokens before decoder layer `layer_s`, scored by
the attention the last prompt token pays them in decoder layer `score_layer_s` (`layer_s − 1` for FastV and
HoliTom, `layer_s` itself for PDrop): q for that one position and k for the prefix are recomputed from the
score layer's input with its own norm, projections, per-head q/k norms where it has them (Qwen3) and RoPE,
grouped-query aware. sdpa keeps running; no attention matrix is materialised.

Forward pre-hooks, installed per instance on the layers from the first score layer on:
- prefill (the first multi-token LM pass of a sequence with visual tokens): score at the score layers;
  at a cut layer call the stage's reducer on the visual hidden states → the kept tokens (merged or not),
  cut the sequence to the survivors and swap in their position embeddings and mask rows/columns; every
  later layer of the pass gets the same shortened arguments.
- later passes (decode steps, follow-up turns): layers after a cut cache only that stage's survivors, so
  the removed key columns are dropped from any materialised mask (once per step and stage).

Positions: `renumber=False` keeps every survivor's ORIGINAL RoPE position (gaps stay; decoding continues
at the full-length position, the length of layer 0's cache): the cut gathers the survivors' rows of the layer's
cos/sin, so on an M-RoPE host (Qwen2.5-VL) every survivor keeps its own (t, h, w) position. `renumber=True`
(PDrop; on "sequential" hosts only, M-RoPE hosts keep the positions) numbers the survivors 0..L'−1 after each
cut, and a later pass's tokens enter the layers of stage s at their position minus the tokens dropped before it,
so in every layer a new token's position is that layer's cache length.

A host that adds features to the visual positions after its first D decoder layers (Qwen3-VL's deepstack, by a
boolean mask over the full-length sequence) takes cuts at layers ≥ D only; it refuses the others itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache
from transformers.models.qwen2.modeling_qwen2 import rotate_half

from holitom.attention import last_query_attention
from holitom.hosts.base import positions_of
from llava.errors import HookError
from llava.model.cache_compat import find_cache

# reducer(visual_hidden (n, d), scores (n,), n_visual_in) -> (kept_idx (m,) ascending into n, kept_hidden (m, d));
# n_visual_in is the number of visual tokens that entered the LM (PDrop counts against it).
Reducer = Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Stage:
    """Cut before decoder layer `layer`, scored by the last prompt token's attention in `score_layer`.

    reference_scores: the attention row with the authors' eager arithmetic in the model dtype (not float32).
    unmasked_score_layer: in the prefill, the score layer attends without a causal mask, as the authors'
    runs do (asking transformers for that layer's attention weights under sdpa fell back to eager attention
    with the sdpa mask, which is None); nothing else in the pass changes.
    """

    layer: int
    reducer: Reducer
    score_layer: int
    reference_scores: bool = False
    unmasked_score_layer: bool = False


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


def _as_bias(mask: torch.Tensor, additive: bool = True) -> torch.Tensor:
    """A boolean (True = attend), integer (nonzero = attend) or additive float mask → additive float32.
    `additive=False`: a float mask is a 1/0 keep mask too (a 2-D padding mask)."""
    if mask.dtype == torch.bool or not mask.is_floating_point() or not additive:
        return torch.zeros(mask.shape, device=mask.device).masked_fill(mask == 0, float("-inf"))
    return mask.float()


def _key_row(mask: torch.Tensor, row: int, start: int, stop: int) -> torch.Tensor:
    """The additive bias of query `row` over keys start..stop of a 4-D (B, 1, Q, K) attention mask or a 2-D
    (B, K) padding mask (what flash attention gets)."""
    if mask.dim() == 2:
        return _as_bias(mask[:1, start:stop], additive=False)
    return _as_bias(mask[:1, 0, row, start:stop])


@torch.no_grad()
def last_token_scores(
    layer: nn.Module,
    hidden: torch.Tensor,
    kwargs: dict[str, Any],
    query_at: int,
    visual: torch.Tensor,
    reference: bool = False,
) -> torch.Tensor:
    """The attention row of position `query_at` in `layer`, from the layer's input, over `visual` keys.

    hidden (B, L, d) the layer's input; kwargs the layer's call arguments (position_embeddings, attention
    mask); visual (n,) positions in this sequence. Returns (n,) float32: softmax over keys 0..query_at,
    averaged over query heads. q and k are made as the layer's attention makes them: projection, its per-head
    `q_norm` / `k_norm` when it has them (Qwen3), then RoPE.
    """
    attn = layer.self_attn
    cfg = attn.config
    length = hidden.shape[1]
    # Pre-hooks run before accelerate moves inputs to a layer's device (multi-GPU device maps).
    device = layer.input_layernorm.weight.device
    x = layer.input_layernorm(hidden[:1, : query_at + 1].to(device))
    cos, sin = kwargs["position_embeddings"]
    if cos.dim() != 3:  # (B, L, head_dim): M-RoPE's t/h/w sections already merged, as Qwen2 and Qwen2.5-VL give them
        import transformers

        raise HookError(
            f"decoder layer position embeddings of shape {tuple(cos.shape)} (transformers {transformers.__version__}): "
            "expected (batch, length, head_dim) cos/sin"
        )
    cos, sin = cos[:, : query_at + 1].to(device), sin[:, : query_at + 1].to(device)
    q = attn.q_proj(x[:, -1:]).view(1, 1, cfg.num_attention_heads, attn.head_dim)
    k = attn.k_proj(x).view(1, query_at + 1, cfg.num_key_value_heads, attn.head_dim)
    # Qwen3's attention normalises every head's q and k (over head_dim) before RoPE; Qwen2's has no such norms
    q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
    if q_norm is not None and k_norm is not None:
        q, k = q_norm(q), k_norm(k)
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    q = _rope(q, cos[:, -1:], sin[:, -1:])[:, :, 0]
    k = _rope(k, cos, sin)
    mask = kwargs.get("attention_mask")
    bias = None
    if isinstance(mask, torch.Tensor):
        past = mask.shape[-1] - length
        bias = _key_row(mask, query_at, past, past + query_at + 1).to(device)
    probs = last_query_attention(q, k, attn.scaling, bias, reference=reference)
    return probs[0, visual.to(device)]


class _Prefill:
    """What one reduced prefill pass knows: the survivors so far and the pass's full-length arguments.

    The bookkeeping that decides shapes stays on the host (counts, the query's index, where the visual tokens
    sit), so cutting reads nothing from the device. With one visual span, the surviving visual tokens are
    always a contiguous range of the current sequence, since text before and after it is never cut.
    """

    def __init__(self, spans: list[tuple[int, int]], query_at: int, length: int, device: torch.device, kwargs: dict[str, Any]) -> None:
        self.visual = torch.cat([torch.arange(s, s + n, device=device) for s, n in spans])  # original positions
        self.single_span = len(spans) == 1
        self.visual_start = spans[0][0]
        self.visual_count = int(sum(n for _, n in spans))  # visual tokens in the current sequence
        self.query_at = query_at  # original position of the last prompt token
        self.query_now = query_at  # its index in the current sequence
        self.query_is_visual = any(s <= query_at < s + n for s, n in spans)
        self.length = length
        self.alive = torch.arange(length, device=device)  # original positions of the current sequence
        self.full_position_embeddings = kwargs["position_embeddings"]
        self.full_position_ids = kwargs.get("position_ids")
        self.scores: torch.Tensor | None = None
        self.short: dict[str, Any] | None = None  # arguments of the layers after the last cut

    def visual_now(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The surviving visual tokens: (indices in the current sequence, original positions)."""
        if self.short is None:  # nothing cut yet: the current sequence is the original one
            return self.visual, self.visual
        if self.single_span:
            now = torch.arange(self.visual_start, self.visual_start + self.visual_count, device=self.alive.device)
            return now, self.alive[self.visual_start : self.visual_start + self.visual_count]
        original = self.alive[torch.isin(self.alive, self.visual)]  # several spans: reads the device
        return torch.searchsorted(self.alive, original), original

    def after_cut(self, kept_visual: int) -> None:
        """Host-side bookkeeping of a cut that kept `kept_visual` of the current visual tokens."""
        dropped = self.visual_count - kept_visual
        if self.query_is_visual:  # the query itself may have been cut: find it (rare; reads the device)
            at = torch.searchsorted(self.alive, torch.tensor(self.query_at, device=self.alive.device))
            self.query_now = int(at)
        elif self.query_at > self.visual_start:
            self.query_now -= dropped
        self.visual_count = kept_visual


class InnerReduction:
    """Token reduction in stages inside the decoder of one host (see the module docstring)."""

    def __init__(self, host: Any, stages: Sequence[Stage], name: str = "inner", renumber: bool = False) -> None:
        layers = host.decoder_layers
        # 3-D (M-RoPE) positions cannot be renumbered 0..L'−1: there the survivors keep their own positions
        renumber = renumber and positions_of(host) == "sequential"
        self.host, self.name, self.renumber = host, name, renumber
        self.stages = sorted(stages, key=lambda s: s.layer)
        previous = 0
        for stage in self.stages:
            if not 1 <= stage.layer < len(layers):
                raise ValueError(
                    f"{name}: layer {stage.layer} must be in [1, {len(layers) - 1}] for a {len(layers)}-layer LM"
                )
            if stage.layer <= previous:
                raise ValueError(f"{name}: cut layers must be distinct and increasing, got {[s.layer for s in stages]}")
            if not previous <= stage.score_layer <= stage.layer:
                raise ValueError(f"{name}: score layer {stage.score_layer} must lie in [{previous}, {stage.layer}]")
            previous = stage.layer
        self._cuts = {stage.layer: stage for stage in self.stages}
        self._scorers = {stage.score_layer: stage for stage in self.stages}
        self.first_layer = min(stage.score_layer for stage in self.stages)
        self._pass: _Prefill | None = None
        # From the last reduced prefill: survivors (original positions) per cut, the prefill length, the stats.
        self._kept: list[torch.Tensor] = []
        self._prefill_len = 0
        self._sequence: Any = None
        self.stage_stats: list[dict[str, int]] = []
        self._step_cache: dict[int, tuple[Any, Any]] = {}
        self.handles = [
            layers[i].register_forward_pre_hook(self._hook(i), with_kwargs=True)
            for i in range(self.first_layer, len(layers))
        ]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def stats(self) -> list[dict[str, int]]:
        """Per cut of the current sequence's prefill: layer, visual tokens in, visual tokens kept."""
        return list(self.stage_stats) if self._sequence is self.host.sequence else []

    def cache_positions(self, layer_index: int) -> torch.Tensor | None:
        """Original positions (into the last reduced prefill) that layer `layer_index` caches; None = all."""
        stage = self._stage_of(layer_index)
        return self._kept[stage - 1] if 0 < stage <= len(self._kept) else None

    def _stage_of(self, layer_index: int) -> int:
        """How many cuts happen at or before this layer."""
        return sum(stage.layer <= layer_index for stage in self.stages)

    def _hook(self, index: int):
        def hook(layer: nn.Module, args: tuple, kwargs: dict[str, Any]):
            with torch.no_grad():
                if index == self.first_layer:
                    self._begin(args, kwargs)
                if self._pass is None:
                    return self._later_pass(index, args, kwargs)
                return self._prefill(index, layer, args, kwargs)

        return hook

    # ---- prefill -----------------------------------------------------------------------------------------
    def _begin(self, args: tuple, kwargs: dict[str, Any]) -> None:
        """At the first hooked layer: is this pass a sequence's prefill with visual tokens to reduce?"""
        hidden = _hidden(args, kwargs)
        self._pass = None
        self._step_cache.clear()
        length = hidden.shape[1]
        state = self.host.sequence
        if length == 1 or state.prefilled:
            return  # a decode step or a pass continuing a cached sequence: its visual tokens are reduced already
        self._kept, self._prefill_len, self._sequence, self.stage_stats = [], 0, state, []
        state.survivors = None
        spans = state.visual_spans or []
        if not any(spans):
            return
        cache = find_cache(kwargs, f"{self.name} (decoder layer {self.first_layer})")
        if cache is not None and cache.get_seq_length(self.first_layer) > 0:
            raise ValueError(
                f"{self.name}: inner reduction needs a multimodal prompt in the first prefill pass of a sequence "
                "(this one continues a cached sequence)"
            )
        if len(spans) != 1:
            raise ValueError(
                f"{self.name}: inner-LLM reduction supports batch size 1, got a batch of {len(spans)} prompts with "
                "visual tokens; run one sample at a time"
            )
        # batch > 1 with one spliced prompt: generate() copied it (num_beams / num_return_sequences);
        # the rows are identical at prefill, so row 0 decides for all of them.
        prompt_len = int(state.prompt_lengths[0])
        if prompt_len > length:
            raise ValueError(f"{self.name}: recorded prompt length {prompt_len} exceeds the sequence length {length}")
        # The last prompt token (it may itself be visual when nothing follows <image>).
        self._pass = _Prefill(spans[0], prompt_len - 1, length, hidden.device, kwargs)

    def _prefill(self, index: int, layer: nn.Module, args: tuple, kwargs: dict[str, Any]):
        run = self._pass
        assert run is not None
        if run.short is not None:
            kwargs.update(run.short)
        stage = self._scorers.get(index)
        if stage is not None:
            visual_now, _ = run.visual_now()
            hidden = _hidden(args, kwargs)
            run.scores = last_token_scores(layer, hidden, kwargs, run.query_now, visual_now, stage.reference_scores)
            if stage.unmasked_score_layer:
                # bidirectional for this one layer of the prefill (the last row, and so the scores, are unchanged)
                kwargs.update(attention_mask=None, is_causal=False)
        stage = self._cuts.get(index)
        if stage is not None:
            args, kwargs = self._cut(stage, args, kwargs)
        if index == len(self.host.decoder_layers) - 1:
            self._pass = None  # the last layer: the pass is over
        return args, kwargs

    def _cut(self, stage: Stage, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        run = self._pass
        assert run is not None and run.scores is not None
        cache = find_cache(kwargs, f"{self.name} (decoder layer {stage.layer})")
        if cache is not None and not isinstance(cache, DynamicCache):
            raise ValueError(
                f"{self.name}: inner reduction needs a DynamicCache (layers after a cut cache fewer tokens), got "
                f"{type(cache).__name__}; do not set cache_implementation"
            )
        hidden = _hidden(args, kwargs)
        length = hidden.shape[1]
        visual = run.visual_now()[0].to(hidden.device)  # indices of the surviving visual tokens
        n_in = int(run.visual.numel())
        kept_local, kept_hidden = stage.reducer(hidden[0, visual], run.scores.to(hidden.device), n_in)
        run.scores = None
        keep = torch.ones(length, dtype=torch.int8, device=hidden.device)
        keep[visual] = 0
        keep[visual[kept_local]] = 1
        survivors = length - run.visual_count + kept_local.numel()  # known on the host
        # a stable descending sort lists the kept positions first, ascending: no data-dependent shape
        kept_now = torch.sort(keep, descending=True, stable=True).indices[:survivors]  # into the current sequence
        short = hidden[:, kept_now].clone()
        short[:, torch.searchsorted(kept_now, visual[kept_local])] = kept_hidden.to(short.dtype)

        def cut(x: torch.Tensor) -> torch.Tensor:
            """Rows of the survivors along the sequence axis, −2 of a (…, L, head_dim) cos/sin: the kept tokens'
            own rows are gathered, whatever their positions (1-D, or M-RoPE's merged t/h/w)."""
            return x[..., kept_now.to(x.device), :]

        # The layers get their positions through `position_embeddings`; position_ids go to None, since the gaps
        # of cut original positions would make flash attention read the sequence as packed ones.
        replace: dict[str, Any] = {"position_ids": None}
        if self.renumber:
            cos, sin = run.full_position_embeddings
            replace["position_embeddings"] = (cos[..., : kept_now.numel(), :], sin[..., : kept_now.numel(), :])
        else:
            cos, sin = kwargs["position_embeddings"]
            replace["position_embeddings"] = (cut(cos), cut(sin))
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            past = mask.shape[-1] - length
            rows = kept_now.to(mask.device)
            keys = torch.cat([torch.arange(past, device=mask.device), past + rows])
            # a 4-D (B, 1, Q, K) mask loses rows and key columns; a 2-D (B, K) padding mask its key columns
            replace["attention_mask"] = mask[:, keys] if mask.dim() == 2 else mask[:, :, rows][..., keys]
        elif mask is not None:
            raise ValueError(f"{self.name}: unsupported attention mask type {type(mask).__name__} (use sdpa or eager)")

        run.alive = run.alive[kept_now.to(run.alive.device)]
        run.after_cut(int(kept_local.numel()))
        run.short = replace
        self._kept.append(run.alive)
        self._prefill_len = run.length
        self.host.sequence.survivors = run.alive
        self.stage_stats.append(
            {"layer": stage.layer, "visual_in": int(visual.numel()), "visual_kept": int(kept_local.numel())}
        )
        kwargs.update(replace)
        return _with_hidden(args, kwargs, short)

    # ---- later passes ------------------------------------------------------------------------------------
    def _later_pass(self, index: int, args: tuple, kwargs: dict[str, Any]):
        """A pass continuing a reduced prefill: in layers after cut s, only stage s's survivors are cached."""
        stage = self._stage_of(index)
        if stage == 0 or len(self._kept) < stage:
            return None
        changed = False
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            kwargs["attention_mask"] = self._per_step(("mask", stage), mask, lambda: self._cut_mask(mask, stage))
            changed = True
        if self.renumber:
            position_ids, rope = self._per_step(
                ("rope", stage), kwargs["position_embeddings"], lambda: self._shifted_positions(args, kwargs, stage)
            )
            kwargs.update(position_ids=position_ids, position_embeddings=rope)
            changed = True
        return (args, kwargs) if changed else None

    def _per_step(self, key: Any, source: Any, make: Callable[[], Any]) -> Any:
        """`make()` once per step: every layer of a step receives the same mask / rope objects."""
        cached = self._step_cache.get(key)
        if cached is not None and cached[0] is source:
            return cached[1]
        value = make()
        self._step_cache[key] = (source, value)
        return value

    def _cut_mask(self, mask: torch.Tensor, stage: int) -> torch.Tensor:
        kept = self._kept[stage - 1].to(mask.device)
        keys = torch.cat([kept, torch.arange(self._prefill_len, mask.shape[-1], device=mask.device)])
        return mask[..., keys]

    def _shifted_positions(self, args: tuple, kwargs: dict[str, Any], stage: int) -> tuple[torch.Tensor, tuple]:
        """This pass's positions moved back by the tokens dropped before this stage, and their rotary
        embeddings: (position_ids, (cos, sin))."""
        hidden = _hidden(args, kwargs)
        cos, _ = kwargs["position_embeddings"]
        shift = self._prefill_len - int(self._kept[stage - 1].numel())
        position_ids = kwargs.get("position_ids")
        if position_ids is None:
            raise ValueError(f"{self.name}: renumbered positions need the pass's position_ids")
        shifted = position_ids - shift
        return shifted, self.host.rotary_embedding(hidden.to(cos.device), shifted.to(cos.device))
