"""Hosts: the models methods install on, behind one small interface (`Host`).

A method needs from its host model: the LM's config, the decoder layers (and the rotary embedding), the vision
tower's last kept layer, the pooling the host applies to video frames, its newline layout and newline vector, a
slot for a video-token compressor, and the per-sequence state (visual spans, prompt length, prefill flag,
survivors). `host_for(model)` returns the adapter for a model instance: `LlavaHost` (our `llava` models),
`HFOnevisionHost` (transformers' LLaVA-OneVision) or `Qwen25VLHost` (transformers' Qwen2.5-VL: M-RoPE positions,
temporal patches as frames, no newline; `holitom.hosts.base` has the notions it adds) or `Qwen3VLHost`
(transformers' dense Qwen3-VL: the same, plus timestamps per temporal patch and deepstack rows that follow the
merges).
"""

from __future__ import annotations

from typing import Any

from holitom.hosts.base import Host


def host_for(model: Any) -> Host:
    """The host adapter of a model instance: our `llava` models, or transformers'
    `LlavaOnevisionForConditionalGeneration`, `Qwen2_5_VLForConditionalGeneration` or `Qwen3VLForConditionalGeneration`
    (ValueError for anything else, Qwen3-VL-MoE included)."""
    from holitom.hosts.hf_onevision import HFOnevisionHost
    from holitom.hosts.llava import LlavaHost
    from holitom.hosts.qwen2_5_vl import Qwen25VLHost
    from holitom.hosts.qwen3_vl import Qwen3VLHost

    if LlavaHost.accepts(model):
        return LlavaHost(model)
    if HFOnevisionHost.accepts(model):
        return HFOnevisionHost(model)
    if Qwen25VLHost.accepts(model):
        return Qwen25VLHost(model)
    if Qwen3VLHost.accepts(model):
        return Qwen3VLHost(model)
    if type(model).__name__.startswith("Qwen3VLMoe"):
        raise ValueError(
            f"cannot install token-reduction methods on a {type(model).__name__}: Qwen3-VL-MoE's decoder layers "
            "(sparse MoE blocks) are not supported; use the dense Qwen3VLForConditionalGeneration"
        )
    raise ValueError(
        f"cannot install token-reduction methods on a {type(model).__name__}: expected a LLaVA-OneVision / "
        "LLaVA-Video model loaded with llava.model.builder.load_pretrained_model, or transformers' "
        "LlavaOnevisionForConditionalGeneration, Qwen2_5_VLForConditionalGeneration or Qwen3VLForConditionalGeneration"
    )


__all__ = ["Host", "host_for"]
