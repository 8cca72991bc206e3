"""`holitom generate`: answer a question about a video with the vanilla model or a reduction method,
printing the visual token counts at each stage and the timings."""

from __future__ import annotations

import argparse
import time
from typing import Any

from holitom.methods.arguments import add_method_arguments, method_settings_from_args


def require_visual_tokens(stats: Any, visual_inputs: int, where: str) -> None:
    """A request that carried images/videos must have put visual tokens into the LLM: 0 is an error (the
    video was dropped somewhere), never a statistic."""
    if visual_inputs and stats.visual_tokens == 0:
        import transformers

        from llava.errors import HookError

        raise HookError(
            f"{where}: the request carried {visual_inputs} image/video input(s) but 0 visual tokens reached the "
            f"language model (transformers {transformers.__version__}); the video was dropped"
        )


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True,
        help="checkpoint directory or hub id: lmms-lab (e.g. lmms-lab/llava-onevision-qwen2-7b-ov), transformers' "
        "llava-hf (e.g. llava-hf/llava-onevision-qwen2-7b-ov-hf), Qwen2.5-VL (e.g. Qwen/Qwen2.5-VL-7B-Instruct) or dense "
        "Qwen3-VL (e.g. Qwen/Qwen3-VL-8B-Instruct), told apart by the config's model_type",
    )  # fmt: skip
    parser.add_argument("--video", required=True, help="video file")
    parser.add_argument("--question", default="Describe this video.", help="question about the video")
    parser.add_argument("--frames", type=int, default=32, help="frames sampled uniformly (paper: 32 OV, 64 LLaVA-Video)")
    add_method_arguments(parser, default="vanilla")
    parser.add_argument("--pool-mode", choices=("bilinear", "average", "max"), default=None, help="override mm_spatial_pool_mode (LLaVA-Video: average)")
    parser.add_argument("--conv-template", default="qwen_1_5", help="llava checkpoints (Qwen-VL: its chat template)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default=None, help="default: float16 on cuda, float32 on cpu")
    parser.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, eager, flash_attention_2)")


def run_generate(args: argparse.Namespace) -> int:
    import torch

    import holitom
    from holitom import methods
    from holitom.hosts import hf_onevision_io, qwen_vl_io
    from llava.conversation import conv_templates
    from llava.model.builder import load_pretrained_model, read_model_config, resolve_device
    from llava.video import load_video

    if args.frames < 1:
        raise ValueError(f"--frames={args.frames}: must be ≥ 1")
    if args.conv_template not in conv_templates:
        raise ValueError(f"--conv-template={args.conv_template!r}: valid templates are {sorted(conv_templates)}")
    device = resolve_device(args.device)
    dtype = args.dtype or ("float16" if device.startswith("cuda") else "float32")
    settings = method_settings_from_args(args)
    methods.get(args.method).make_config(settings)  # bad values fail before anything is read
    # our llava checkpoints (lmms-lab), transformers' LLaVA-OneVision (llava-hf) or a Qwen-VL, by model_type
    hf_config = hf_onevision_io.read_hf_config(args.model)
    qwen_config = None if hf_config is not None else qwen_vl_io.read_config(args.model)
    on_hf, on_qwen = hf_config is not None, qwen_config is not None
    family = qwen_vl_io.family_of(qwen_config) if on_qwen else None
    if (on_hf or on_qwen) and args.pool_mode:
        fixed = f"{family.label} merges 2×2 patches" if family else "transformers' LLaVA-OneVision always pools bilinearly"
        raise ValueError(f"--pool-mode: {fixed}")
    overwrite = {"mm_spatial_pool_mode": args.pool_mode} if args.pool_mode else None
    model_config = hf_config or qwen_config or read_model_config(args.model, overwrite)
    methods.config_for(args.method, settings, model_config)  # ... and settings that do not fit the model

    frames, info = load_video(args.video, args.frames)
    t0 = time.perf_counter()
    if on_qwen:
        tokenizer, model = qwen_vl_io.load_model(
            args.model, qwen_config, device_map=device, torch_dtype=dtype, attn_implementation=args.attn
        )
    elif on_hf:
        tokenizer, model = hf_onevision_io.load_model(
            args.model, hf_config, device_map=device, torch_dtype=dtype, attn_implementation=args.attn
        )
        processor = hf_onevision_io.frame_processor(args.model)
    else:
        tokenizer, model, processor, _ = load_pretrained_model(
            args.model, None, None, device_map=device, torch_dtype=dtype, attn_implementation=args.attn, overwrite_config=overwrite
        )
    holitom.apply_method(model, args.method, **settings)
    load_s = time.perf_counter() - t0

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    decoding = {"do_sample": False, "max_new_tokens": args.max_new_tokens, "pad_token_id": pad}
    if on_qwen:  # the checkpoint's chat template, Qwen's preprocessing steps (ours: no torchvision)
        prompt = qwen_vl_io.video_prompt(tokenizer, qwen_vl_io.chat_template(args.model, tokenizer), args.question)
        inputs = qwen_vl_io.video_inputs(
            tokenizer, model.config, prompt, frames, qwen_vl_io.pixel_bounds(args.model, family),
            qwen_vl_io.sampled_fps(info, len(frames)), qwen_vl_io.frame_seconds(info),
        )  # fmt: skip
        inputs = {k: v.to(device) for k, v in inputs.items()}
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(model.dtype)

        def run() -> torch.Tensor:  # transformers returns the prompt too
            return model.generate(**inputs, **decoding)[:, inputs["input_ids"].shape[1] :]
    else:
        pixels = processor.preprocess(frames, return_tensors="pt")["pixel_values"].to(device=device, dtype=model.dtype)
        placeholder = hf_onevision_io.VIDEO_TOKEN if on_hf else "<image>"
        conv = conv_templates[args.conv_template].copy()
        conv.append_message(conv.roles[0], f"{placeholder}\n{args.question}")
        conv.append_message(conv.roles[1], None)
        if on_hf:
            inputs = hf_onevision_io.video_inputs(tokenizer, model.config, conv.get_prompt(), [pixels])
            inputs = {k: v.to(device) for k, v in inputs.items()}

            def run() -> torch.Tensor:  # transformers returns the prompt too
                return model.generate(**inputs, **decoding)[:, inputs["input_ids"].shape[1] :]
        else:
            from llava.constants import IMAGE_TOKEN_INDEX
            from llava.mm_utils import tokenizer_image_token

            ids = tokenizer_image_token(conv.get_prompt(), tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt")[None].to(device)

            def run() -> torch.Tensor:
                return model.generate(ids, images=[pixels], modalities=["video"], **decoding)

    on_cuda = torch.device(device).type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if on_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = run()
    sync()
    gen_s = time.perf_counter() - t0
    answer = tokenizer.batch_decode(out, skip_special_tokens=True)[0].strip()

    stats = holitom.stats(model)
    require_visual_tokens(stats, 1, "holitom generate")
    print(f"video: {args.video} ({info['total_frames']} frames, {len(frames)} sampled, backend {info['backend']})")
    kind = family.model_class if family else "LlavaOnevisionForConditionalGeneration" if on_hf else ""
    print(f"model: {args.model} ({f'transformers {kind}' if kind else 'llava'})")
    print(f"method: {stats.method} {stats.settings if stats.settings else ''}".rstrip())
    stages = "".join(f" → surviving layer {s['layer']}: {s['visual_kept']}" for s in stats.stages)
    print(f"visual tokens: pooled {stats.pooled_tokens} → entering the LLM {stats.visual_tokens}{stages}")
    for outer in stats.outer:
        if outer.get("method") == "holitom":
            print(
                f"holitom outer: {outer['segments']} temporal segments, {outer['reduced']} tokens merged in time, "
                f"ρ'={outer['adjusted_ratio']:.3f}, {outer['static']} static + {outer['dynamic']} dynamic tokens"
            )
        else:
            details = ", ".join(
                f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
                for key, value in outer.items()
                if key != "method"
            )
            print(f"{outer.get('method', stats.method)} outer: {details}")
    if stats.decode:
        d = stats.decode
        print(
            f"decode pruning from layer {d['layer']}: {d['pruned_steps']} of {d['steps']} steps pruned, "
            f"keeping {d['kept']} of {d['candidates']} candidate visual tokens"
        )
    print(f"prompt tokens (spliced): {stats.prompt_tokens}; new tokens: {out.shape[1]}")
    # the vision-attention probe's share of generate, where the installed probe measures it (Qwen-VL's)
    timed = [part.seconds for part in getattr(methods.installed(model), "parts", ()) if hasattr(part, "seconds")]
    probe = f", of which vision-attention probe {sum(timed):.2f}s" if timed else ""
    print(f"timings: load {load_s:.2f}s, generate {gen_s:.2f}s{probe} ({device}, {dtype})")
    print(f"answer: {answer}")
    return 0
