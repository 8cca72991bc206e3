"""`LlavaConfig` for Llama-based LLaVA checkpoints: lmms-eval's `llava_vid` wrapper imports it to read
configs. Only the config is provided; the models this project runs use the Qwen2 LM (`llava_qwen`)."""

from __future__ import annotations

from transformers import AutoConfig, LlamaConfig


class LlavaConfig(LlamaConfig):
    model_type = "llava_llama"


AutoConfig.register("llava_llama", LlavaConfig, exist_ok=True)
