"""Host adapter for transformers' own LLaVA-OneVision (`LlavaOnevisionForConditionalGeneration`, llava-hf).

transformers' model puts a video into the LM as a run of F·N + 1 `video_token_id` placeholders in input_ids
(every frame's N pooled tokens, then one newline) and writes the video's features over that run. With a
video-token compressor installed, the host encodes each video itself (tower → projector → pooling, frames in
chunks), compresses it, shrinks every row's placeholder run to the tokens kept (input ids, attention mask and
labels alike) and hands the model `inputs_embeds` with the kept tokens written over that run, as the model
itself writes video features over its placeholders (every transformers version takes `inputs_embeds`; the
`mm_encoder_outputs` argument exists only from 5.2x on); positions are those of a vanilla sequence of the
shorter length. `generate` gets the same treatment before its loop starts and returns the
caller's own prompt ids followed by the new tokens, so `out[:, inputs["input_ids"].shape[1]:]` is the answer.

The per-sequence state (where the visual tokens sit, the prompt length, the prefill flag, the survivors) is
read off the input ids of every pass that starts a sequence (no cache, or an empty one). Inner-LLM methods use
the same decoder-layer hooks as on our `llava` models: the LM is transformers' Qwen2 model in both.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from holitom.hosts.base import VideoCompressor
from holitom.hosts.hf_onevision_io import tokens_per_frame
from llava.errors import HookError
from llava.model.cache_compat import find_cache
from llava.model.sequence import SequenceState

_SEQUENCE_KEY = "_holitom_sequence"
_SLOT_KEY = "_holitom_methods"


def frame_tokens(flat: torch.Tensor, frames: int, per_frame: int) -> torch.Tensor:
    """A video's pooled features as transformers' `get_video_features` returns them (M, d) → (frames,
    per_frame, d). transformers 5.25 appends the image newline to them and 5.17 does not: both are read,
    and any other count is refused (a silent reshape would mix frames)."""
    if flat.shape[0] == frames * per_frame + 1:
        flat = flat[:-1]
    elif flat.shape[0] != frames * per_frame:
        import transformers

        raise HookError(
            f"get_video_features gave {flat.shape[0]} tokens for {frames} frames of {per_frame} pooled tokens "
            f"(transformers {transformers.__version__}); expected {frames * per_frame}, or one more with the newline"
        )
    return flat.view(frames, per_frame, flat.shape[-1])


class TransformersHost:
    """What every transformers VLM host shares: the LM is `model.model.language_model` (config `text_config`),
    and the per-sequence state and the method slot live on the model instance."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @property
    def lm_config(self) -> Any:
        return self.model.config.text_config

    @property
    def decoder_layers(self) -> Sequence[nn.Module]:
        return self.model.model.language_model.layers

    @property
    def rotary_embedding(self) -> nn.Module:
        return self.model.model.language_model.rotary_emb

    @property
    def sequence(self) -> SequenceState:
        state = self.model.__dict__.get(_SEQUENCE_KEY)
        return self.start_sequence() if state is None else state

    def start_sequence(self) -> SequenceState:
        """A fresh per-sequence state: nothing of the previous prompt survives."""
        state = self.model.__dict__[_SEQUENCE_KEY] = SequenceState()
        return state

    @property
    def video_compressor(self) -> VideoCompressor | None:
        return self.method_slot.get("compressor")

    @video_compressor.setter
    def video_compressor(self, compressor: VideoCompressor | None) -> None:
        if compressor is None:
            self.method_slot.pop("compressor", None)
        else:
            self.method_slot["compressor"] = compressor

    @property
    def method_slot(self) -> dict[str, Any]:
        return self.model.__dict__.setdefault(_SLOT_KEY, {})


class HFOnevisionHost(TransformersHost):
    """A transformers `LlavaOnevisionForConditionalGeneration` instance as a method host."""

    def __init__(self, model: nn.Module) -> None:
        from holitom.hosts.hf_onevision_io import check_config

        check_config(model.config)
        super().__init__(model)

    @staticmethod
    def accepts(model: Any) -> bool:
        from transformers import LlavaOnevisionForConditionalGeneration

        return isinstance(model, LlavaOnevisionForConditionalGeneration)

    @property
    def vision_probe_layer(self) -> nn.Module:
        """The encoder layer whose output is the video features: hidden state `vision_feature_layer` is the
        output of layer (L + 1 + k) − 1 for k < 0 (−1 on llava-hf: the last of its 26 kept layers)."""
        layers = self.model.model.vision_tower.encoder.layers
        k = self.model.config.vision_feature_layer
        entry = len(layers) + 1 + k if k < 0 else k
        if not 1 <= entry <= len(layers):
            raise ValueError(f"vision_feature_layer={k} does not name an encoder layer of a {len(layers)}-layer tower")
        return layers[entry - 1]

    @property
    def newline_layout(self) -> str:
        return "one_token"  # transformers appends one newline after a video's frames

    @property
    def image_newline(self) -> torch.Tensor:
        return self.model.model.image_newline

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.model.apply_pooling(features)

    def attach(self) -> SequenceTracker:
        """What every method needs on this host: sequence tracking, and video compression in forward/generate."""
        return SequenceTracker(self)


class SequenceTracker:
    """Hooks on one transformers LLaVA-OneVision instance (removed with the method): a forward pre-hook that
    compresses videos and starts each sequence's state, a forward hook that marks the prefill done (and scores
    the loss on the survivors), and an instance-level `generate` that compresses before generation starts."""

    def __init__(self, host: HFOnevisionHost) -> None:
        self.host = host
        model = host.model
        self._pending: SequenceState | None = None  # begun by a compression, waiting for its first pass
        self._pending_ids: torch.Tensor | None = None  # that compression's shortened input ids
        self._labels: torch.Tensor | None = None
        self._loss_kwargs: dict[str, Any] = {}
        self.handles = [
            model.register_forward_pre_hook(self._before, with_kwargs=True),
            model.register_forward_hook(self._after, with_kwargs=True),
        ]
        self._generate = functools.partial(type(model).generate, model)

        def generate(*args: Any, **kwargs: Any) -> Any:
            return self.generate(*args, **kwargs)

        model.generate = functools.update_wrapper(generate, type(model).generate)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
        self.host.model.__dict__.pop("generate", None)

    # ---- forward -----------------------------------------------------------------------------------------
    def _before(self, model: nn.Module, args: tuple, kwargs: dict[str, Any]):
        if args:
            if len(args) > 1:
                raise ValueError("pass the model's inputs by keyword (input_ids=..., pixel_values_videos=...)")
            kwargs = {"input_ids": args[0], **kwargs}
        cache = find_cache(kwargs, f"{type(model).__name__}.forward")
        if cache is not None and cache.get_seq_length() > 0:
            return (), kwargs  # a decode step or a continuation of the current sequence
        if kwargs.get("pixel_values_videos") is not None and self.host.video_compressor is not None:
            kwargs = self.compress(kwargs)
        ids = kwargs.get("input_ids")
        if ids is None and self._pending is not None:
            ids = self._pending_ids  # generate's first pass: the compressed prompt arrives as inputs_embeds only
        state, self._pending, self._pending_ids = self._pending or self.host.start_sequence(), None, None
        self._read_prompt(state, kwargs, ids)
        if kwargs.get("inputs_embeds") is not None:
            kwargs.pop("input_ids", None)  # the model takes one of the two
        labels = kwargs.pop("labels", None)
        if labels is not None:  # scored in `_after`, on the positions that reach the last layer
            self._labels = labels
            self._loss_kwargs = {k: kwargs[k] for k in ("num_items_in_batch", "ignore_index") if k in kwargs}
        return (), kwargs

    def _after(self, model: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any):
        state = self.host.sequence
        state.prefilled = True
        labels, self._labels = self._labels, None
        if labels is None:
            return None
        logits = output["logits"] if isinstance(output, dict) else output[0]
        kept = state.survivors
        if kept is not None and labels.shape[1] != logits.shape[1]:
            labels = labels[:, kept.to(labels.device)]
        loss = model.loss_function(
            logits=logits, labels=labels, vocab_size=model.config.text_config.vocab_size, **self._loss_kwargs
        )
        if isinstance(output, tuple):
            return (loss, *output)
        return dataclasses.replace(output, loss=loss)

    def _read_prompt(self, state: SequenceState, kwargs: dict[str, Any], ids: torch.Tensor | None) -> None:
        """Visual spans, prompt lengths and token counts of the pass that starts a sequence (`ids`: its input ids,
        None when it has only inputs_embeds)."""
        config = self.host.model.config
        if ids is None:
            embeds = kwargs.get("inputs_embeds")
            if any(kwargs.get(k) is not None for k in ("pixel_values", "pixel_values_videos", "mm_encoder_outputs")):
                raise ValueError("token-reduction methods need input_ids (with the image/video placeholders)")
            batch, length = embeds.shape[:2]
            state.visual_spans, state.prompt_lengths = [[] for _ in range(batch)], [length] * batch
            return
        batch, length = ids.shape
        visual = (ids == config.image_token_id) | (ids == config.video_token_id)
        edges = torch.diff(visual.to(torch.int8), dim=1, prepend=visual.new_zeros(batch, 1, dtype=torch.int8),
                           append=visual.new_zeros(batch, 1, dtype=torch.int8))
        rows, cols = edges.nonzero(as_tuple=True)  # per run: its start (+1), then its end (−1)
        kinds = ids[rows, cols.clamp(max=length - 1)]
        found = torch.stack([rows, cols, kinds]).tolist()  # the one read of the prompt from the device
        spans: list[list[tuple[int, int]]] = [[] for _ in range(batch)]
        runs = list(zip(*found))
        compressed = iter(state.pooled_tokens)  # videos the compression already counted, in order
        pooled = []
        for (row, start, kind), (_, end, _) in zip(runs[0::2], runs[1::2]):
            spans[row].append((start, end - start))
            state.visual_tokens.append(end - start)
            if kind == config.video_token_id:
                pooled.append(next(compressed, None) or end - start - 1)  # vanilla: every frame token, no newline
            else:
                pooled.append(end - start)
        state.pooled_tokens = pooled
        state.visual_spans, state.prompt_lengths = spans, [length] * batch

    # ---- compression -------------------------------------------------------------------------------------
    def compress(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Encode and compress every video of the batch; shrink the placeholder runs to the tokens kept and
        return the model's arguments with `inputs_embeds` (the kept tokens written over the shortened runs) and
        the shortened `input_ids` (for generate, which tracks them)."""
        model = self.host.model
        config = model.config
        ids = kwargs.get("input_ids")
        videos = kwargs.pop("pixel_values_videos")
        if ids is None:
            raise ValueError("video compression needs input_ids with the video placeholders, not inputs_embeds")
        if kwargs.get("position_ids") is not None:
            raise ValueError("position_ids cannot be given with a video-token compressor: the prompt shrinks")
        if kwargs.get("mm_encoder_outputs") is not None or kwargs.get("inputs_embeds") is not None:
            raise ValueError("give pixel_values_videos and input_ids, not mm_encoder_outputs or inputs_embeds")
        if kwargs.get("pixel_values") is not None:
            raise ValueError("images and videos in one call are not supported with a video-token compressor")
        if videos.dim() != 5 or videos.shape[0] != ids.shape[0]:
            raise ValueError(
                f"pixel_values_videos must be (batch, frames, 3, H, W) with one video per prompt row, got "
                f"{tuple(videos.shape)} for {ids.shape[0]} row(s)"
            )
        state = self._pending = self.host.start_sequence()
        tokens = []
        for video in videos:  # one video at a time: the attention probe's scores belong to one video
            pooled = self.pooled_frames(video, kwargs.get("vision_feature_layer"))
            state.pooled_tokens.append(pooled.shape[0] * pooled.shape[1])
            tokens.append(self.host.video_compressor(pooled))
            placeholders = pooled.shape[0] * pooled.shape[1] + 1
        kept = {t.shape[0] for t in tokens}
        if len(kept) > 1:
            raise ValueError(
                f"the videos of this batch compress to different token counts {sorted(kept)}; pass one video per call"
            )
        n_kept = kept.pop()
        is_video = ids == config.video_token_id
        found = is_video.sum(dim=1).tolist()
        if any(n != placeholders for n in found):
            raise ValueError(
                f"each prompt row needs {placeholders} <video> placeholders for its {videos.shape[1]}-frame video "
                f"(frames × pooled tokens + 1 newline), found {found}"
            )
        keep = ~is_video | (is_video.cumsum(dim=1) <= n_kept)  # the first n_kept placeholders take the tokens
        self.shorten(kwargs, keep, ids.shape[1] - placeholders + n_kept, torch.cat(tokens), ("labels",))
        return kwargs

    def shorten(
        self, kwargs: dict[str, Any], keep: torch.Tensor, short: int, tokens: torch.Tensor, rows: tuple[str, ...]
    ) -> torch.Tensor:
        """Cut input_ids, attention_mask and the other (batch, length) arguments in `rows` to the positions `keep`
        (batch, length) marks (`short` per row, known on the host), and pass `inputs_embeds` with `tokens`
        (all rows' kept video tokens, in order) written over the shortened placeholder runs, as the model itself
        writes video features over its placeholders. Returns the short input ids (generate tracks them)."""
        ids = kwargs["input_ids"]
        for name in ("input_ids", "attention_mask", *rows):
            value = kwargs.get(name)
            if value is None:
                continue
            if value.shape != ids.shape:
                raise ValueError(f"{name} must be (batch, length) like input_ids, got {tuple(value.shape)}")
            kwargs[name] = value[keep.to(value.device)].view(ids.shape[0], short)
        short_ids = kwargs["input_ids"]
        embeds = self.host.model.get_input_embeddings()(short_ids)
        slots = (short_ids == self.host.model.config.video_token_id)[..., None].to(embeds.device)
        kwargs["inputs_embeds"] = embeds.masked_scatter(slots, tokens.to(embeds.device, embeds.dtype))
        self._pending_ids = short_ids
        return short_ids

    def pooled_frames(self, video: torch.Tensor, feature_layer: Any = None) -> torch.Tensor:
        """One video's frames (F, 3, H, W) → pooled features (F, N, d), through the vision path in chunks of
        `vision_chunk_frames` frames (the memory this needs does not grow with the number of frames)."""
        from llava.model.llava_arch import LlavaMetaForCausalLM

        model = self.host.model
        if feature_layer is not None and feature_layer != model.config.vision_feature_layer:
            raise ValueError("vision_feature_layer cannot be overridden while a method is installed")
        chunk = max(1, int(getattr(model, "vision_chunk_frames", LlavaMetaForCausalLM.vision_chunk_frames)))
        per_frame = tokens_per_frame(model.config)
        pooled = None
        frames = video.shape[0]
        for start in range(0, frames, chunk):
            part = video[start : start + chunk]
            flat = model.model.get_video_features(part[None]).pooler_output[0]
            features = frame_tokens(flat, part.shape[0], per_frame)
            if pooled is None:
                if features.shape[0] == frames:
                    return features
                pooled = features.new_empty(frames, *features.shape[1:])
            pooled[start : start + part.shape[0]] = features
        return pooled

    # ---- generate ----------------------------------------------------------------------------------------
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            if len(args) > 1:
                raise ValueError("pass generate's inputs by keyword (input_ids=..., pixel_values_videos=...)")
            kwargs["input_ids"] = args[0]
        if kwargs.get("inputs") is not None:
            kwargs["input_ids"] = kwargs.pop("inputs")
        if kwargs.get("pixel_values_videos") is None or self.host.video_compressor is None:
            return self._generate(**kwargs)
        prompt = kwargs["input_ids"]
        with torch.no_grad():
            kwargs = self.compress(kwargs)
        try:
            out = self._generate(**kwargs)
        finally:
            self._pending = None
        return _with_prompt(out, prompt, kwargs["input_ids"].shape[1])


def _with_prompt(out: Any, prompt: torch.Tensor, short: int) -> Any:
    """generate's output with the caller's prompt ids in place of the shortened ones."""
    sequences = out if isinstance(out, torch.Tensor) else out.sequences
    copies = sequences.shape[0] // prompt.shape[0]  # num_return_sequences / beams
    full = torch.cat([prompt.repeat_interleave(copies, dim=0).to(sequences.device), sequences[:, short:]], dim=1)
    if isinstance(out, torch.Tensor):
        return full
    out.sequences = full
    return out
