"""SigLIP vision tower as LLaVA-OneVision uses it: so400m-patch14-384 minus its last encoder layer.

The published checkpoints store only the kept encoder layers (26 of 27) under
`model.vision_tower.vision_tower.vision_model.*`; the tower's output is the last kept layer's hidden
state, without the post-layernorm and without the pooling head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import SiglipVisionConfig
from transformers.models.siglip.modeling_siglip import SiglipEncoder, SiglipVisionEmbeddings

from llava.model.multimodal_encoder.image_processor import SigLipImageProcessor

# Towers we know by name, so loading never needs the tower's own hub repo (the weights are in the checkpoint).
KNOWN_TOWERS: dict[str, dict[str, Any]] = {
    "google/siglip-so400m-patch14-384": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 384,
        "patch_size": 14,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-6,
    },
}


def tower_config(config: Any) -> SiglipVisionConfig:
    """The full (un-truncated) SigLIP config for `config.mm_vision_tower`.

    Order: an explicit `mm_vision_tower_config` dict in config.json (our tiny checkpoints), a tower we
    know by name, else the tower's own config from a local dir or the hub.
    """
    name = getattr(config, "mm_vision_tower", None) or getattr(config, "vision_tower", None)
    explicit = getattr(config, "mm_vision_tower_config", None)
    if explicit:
        return SiglipVisionConfig(**explicit)
    if name in KNOWN_TOWERS:
        return SiglipVisionConfig(**KNOWN_TOWERS[name])
    if name is None:
        raise ValueError("config has no mm_vision_tower: cannot build the vision tower")
    try:
        return SiglipVisionConfig.from_pretrained(name)
    except Exception as exc:  # noqa: BLE001 - re-raised with the name that failed
        raise ValueError(f"cannot read the SigLIP config of vision tower {name!r}: {exc}") from exc


class SiglipVisionTransformer(nn.Module):
    """SigLIP trunk built from transformers' blocks: embeddings, encoder, post-layernorm (stored, unused)."""

    def __init__(self, config: SiglipVisionConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = SiglipVisionEmbeddings(config)
        self.encoder = SiglipEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class SiglipVisionModel(nn.Module):
    """Holds the trunk as `vision_model`, so weight names match the checkpoints
    (`vision_tower.vision_model.*`; transformers 5 flattened its own SiglipVisionModel)."""

    def __init__(self, config: SiglipVisionConfig) -> None:
        super().__init__()
        self.vision_model = SiglipVisionTransformer(config)


def kept_layers(num_layers: int, select_layer: int) -> int:
    """Encoder layers needed to produce hidden state `select_layer` (-2 of 27 → 26 layers)."""
    kept = num_layers + select_layer + 1 if select_layer < 0 else select_layer
    if not 1 <= kept <= num_layers:
        raise ValueError(f"mm_vision_select_layer={select_layer} is out of range for a {num_layers}-layer tower")
    return kept


class SigLipVisionTower(nn.Module):
    """SigLIP encoder truncated at `mm_vision_select_layer`; `forward(images) -> (B, patches, hidden)`."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        full = tower_config(config)
        self.tower_name = getattr(config, "mm_vision_tower", None)
        self.select_layer = int(getattr(config, "mm_vision_select_layer", -2))
        self.select_feature = getattr(config, "mm_vision_select_feature", "patch")
        if self.select_feature not in ("patch", "cls_patch"):
            raise ValueError(f"mm_vision_select_feature={self.select_feature!r} is not supported (patch, cls_patch)")
        vision_config = full.to_dict()
        vision_config["num_hidden_layers"] = kept_layers(full.num_hidden_layers, self.select_layer)
        vision_config["vision_use_head"] = False
        self.config = SiglipVisionConfig(**vision_config)
        attn = getattr(config, "_attn_implementation", None) or "sdpa"
        self.config._attn_implementation = "eager" if attn == "eager" else "sdpa"
        self.vision_tower = SiglipVisionModel(self.config)
        self.image_processor = SigLipImageProcessor(image_size=self.config.image_size)
        self.is_loaded = True

    @property
    def encoder_layers(self) -> nn.ModuleList:
        return self.vision_tower.vision_model.encoder.layers

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_patches_per_side(self) -> int:
        return self.config.image_size // self.config.patch_size

    @property
    def num_patches(self) -> int:
        return self.num_patches_per_side**2

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_tower.vision_model.embeddings.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.vision_tower.vision_model.embeddings.patch_embedding.weight.device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) → features (B, patches, hidden) from the last kept layer."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"vision tower expects images of shape (B, 3, H, W), got {tuple(images.shape)}")
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            raise ValueError(f"vision tower expects {size}×{size} images, got {tuple(images.shape[-2:])}")
        vision_model = self.vision_tower.vision_model
        embeddings = vision_model.embeddings
        patches = embeddings.patch_embedding(images.to(device=self.device, dtype=self.dtype))
        # Position embeddings indexed directly: the `position_ids` buffer is not stored in checkpoints.
        hidden = patches.flatten(2).transpose(1, 2) + embeddings.position_embedding.weight[None]
        return vision_model.encoder(inputs_embeds=hidden).last_hidden_state
