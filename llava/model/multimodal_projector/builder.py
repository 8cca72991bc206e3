"""Multimodal projector factory: `linear` or `mlp{N}x_gelu` (keys `mm_projector.0`, `.2`, ...)."""

from __future__ import annotations

import re
from typing import Any

from torch import nn


def build_vision_projector(config: Any, **_: Any) -> nn.Module:
    kind = getattr(config, "mm_projector_type", "linear")
    in_dim, out_dim = config.mm_hidden_size, config.hidden_size
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    match = re.fullmatch(r"mlp(\d+)x_gelu", kind)
    if match is None:
        raise ValueError(f"unsupported mm_projector_type {kind!r}: expected 'linear' or 'mlp<N>x_gelu'")
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(int(match.group(1)) - 1):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)
