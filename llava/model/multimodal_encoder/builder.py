"""Vision tower factory (LLaVA-NeXT's `build_vision_tower`)."""

from __future__ import annotations

from typing import Any

from llava.model.multimodal_encoder.siglip_encoder import SigLipVisionTower


def build_vision_tower(config: Any, **_: Any) -> SigLipVisionTower:
    name = getattr(config, "mm_vision_tower", None) or getattr(config, "vision_tower", None) or ""
    if "siglip" not in name.lower():
        raise ValueError(f"unsupported vision tower {name!r}: only SigLIP towers are implemented")
    return SigLipVisionTower(config)
