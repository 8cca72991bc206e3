"""LLaVA-OneVision / LLaVA-Video with a Qwen2 language model (`LlavaQwenForCausalLM`).

The backbone is transformers' Qwen2 decoder; the multimodal parts come from `llava_arch`. Published
checkpoints say `model_type: "llava"` (a name transformers uses for its own Llava class), so configs
are read with `LlavaQwenConfig` directly; the `llava_qwen` name is registered with the Auto classes
as lmms-eval and LLaVA-NeXT do.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen2Model
from transformers.modeling_outputs import CausalLMOutputWithPast

from llava.model.cache_compat import CACHE_KEYWORD, find_cache
from llava.model.llava_arch import LlavaMetaForCausalLM, LlavaMetaModel


class LlavaQwenConfig(Qwen2Config):
    model_type = "llava_qwen"


class LlavaQwenModel(LlavaMetaModel, Qwen2Model):
    config_class = LlavaQwenConfig

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__(config)
        self.init_multimodal_modules(config)
        self.post_init()


class LlavaQwenForCausalLM(LlavaMetaForCausalLM, Qwen2ForCausalLM):
    config_class = LlavaQwenConfig
    base_model_prefix = "model"
    _no_split_modules = ["Qwen2DecoderLayer", "SiglipEncoderLayer"]

    def __init__(self, config: Qwen2Config) -> None:
        Qwen2ForCausalLM.__init__(self, config)
        self.model = LlavaQwenModel(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        images: Any = None,
        image_sizes: Any = None,
        modalities: list[str] | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Loss/logits for a prompt with `<image>` placeholders (IMAGE_TOKEN_INDEX) and `images`.

        The KV cache arrives as `past_key_values=` (transformers ≤ 5.23) or `cache=` (5.24+); both are read.
        """
        kwargs.pop("cache_position", None)
        past_key_values = find_cache({"past_key_values": past_key_values, **kwargs}, "LlavaQwenForCausalLM.forward")
        kwargs.pop("cache", None)
        if inputs_embeds is None and images is not None:
            _, position_ids, attention_mask, past_key_values, inputs_embeds, labels = (
                self.prepare_inputs_labels_for_multimodal(
                    input_ids, position_ids, attention_mask, past_key_values, labels, images, modalities, image_sizes
                )
            )
            input_ids = None
        elif input_ids is not None and (past_key_values is None or past_key_values.get_seq_length() == 0):
            # A new text-only sequence: no visual span, whatever the previous prompt had. (Checked here, once
            # per sequence: a decode step's ids are generated tokens, and the check would sync the device.)
            if bool((input_ids < 0).any()):
                raise ValueError("input_ids contain IMAGE_TOKEN_INDEX placeholders but no images were given")
            self.start_text_sequence(input_ids)
        out = Qwen2ForCausalLM.forward(
            self,
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **{CACHE_KEYWORD: past_key_values},
            **kwargs,
        )
        state = self.sequence_state
        state.prefilled = True
        loss = None
        if labels is not None:
            # A token-reduction method may have shortened the sequence inside the LM: score only the
            # positions that survived (text tokens always do).
            kept = state.survivors
            if kept is not None and labels.shape[1] != out.logits.shape[1]:
                labels = labels[:, kept.to(labels.device)]
            loss = self.loss_function(logits=out.logits, labels=labels, vocab_size=self.config.vocab_size)
        out = dataclasses.replace(out, loss=loss)
        return out if return_dict is not False else out.to_tuple()

    @torch.no_grad()
    def generate(
        self,
        inputs: torch.Tensor | None = None,
        images: Any = None,
        image_sizes: Any = None,
        modalities: list[str] | None = None,
        **kwargs: Any,
    ):
        """Greedy/sampled generation; with `images`, returns only the new tokens (HF inputs_embeds rule)."""
        inputs = kwargs.pop("input_ids", inputs)
        position_ids = kwargs.pop("position_ids", None)
        attention_mask = kwargs.pop("attention_mask", None)
        if "inputs_embeds" in kwargs:
            raise ValueError("pass input_ids (with <image> placeholders) and images, not inputs_embeds")
        if inputs is None:
            raise ValueError("generate() needs input_ids")
        if images is not None:
            _, _, attention_mask, _, inputs_embeds, _ = self.prepare_inputs_labels_for_multimodal(
                inputs, position_ids, attention_mask, None, None, images, modalities, image_sizes, padding_side="left"
            )
        else:
            if bool((inputs < 0).any()):
                raise ValueError("input_ids contain IMAGE_TOKEN_INDEX placeholders but no images were given")
            self.start_text_sequence(inputs)
            inputs_embeds = self.get_model().embed_tokens(inputs)
        return super().generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)


AutoConfig.register("llava_qwen", LlavaQwenConfig, exist_ok=True)
AutoModelForCausalLM.register(LlavaQwenConfig, LlavaQwenForCausalLM, exist_ok=True)
