"""Hosts: the models methods install on, behind one small interface (`Host`).

A method needs from its host model: the LM's config, the decoder layers (and the rotary embedding), the vision
tower's last kept layer, the pooling the host applies to video frames, its newline layout and newline vector, a
slot for a video-token compressor, and the per-sequence state (visual spans, prompt length, prefill flag,
survivors). `host_for(model)` returns the adapter for a model instance: `LlavaHost` (our `llava` models) or
`HFOnevisionHost` (transformers' LLaVA-OneVision).
"""

from __future__ import annotations

from typing import Any

from holitom.hosts.base import Host


def host_for(model: Any) -> Host:
    """The host adapter of a model instance: our `llava` models, or transformers'
    `LlavaOnevisionForConditionalGeneration` (ValueError for anything else)."""
    from holitom.hosts.hf_onevision import HFOnevisionHost
    from holitom.hosts.llava import LlavaHost

    if LlavaHost.accepts(model):
        return LlavaHost(model)
    if HFOnevisionHost.accepts(model):
        return HFOnevisionHost(model)
    raise ValueError(
        f"cannot install token-reduction methods on a {type(model).__name__}: expected a LLaVA-OneVision / "
        "LLaVA-Video model loaded with llava.model.builder.load_pretrained_model, or transformers' "
        "LlavaOnevisionForConditionalGeneration"
    )


__all__ = ["Host", "host_for"]
