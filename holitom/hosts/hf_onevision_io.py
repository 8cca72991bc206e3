"""transformers' own LLaVA-OneVision (`LlavaOnevisionForConditionalGeneration`, the llava-hf checkpoints).

What the rest of the package needs to run the methods on it: which kind of checkpoint a path is, loading it,
building a video prompt in the layout transformers' processor produces, and the key mapping between our
`llava` layout and transformers' (to put identical weights into both models).

The llava-hf layout (llava-hf/llava-onevision-qwen2-{0.5b,7b,72b}-ov-hf):
- config.json: `model_type: "llava_onevision"`, the Qwen2 fields under `text_config`, the SigLIP tower under
  `vision_config` with its 26 kept layers, `vision_feature_layer: -1`, `vision_feature_select_strategy:
  "full"`, `image_token_index` / `video_token_index` (the ids of the added `<image>` / `<video>` tokens).
- weights: `language_model.model.*` and `language_model.lm_head.weight` (the Qwen2 LM),
  `vision_tower.vision_model.*`, `multi_modal_projector.linear_{1,2}.*`, `image_newline`.
- processor files: preprocessor_config.json (images), video_preprocessor_config.json (videos: 384×384
  bicubic, 1/255, mean and std 0.5), processor_config.json, chat_template.json, the tokenizer files.
- a video enters the prompt as one `<video>` token that the processor repeats F·N + 1 times (N = 196 pooled
  tokens per frame, one newline); the model writes the video's features over that run.

transformers' video processor needs torchvision; frames here are prepared by our SigLIP preprocessing with the
checkpoint's video_preprocessor_config.json values (PIL bicubic resize, as the LLaVA-NeXT pipeline does).
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

MODEL_TYPE = "llava_onevision"
IMAGE_TOKEN, VIDEO_TOKEN = "<image>", "<video>"

# our llava weight names → transformers' in-memory names (prefix renames, first match wins)
_LLAVA_TO_HF = (
    ("model.vision_tower.vision_tower.vision_model.", "model.vision_tower."),
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.image_newline", "model.image_newline"),
    ("model.", "model.language_model."),
    ("lm_head.", "lm_head."),
)
# transformers' in-memory names → the names in the published llava-hf files (transformers maps them back)
_HF_TO_PUBLISHED = (
    ("model.language_model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
    ("model.vision_tower.", "vision_tower.vision_model."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("model.image_newline", "image_newline"),
)


def _rename(key: str, table: tuple[tuple[str, str], ...]) -> str:
    for old, new in table:
        if key.startswith(old):
            return new + key[len(old) :]
    raise ValueError(f"weight {key!r} has no place in the llava-hf layout")


def hf_state_dict(llava_state: dict[str, torch.Tensor], published: bool = False) -> dict[str, torch.Tensor]:
    """Our `llava` weights under transformers' names (in memory), or `published=True` the llava-hf file names."""
    out = {}
    for key, value in llava_state.items():
        name = _rename(key, _LLAVA_TO_HF)
        out[_rename(name, _HF_TO_PUBLISHED) if published else name] = value
    return out


# ---------------------------------------------------------------------------------------------- configs


def read_hf_config(model_path: str, **hub_kwargs: Any) -> Any:
    """The `LlavaOnevisionConfig` of a llava-hf checkpoint (config.json says `model_type: "llava_onevision"`),
    without its weights; None for a checkpoint of another kind (lmms-lab's say "llava"). A local directory is
    checked file by file first; config.json is read once."""
    from transformers import LlavaOnevisionConfig

    from llava.model.builder import check_checkpoint_dir

    if os.path.isdir(model_path) or model_path.startswith((".", "/", "~")):
        check_checkpoint_dir(os.path.expanduser(model_path))
    try:
        config_dict, _ = LlavaOnevisionConfig.get_config_dict(model_path, **hub_kwargs)
    except OSError as exc:
        raise FileNotFoundError(f"cannot load checkpoint {model_path!r}: {exc}") from exc
    if config_dict.get("model_type") != MODEL_TYPE:
        return None
    return LlavaOnevisionConfig.from_dict(config_dict)


def check_config(config: Any) -> None:
    """What the hosts and the prompt builder rely on: one feature layer and every SigLIP patch kept."""
    layer = config.vision_feature_layer
    if not isinstance(layer, int):
        raise ValueError(f"vision_feature_layer={layer!r}: the methods need a single vision feature layer")
    if config.vision_feature_select_strategy != "full":
        raise ValueError(
            f"vision_feature_select_strategy={config.vision_feature_select_strategy!r}: the methods need 'full' "
            "(SigLIP has no CLS token; every patch is a video feature)"
        )


def tokens_per_frame(config: Any) -> int:
    """Pooled tokens per frame: transformers pools bilinearly to ceil(side/2)² (196 on the 27×27 SigLIP grid),
    read off the model-shape table's rule (`holitom.shapes`)."""
    from holitom.shapes import shape_from_config

    return shape_from_config(config.to_dict()).tokens_per_frame


def hf_config_from_llava(llava_config: Any, vision_config: Any, image_token_id: int, video_token_id: int) -> Any:
    """The `LlavaOnevisionConfig` of one of our OneVision models (its kept SigLIP layers as the whole tower)."""
    from transformers import LlavaOnevisionConfig

    pool = getattr(llava_config, "mm_spatial_pool_mode", None) or "bilinear"
    stride = getattr(llava_config, "mm_spatial_pool_stride", None) or 2
    layout = getattr(llava_config, "mm_newline_position", None) or "one_token"
    if (pool, stride, layout) != ("bilinear", 2, "one_token"):
        raise ValueError(
            f"transformers' LLaVA-OneVision pools bilinearly with stride 2 and one newline per video; this model "
            f"has mm_spatial_pool_mode={pool!r}, stride {stride}, mm_newline_position={layout!r}"
        )
    c = llava_config
    tied = bool(getattr(c, "tie_word_embeddings", False))
    text = {
        "model_type": "qwen2",
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads,
        "vocab_size": c.vocab_size,
        "hidden_act": c.hidden_act,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_parameters": dict(c.rope_parameters),
        "max_position_embeddings": c.max_position_embeddings,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id,
        "tie_word_embeddings": tied,
    }
    vision = vision_config.to_dict()
    vision.update(model_type="siglip_vision_model", vision_use_head=False)
    return LlavaOnevisionConfig(
        text_config=text,
        vision_config=vision,
        vision_feature_layer=-1,  # the tower holds only the kept layers
        vision_feature_select_strategy="full",
        image_token_index=image_token_id,
        video_token_index=video_token_id,
        image_grid_pinpoints=getattr(c, "image_grid_pinpoints", None),
        tie_word_embeddings=tied,
    )


def to_hf_onevision(model: Any, image_token_id: int, video_token_id: int) -> Any:
    """transformers' `LlavaOnevisionForConditionalGeneration` holding the same weight tensors as one of our
    OneVision models (shared, not copied), for side-by-side checks."""
    from transformers import LlavaOnevisionForConditionalGeneration
    from transformers.initialization import no_init_weights

    config = hf_config_from_llava(model.config, model.get_vision_tower().config, image_token_id, video_token_id)
    config._attn_implementation = getattr(model.config, "_attn_implementation", None) or "sdpa"
    # built on the weights' device without initialising (the weights are swapped in), so buffers such as the
    # rotary frequencies come out exactly as transformers computes them, in float32
    with torch.device(next(model.parameters()).device), no_init_weights():
        hf = LlavaOnevisionForConditionalGeneration(config)
    missing, unexpected = hf.load_state_dict(hf_state_dict(model.state_dict()), strict=False, assign=True)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"weights do not map onto the llava-hf layout: missing {missing}, unexpected {unexpected}")
    return hf.eval()


# ---------------------------------------------------------------------------------------------- loading


def load_model(
    model_path: str,
    config: Any = None,
    device_map: Any = None,
    torch_dtype: Any = "float16",
    attn_implementation: str | None = "sdpa",
    **hub_kwargs: Any,
) -> tuple[Any, Any]:
    """(tokenizer, model) of a llava-hf checkpoint (local directory or hub id); `config`: its
    `read_hf_config`, when the caller has read it already."""
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    from llava.model.builder import from_pretrained_kwargs

    load_kwargs = from_pretrained_kwargs(model_path, torch_dtype, attn_implementation, device_map)
    config = config if config is not None else read_hf_config(model_path, **hub_kwargs)
    if config is None:
        raise ValueError(f"{model_path!r} is not a transformers LLaVA-OneVision checkpoint (model_type {MODEL_TYPE!r})")
    check_config(config)
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(
        model_path, config=config, **load_kwargs, **hub_kwargs
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path, use_fast=True, **hub_kwargs)
    for token, expected in ((IMAGE_TOKEN, config.image_token_id), (VIDEO_TOKEN, config.video_token_id)):
        if tokenizer.convert_tokens_to_ids(token) != expected:
            raise ValueError(
                f"{model_path!r}: the tokenizer's {token} id is {tokenizer.convert_tokens_to_ids(token)}, the config "
                f"says {expected}"
            )
    return tokenizer, model


def frame_processor(model_path: str, **hub_kwargs: Any) -> Any:
    """Our SigLIP frame preprocessing with the checkpoint's video_preprocessor_config.json values (the image
    processor's preprocessor_config.json when there is none; 384 px, mean and std 0.5 when neither exists)."""
    from transformers.utils import cached_file

    from llava.model.multimodal_encoder.image_processor import SigLipImageProcessor

    values: dict[str, Any] = {}
    for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
        path = cached_file(model_path, name, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        if path is not None:
            with open(path, encoding="utf-8") as fh:
                values = json.load(fh)
            break
    kwargs = {k: values[k] for k in ("image_mean", "image_std", "size", "resample", "rescale_factor") if k in values}
    return SigLipImageProcessor(**kwargs)


# ---------------------------------------------------------------------------------------------- prompts


def expand_video_tokens(input_ids: torch.Tensor, video_token_id: int, tokens_per_video: int) -> torch.Tensor:
    """(B, L) ids with one `<video>` token per video → each repeated `tokens_per_video` times (what transformers'
    processor does; every row must hold the same number of videos)."""
    repeats = torch.where(input_ids == video_token_id, tokens_per_video, 1)
    lengths = repeats.sum(dim=1)
    if input_ids.shape[0] > 1 and bool((lengths != lengths[0]).any()):
        raise ValueError("every prompt of a batch needs the same number of <video> tokens")
    return torch.repeat_interleave(input_ids.flatten(), repeats.flatten()).view(input_ids.shape[0], -1)


def video_inputs(tokenizer: Any, config: Any, prompt: str, videos: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """A prompt with a `<video>` token and the video's preprocessed frames ([(F, 3, H, W)]; no video: []) →
    the model's inputs as transformers' processor lays them out: input_ids (1, L) with the video's F·N + 1
    placeholders, attention_mask, pixel_values_videos (1, F, 3, H, W)."""
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    found = int((ids == config.video_token_id).sum())
    if found != len(videos):
        raise ValueError(f"the prompt has {found} {VIDEO_TOKEN} token(s) but {len(videos)} video(s) were given")
    if len(videos) > 1:
        raise ValueError("one video per prompt: transformers' LLaVA-OneVision takes one video per batch row")
    inputs: dict[str, torch.Tensor] = {}
    if videos:
        video = videos[0]
        if video.dim() != 4 or video.shape[0] == 0:
            raise ValueError(f"a video must be (F, 3, H, W) with F ≥ 1, got {tuple(video.shape)}")
        ids = expand_video_tokens(ids, config.video_token_id, video.shape[0] * tokens_per_frame(config) + 1)
        inputs["pixel_values_videos"] = torch.stack(videos)
    inputs["input_ids"] = ids
    inputs["attention_mask"] = torch.ones_like(ids)
    return inputs
