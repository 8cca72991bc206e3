"""The attention-pooling (MAP) head of a SigLIP checkpoint, the part of SigLIP that LLaVA drops and FastVID
scores frames with: loading it from a checkpoint (`load_map_head`) and applying it to the tower's features
(`map_head_outputs`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from holitom.shapes import SIGLIP_SO400M

# Values per chunk of frames (float32 elements): small on CPU (cache), larger on accelerators.
_CPU_CHUNK_VALUES = 1 << 22
_DEVICE_CHUNK_VALUES = 1 << 26

# MapHead field → name of the weight in a SigLIP vision checkpoint (after an optional "vision_model." prefix).
_HEAD_KEYS = {
    "post_norm_weight": "post_layernorm.weight",
    "post_norm_bias": "post_layernorm.bias",
    "probe": "head.probe",
    "in_proj_weight": "head.attention.in_proj_weight",
    "in_proj_bias": "head.attention.in_proj_bias",
    "out_proj_weight": "head.attention.out_proj.weight",
    "out_proj_bias": "head.attention.out_proj.bias",
    "norm_weight": "head.layernorm.weight",
    "norm_bias": "head.layernorm.bias",
    "fc1_weight": "head.mlp.fc1.weight",
    "fc1_bias": "head.mlp.fc1.bias",
    "fc2_weight": "head.mlp.fc2.weight",
    "fc2_bias": "head.mlp.fc2.bias",
}


@dataclass(frozen=True)
class MapHead:
    """The post-layernorm and attention-pooling head of a SigLIP vision checkpoint (C = hidden size,
    I = MLP width): probe (C,), in_proj (3C, C) + (3C,), out_proj (C, C) + (C,), layernorms (C,),
    fc1 (I, C) + (I,), fc2 (C, I) + (C,)."""

    post_norm_weight: Tensor
    post_norm_bias: Tensor
    probe: Tensor
    in_proj_weight: Tensor
    in_proj_bias: Tensor
    out_proj_weight: Tensor
    out_proj_bias: Tensor
    norm_weight: Tensor
    norm_bias: Tensor
    fc1_weight: Tensor
    fc1_bias: Tensor
    fc2_weight: Tensor
    fc2_bias: Tensor
    num_heads: int
    eps: float
    activation: str

    def __post_init__(self) -> None:
        width = self.probe.numel()
        if self.in_proj_weight.shape != (3 * width, width) or width % self.num_heads:
            raise ValueError(
                f"MAP head: in_proj_weight {tuple(self.in_proj_weight.shape)} and {self.num_heads} heads do not fit "
                f"a {width}-wide probe"
            )

    @property
    def hidden_size(self) -> int:
        return self.probe.numel()

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> MapHead:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in _HEAD_KEYS:
            values[name] = values[name].to(device=device, dtype=dtype)
        return MapHead(**values)


def _siglip_directory(source: str) -> str:
    """A local directory holding `source` (a directory, or a hub id fetched/looked up in the HF cache)."""
    path = os.path.expanduser(source)
    if os.path.isdir(path):
        return path
    if os.path.exists(path) or path.startswith(("/", "./", "../")):
        raise FileNotFoundError(f"{source!r} is not a directory")
    from huggingface_hub import snapshot_download

    return snapshot_download(source, allow_patterns=["config.json", "*.safetensors", "*.safetensors.index.json"])


def load_map_head(source: str) -> MapHead:
    """The MAP head and post-layernorm of a SigLIP checkpoint: a hub id or a local directory with
    config.json and safetensors, in the published layout of `SiglipModel` (google/siglip-so400m-patch14-384:
    `vision_model.head.*`, `vision_model.post_layernorm.*`) or of transformers' `SiglipVisionModel`
    (`head.*`, `post_layernorm.*`). Only these weights are read; they are returned on the CPU in their
    stored dtype. ValueError naming `source` and the way out when it cannot be loaded."""
    from safetensors import safe_open
    from transformers import SiglipVisionConfig

    name = SIGLIP_SO400M if source.startswith(("/", ".", "~")) else source  # a path: advise the hub id
    advice = (
        f"LLaVA checkpoints do not contain this head. Download {name} once while online (`hf download {name}` "
        "fills the Hugging Face cache), or set fastvid_siglip to a local directory holding its config.json and "
        "*.safetensors"
    )
    try:
        directory = _siglip_directory(source)
        with open(os.path.join(directory, "config.json")) as fh:
            raw = json.load(fh)
        files = sorted(file for file in os.listdir(directory) if file.endswith(".safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors in {directory}")
    except Exception as exc:  # noqa: BLE001 - every failure becomes one message naming the checkpoint
        raise ValueError(
            f"fastvid_siglip={source!r}: cannot load the SigLIP attention-pooling (MAP) head FastVID scores frames "
            f"with ({type(exc).__name__}: {exc}). {advice}"
        ) from exc
    vision = raw.get("vision_config", raw) if raw.get("model_type") == "siglip" else raw
    config = SiglipVisionConfig(**{k: v for k, v in vision.items() if k not in ("model_type", "architectures")})

    wanted = {key: name for name, key in _HEAD_KEYS.items()}
    tensors: dict[str, Tensor] = {}
    for file in files:
        with safe_open(os.path.join(directory, file), framework="pt") as fh:
            for key in fh.keys():
                short = key.removeprefix("vision_model.")
                if short in wanted:
                    tensors[wanted[short]] = fh.get_tensor(key)
    missing = sorted(_HEAD_KEYS[name] for name in _HEAD_KEYS if name not in tensors)
    if missing:
        raise ValueError(
            f"fastvid_siglip={source!r}: the checkpoint in {directory} has no attention-pooling (MAP) head "
            f"(missing {', '.join(missing)}). {advice}"
        )
    tensors["probe"] = tensors["probe"].reshape(-1)
    width = tensors["probe"].numel()
    if width != config.hidden_size:
        raise ValueError(f"fastvid_siglip={source!r}: probe is {width} wide, config.json says {config.hidden_size}")
    return MapHead(
        **tensors,
        num_heads=int(config.num_attention_heads),
        eps=float(config.layer_norm_eps),
        activation=str(config.hidden_act),
    )


def map_head_outputs(features: Tensor, head: MapHead) -> tuple[Tensor, Tensor]:
    """The MAP head on the vision tower's output features, as the official code applies it.

    features: (B, P, C) the last kept SigLIP layer's output (no post-layernorm). x = post_layernorm(features);
    the head's probe attends over the P patches (torch MultiheadAttention, one query). Returns
    attention (B, P): the probe's softmax weights averaged over heads (sums to 1 per row), and
    pooled (B, C): o + MLP(LayerNorm(o)) with o the attention output; both float32.
    With one query the key bias only shifts each head's logits (softmax ignores it) and the value
    projection commutes with the weighted sum, so no (B, P, C) key or value tensor is formed; frames are
    processed in chunks.
    """
    if not isinstance(features, Tensor) or features.dim() != 3 or not features.is_floating_point():
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"features must be a floating (B, P, C) tensor, got {shape}")
    batch, patches, width = features.shape
    if width != head.hidden_size:
        raise ValueError(f"features are {width} wide, the MAP head {head.hidden_size}")
    from transformers.activations import ACT2FN

    w = head.to(device=features.device, dtype=torch.float32)
    heads, head_dim = head.num_heads, width // head.num_heads
    w_q, w_k, w_v = w.in_proj_weight.split(width)
    b_q, _, b_v = w.in_proj_bias.split(width)
    query = (w.probe @ w_q.T + b_q).view(heads, head_dim) * head_dim**-0.5
    key_map = torch.einsum("hd,hdc->ch", query, w_k.view(heads, head_dim, width))  # (C, H): logits = x @ key_map
    activation = ACT2FN[head.activation]

    attention = torch.empty(batch, patches, dtype=torch.float32, device=features.device)
    pooled = torch.empty(batch, width, dtype=torch.float32, device=features.device)
    chunk = _CPU_CHUNK_VALUES if features.device.type == "cpu" else _DEVICE_CHUNK_VALUES
    step = max(1, chunk // max(1, patches * width))
    for start in range(0, batch, step):
        x = F.layer_norm(features[start : start + step].float(), (width,), w.post_norm_weight, w.post_norm_bias, head.eps)
        weights = (x @ key_map).softmax(dim=1)  # (b, P, H)
        attention[start : start + step] = weights.mean(-1)
        mixed = weights.transpose(1, 2) @ x  # (b, H, C)
        values = torch.einsum("bhc,hdc->bhd", mixed, w_v.view(heads, head_dim, width)).flatten(1) + b_v
        out = values @ w.out_proj_weight.T + w.out_proj_bias  # (b, C)
        hidden = F.layer_norm(out, (width,), w.norm_weight, w.norm_bias, head.eps)
        hidden = activation(hidden @ w.fc1_weight.T + w.fc1_bias) @ w.fc2_weight.T + w.fc2_bias
        pooled[start : start + step] = out + hidden
    return attention, pooled
