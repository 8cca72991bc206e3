"""`load_pretrained_model`: the LLaVA-NeXT loading entry point lmms-eval and users call.

Loads a published lmms-lab checkpoint (local directory or hub id) unchanged into
`LlavaQwenForCausalLM` and returns `(tokenizer, model, image_processor, max_length)`.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import struct
from typing import Any

import torch
from transformers import AutoTokenizer

from llava.model.language_model.llava_qwen import LlavaQwenConfig, LlavaQwenForCausalLM

logger = logging.getLogger(__name__)

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "auto": "auto"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def resolve_dtype(torch_dtype: Any) -> Any:
    """A torch dtype from a torch.dtype or its name ("float16", "bfloat16", "float32", "auto")."""
    if isinstance(torch_dtype, torch.dtype):
        return torch_dtype
    if torch_dtype in DTYPES:
        return DTYPES[torch_dtype]
    raise ValueError(f"torch_dtype={torch_dtype!r} is not supported; valid: {sorted(DTYPES)} or a torch.dtype")


def check_attn_implementation(attn_implementation: str | None) -> None:
    """One line instead of a transformers traceback when flash attention is asked for but not installed."""
    import importlib.util

    if attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ValueError(
            "attn_implementation='flash_attention_2': flash-attn is not installed: `pip install -e .[gpu]` on a "
            "CUDA machine, or use sdpa"
        )


def resolve_device(device: str | None) -> str:
    """`device` (None = cuda when available) checked against this machine: one clear error, not a CUDA traceback."""
    text = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        kind = torch.device(text).type
    except RuntimeError as exc:
        raise ValueError(f"--device={text!r}: {exc}") from None
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"--device={text!r}: must be cpu or cuda[:N]")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device={text!r}: CUDA is not available on this machine (torch {torch.__version__}); use --device cpu")
    return text


def check_weight_shards(path: str) -> None:
    """Every safetensors file of a local checkpoint directory is whole: its header parses and its tensors'
    bytes are all there (a 0-byte or truncated shard fails here, named, not deep inside safetensors)."""
    for shard in sorted(glob.glob(os.path.join(path, "*.safetensors"))):
        name = os.path.basename(shard)
        size = os.path.getsize(shard)
        problem = None
        with open(shard, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                problem = f"{size} bytes, not a safetensors file"
            else:
                length = struct.unpack("<Q", head)[0]
                try:
                    if 8 + length > size:
                        raise ValueError
                    header = json.loads(fh.read(length))
                    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
                except (ValueError, KeyError, TypeError, IndexError):
                    problem = "its header is cut off or unreadable"
                else:
                    if 8 + length + end > size:
                        problem = f"truncated: {size} bytes of {8 + length + end}"
        if problem:
            raise ValueError(f"checkpoint {path!r}: weight shard {name} is damaged ({problem}); download it again")


def from_pretrained_kwargs(
    model_path: str, torch_dtype: Any, attn_implementation: str | None, device_map: Any
) -> dict[str, Any]:
    """The checked `from_pretrained` arguments of a transformers checkpoint (local shards checked whole first):
    dtype, attention implementation, and the device map (`auto` on a machine without CUDA: a plain CPU load)."""
    check_attn_implementation(attn_implementation)
    if os.path.isdir(os.path.expanduser(model_path)):
        check_weight_shards(os.path.expanduser(model_path))
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(torch_dtype)}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if device_map == "auto" and not torch.cuda.is_available():
        device_map = None
    if device_map is not None:
        kwargs["device_map"] = device_map
    return kwargs


def check_checkpoint_dir(path: str) -> None:
    """Name the missing file of a local checkpoint directory instead of failing deep inside transformers."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint directory {path!r} does not exist")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"checkpoint {path!r} has no config.json")
    if not any(os.path.isfile(os.path.join(path, f)) for f in WEIGHT_FILES):
        raise FileNotFoundError(f"checkpoint {path!r} has no weights (expected one of {', '.join(WEIGHT_FILES)})")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as fh:
            shards = sorted(set(json.load(fh)["weight_map"].values()))
        missing = [s for s in shards if not os.path.isfile(os.path.join(path, s))]
        if missing:
            raise FileNotFoundError(f"checkpoint {path!r} is missing weight shard(s): {', '.join(missing)}")
    if not any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "vocab.json", "tokenizer_config.json")):
        raise FileNotFoundError(f"checkpoint {path!r} has no tokenizer files (tokenizer.json / vocab.json)")
    check_weight_shards(path)


def load_config(model_path: str, overwrite_config: dict[str, Any] | None = None, **hub_kwargs: Any) -> LlavaQwenConfig:
    """Read config.json with `LlavaQwenConfig` (the file says model_type 'llava'), then apply overrides."""
    config_dict, _ = LlavaQwenConfig.get_config_dict(model_path, **hub_kwargs)
    # The file says model_type "llava" (published name) and often `rope_scaling: null` (legacy field).
    config_dict.pop("model_type", None)
    if config_dict.get("rope_scaling", 0) is None:
        config_dict.pop("rope_scaling")
    config = LlavaQwenConfig.from_dict(config_dict)
    archs = getattr(config, "architectures", None) or []
    if archs and not any("Qwen" in a for a in archs):
        raise ValueError(
            f"{model_path!r} is a {archs} checkpoint; this package runs the Qwen2-based LLaVA models "
            "(LlavaQwenForCausalLM: LLaVA-OneVision, LLaVA-Video)"
        )
    for key, value in (overwrite_config or {}).items():
        setattr(config, key, value)
    return config


def read_model_config(
    model_path: str, overwrite_config: dict[str, Any] | None = None, **hub_kwargs: Any
) -> LlavaQwenConfig:
    """The checkpoint's config without its weights (a local directory is checked file by file first), so
    settings can be checked before anything large is loaded."""
    if os.path.isdir(model_path) or model_path.startswith((".", "/", "~")):
        check_checkpoint_dir(os.path.expanduser(model_path))
    try:
        return load_config(model_path, overwrite_config, **hub_kwargs)
    except OSError as exc:
        raise FileNotFoundError(f"cannot load checkpoint {model_path!r}: {exc}") from exc


def load_pretrained_model(
    model_path: str,
    model_base: str | None,
    model_name: str | None,
    load_8bit: bool = False,
    load_4bit: bool = False,
    device_map: Any = "auto",
    torch_dtype: Any = "float16",
    attn_implementation: str | None = "sdpa",
    customized_config: Any = None,
    overwrite_config: dict[str, Any] | None = None,
    **kwargs: Any,
):
    """Load a LLaVA-OneVision / LLaVA-Video checkpoint.

    model_path: local directory or hub id. model_base: only None is supported (merged checkpoints).
    overwrite_config: config fields to override (mm_spatial_pool_mode, mm_spatial_pool_stride,
    mm_newline_position, ...). Returns (tokenizer, model, image_processor, max_length).
    """
    kwargs.pop("multimodal", None)
    device = kwargs.pop("device", None)
    if kwargs.pop("use_flash_attention_2", False):
        attn_implementation = "flash_attention_2"
    if model_base is not None:
        raise ValueError("model_base (LoRA / projector-only checkpoints) is not supported: pass a merged checkpoint")
    check_attn_implementation(attn_implementation)
    hub_kwargs = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "token", "local_files_only") if k in kwargs}
    if kwargs:
        logger.warning("load_pretrained_model ignores unsupported arguments: %s", sorted(kwargs))
    if customized_config is not None:
        if os.path.isdir(model_path) or model_path.startswith((".", "/", "~")):
            check_checkpoint_dir(os.path.expanduser(model_path))
        config = customized_config
        for key, value in (overwrite_config or {}).items():
            setattr(config, key, value)
    else:
        config = read_model_config(model_path, overwrite_config, **hub_kwargs)

    dtype = resolve_dtype(torch_dtype)
    load_kwargs: dict[str, Any] = {"config": config, "dtype": dtype}
    if attn_implementation is not None:
        load_kwargs["attn_implementation"] = attn_implementation
    if load_8bit or load_4bit:
        from transformers import BitsAndBytesConfig  # needs the optional bitsandbytes package

        load_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=load_8bit,
            load_in_4bit=load_4bit,
            bnb_4bit_compute_dtype=torch.float16,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_quant_type="nf4",
        )
    if device_map == "auto" and not torch.cuda.is_available():
        device_map = None  # CPU: plain load, no accelerate dispatch
    if device_map is not None:
        load_kwargs["device_map"] = device_map
    model = LlavaQwenForCausalLM.from_pretrained(model_path, **load_kwargs, **hub_kwargs)
    if device is not None and device_map is None:
        model = model.to(device)
    model.eval()

    # Passing our config stops AutoConfig from reading config.json as transformers' own "llava" type.
    tokenizer = AutoTokenizer.from_pretrained(model_path, use_fast=True, config=config, **hub_kwargs)
    image_processor = model.get_vision_tower().image_processor
    max_length = int(getattr(config, "tokenizer_model_max_length", None) or getattr(config, "max_sequence_length", 2048))
    return tokenizer, model, image_processor, max_length
