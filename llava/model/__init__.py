"""LLaVA models: `LlavaQwenForCausalLM` (OneVision, LLaVA-Video) and their configs."""

from llava.model.language_model.llava_qwen import LlavaQwenConfig, LlavaQwenForCausalLM

__all__ = ["LlavaQwenConfig", "LlavaQwenForCausalLM"]
