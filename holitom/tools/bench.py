"""`holitom bench`: time-to-first-token and decode speed, vanilla vs token-reduction methods, in one process.

One model instance is built once (random weights at a published shape, or a checkpoint) and every method is
installed on it in turn; the timing core is `holitom.tools.timing`. `--methods` takes comma-separated
`NAME[@RHO][:KEY=VALUE]...` items; keys and values come from the method registry (`holitom.methods`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import time
from typing import Any

import torch

from holitom.counts import check_int
from holitom.methods.arguments import parse_method_item
from holitom.shapes import SHAPES, get_shape, match_shape
from holitom.tools.provenance import cpu_name
from holitom.tools.random_model import SHAPE_CHOICES, build_random_model, estimated_bytes, shape_config
from holitom.tools.synthetic import synthetic_pixels, synthetic_prompt, video_prompt
from holitom.tools.timing import MethodSpec, add_accounting, bench_methods, check_targets, format_table

DEFAULT_METHODS = "vanilla,holitom@0.10,holitom@0.10:K=none,visionzip@0.10,fastv"
# the frame / no_token layouts: HoliTom and VisionZip lay tokens out as one_token or grid only
DEFAULT_METHODS_OTHER_LAYOUTS = "vanilla,fastv"
# CPU: ov-0.5b widths at reduced depth and frames: `holitom bench --device cpu` takes ~1.5–2 min on 2 cores.
CPU_DEFAULTS: dict[str, Any] = {
    "shape": "ov-0.5b",
    "layers": 6,
    "vision_layers": 1,
    "frames": 8,
    "repeats": 3,
    "warmup": 1,
    "decode_tokens": 4,
}
GPU_DEFAULTS: dict[str, Any] = {
    "shape": "ov-7b",
    "layers": None,
    "vision_layers": None,
    "frames": None,
    "repeats": 5,
    "warmup": 2,
    "decode_tokens": 64,
}


# ---------------------------------------------------------------------------------------------- methods


def scaled_layer(value: int, num_layers: int, full_layers: int) -> int:
    """A layer of a `full_layers`-deep model at the same relative depth of a truncated one, in [1, L−1]."""
    if num_layers < 2:
        raise ValueError(f"num_layers={num_layers}: reductions inside the LLM need at least 2 decoder layers")
    if num_layers == full_layers:
        return value
    return min(max(round(value * num_layers / full_layers), 1), num_layers - 1)


def parse_methods(
    text: str,
    num_layers: int,
    shape: str | None = None,
    full_layers: int | None = None,
    newline_position: str = "one_token",
    common: dict[str, Any] | None = None,
) -> list[MethodSpec]:
    """Parse --methods: comma-separated `NAME[@RHO][:KEY=VALUE]...` items (`parse_method_item`).

    Settings not given take the paper's values for `shape` (HoliTom's K and τ). A method whose layers are
    relative to the depth (`Method.relative_layers`, HoliTom's K) gets its preset at the same relative depth
    of a truncated LM (`full_layers` deep when whole); without a published shape, its default, stated for
    the 28-layer 7B LM, is moved the same way. vanilla is put first when missing: every ratio is against the
    vanilla run of the same process. `common`: settings for every item whose method has them and that
    does not set them itself (e.g. reference_compat from --reference-compat).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"--methods={text!r}: give a comma-separated list, e.g. {DEFAULT_METHODS!r}")
    full = (full_layers or SHAPES[shape].num_layers) if shape in SHAPES else 28
    specs: list[MethodSpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise ValueError(f"--methods={text!r}: empty item")
        spec, given = parse_method_item(item)
        own = {s.name for s in spec.settings}
        given = {**{k: v for k, v in (common or {}).items() if k in own}, **given}
        try:
            values = {**spec.presets(shape, given), **given}
            for setting in spec.settings if spec.relative_layers else ():
                if setting.layer and setting.name not in given and not setting.sequence:
                    value = values.get(setting.name, setting.default)
                    if value is not None:
                        values[setting.name] = scaled_layer(value, num_layers, full)
            config = spec.make_config(values, num_layers=num_layers, layout=newline_position)
        except ValueError as exc:
            raise ValueError(f"--methods item {item!r}: {exc}") from None
        label = spec.label(config, given)
        if any(s.label == label for s in specs):
            raise ValueError(f"--methods={text!r}: {label!r} is listed twice")
        specs.append(MethodSpec(label, spec.name, spec.config_dict(config), item))
    if not any(s.method == "vanilla" for s in specs):
        specs.insert(0, MethodSpec("vanilla", "vanilla", {}, "vanilla"))
    return specs


# ---------------------------------------------------------------------------------------------- CLI


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of `holitom bench`. Defaults marked 'GPU/CPU' depend on --device."""
    g, c = GPU_DEFAULTS, CPU_DEFAULTS
    parser.add_argument(
        "--shape",
        choices=SHAPE_CHOICES,
        default=None,
        help=f"random weights at a published shape, no download (default: {g['shape']} on GPU, {c['shape']} on CPU)",
    )
    parser.add_argument("--model", default=None, help="a checkpoint directory or hub id instead of --shape")
    parser.add_argument(
        "--layers",
        type=int,
        default=None,
        help=f"LM decoder layers to keep (default: all; {c['layers']} for a published shape on CPU)",
    )
    parser.add_argument(
        "--vision-layers",
        type=int,
        default=None,
        help=f"SigLIP layers to keep (default: all 26; {c['vision_layers']} for a published shape on CPU)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help=f"video frames (default: 32 OV / 64 LLaVA-Video on GPU, {c['frames']} on CPU)",
    )
    parser.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help="comma-separated NAME[@RHO][:KEY=VALUE]...; holitom keys K (or none), r, tau, beta, D, knn, W, update; "
        "visionzip D; fastv K, R. vanilla is always included. Default: %(default)s (without visionzip for "
        "LLaVA-Video's grid layout)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed runs per method (default {g['repeats']} GPU / {c['repeats']} CPU)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help=f"discarded runs per method (default {g['warmup']} GPU / {c['warmup']} CPU)",
    )
    parser.add_argument(
        "--decode-tokens",
        type=int,
        default=None,
        help=f"greedy decode steps timed (default {g['decode_tokens']} GPU / {c['decode_tokens']} CPU)",
    )
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if available)")
    parser.add_argument(
        "--dtype",
        choices=("float16", "bfloat16", "float32"),
        default=None,
        help="default: float16 on GPU, float32 on CPU",
    )
    parser.add_argument(
        "--attn",
        choices=("sdpa", "eager", "flash_attention_2"),
        default="sdpa",
        help="LM attention implementation",
    )
    parser.add_argument(
        "--reference-compat",
        action="store_true",
        help="every holitom item behaves like the authors' runs (unless the item sets compat=... itself)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice); 1 gives stable numbers on a busy machine",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights, frames and prompt")
    parser.add_argument(
        "--json", default=None, metavar="OUT", help="write the full report (every run) as JSON"
    )
    return parser




def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Validated settings with the device-dependent defaults filled in."""
    device_text = getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device_text)
    except RuntimeError as exc:
        raise ValueError(f"--device={device_text!r}: {exc}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device={device_text!r}: must be cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device={device_text!r}: CUDA is not available here (use --device cpu)")
    defaults = GPU_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    model_path, shape = getattr(args, "model", None), getattr(args, "shape", None)
    if model_path and shape:
        raise ValueError(f"--model={model_path!r} and --shape={shape!r}: give one of them")
    shape = None if model_path else (shape or defaults["shape"])
    # On CPU a real shape runs at reduced depth unless told otherwise (full ov-0.5b at 32 frames takes minutes).
    reduced = device.type == "cpu" and shape in SHAPES
    out = {
        "device": device,
        "model_path": model_path,
        "shape": shape,
        "layers": getattr(args, "layers", None)
        if getattr(args, "layers", None) is not None
        else (defaults["layers"] if reduced else None),
        "vision_layers": getattr(args, "vision_layers", None)
        if getattr(args, "vision_layers", None) is not None
        else (defaults["vision_layers"] if reduced else None),
        "frames": getattr(args, "frames", None),
        "methods": getattr(args, "methods", None) or DEFAULT_METHODS,
        "attn": getattr(args, "attn", None) or "sdpa",
        "seed": getattr(args, "seed", 0) or 0,
        "json": getattr(args, "json", None),
        "threads": getattr(args, "threads", None),
    }
    if out["frames"] is None and device.type == "cpu":
        out["frames"] = defaults["frames"]
    for key in ("repeats", "warmup", "decode_tokens"):
        value = getattr(args, key, None)
        out[key] = defaults[key] if value is None else value
    check_int("--repeats", out["repeats"], 1)
    check_int("--warmup", out["warmup"], 0)
    check_int("--decode-tokens", out["decode_tokens"], 0)
    if out["frames"] is not None:
        check_int("--frames", out["frames"], 1)
    check_int("--seed", out["seed"], 0)
    if out["threads"] is not None:
        check_int("--threads", out["threads"], 1)
    if model_path and (out["layers"] is not None or out["vision_layers"] is not None):
        raise ValueError(
            "--layers/--vision-layers: only for --shape (random weights); a checkpoint runs at its own depth"
        )
    if out["shape"] is not None and out["shape"] not in SHAPE_CHOICES:
        raise ValueError(f"--shape={out['shape']!r}: valid shapes are {', '.join(SHAPE_CHOICES)}")
    dtype_name = getattr(args, "dtype", None) or ("float16" if device.type == "cuda" else "float32")
    if dtype_name not in ("float16", "bfloat16", "float32"):
        raise ValueError(f"--dtype={dtype_name!r}: must be float16, bfloat16 or float32")
    out["dtype"] = getattr(torch, dtype_name)
    if out["attn"] not in ("sdpa", "eager", "flash_attention_2"):
        raise ValueError(f"--attn={out['attn']!r}: must be sdpa, eager or flash_attention_2")
    if out["json"]:
        folder = os.path.dirname(os.path.abspath(out["json"]))
        if not os.path.isdir(folder):
            raise ValueError(f"--json={out['json']!r}: folder {folder!r} does not exist")
    return out


def _kept_vision_layers(config) -> int:
    from llava.model.multimodal_encoder.siglip_encoder import kept_layers, tower_config

    return kept_layers(
        tower_config(config).num_hidden_layers, int(getattr(config, "mm_vision_select_layer", -2))
    )


def run_bench(args: argparse.Namespace) -> int:
    """Build the model, time every method, print the table and write the JSON report."""
    import transformers

    import holitom

    opts = _resolve(args)
    device, dtype = opts["device"], opts["dtype"]
    if opts["threads"] is not None:
        torch.set_num_threads(opts["threads"])

    # Config first: --methods is checked before any weights are built or loaded.
    if opts["model_path"]:
        from llava.model.builder import load_config

        try:
            config = full_config = load_config(opts["model_path"])
        except OSError as exc:
            raise FileNotFoundError(f"--model={opts['model_path']!r}: {exc}") from None
        preset, source = match_shape(config), opts["model_path"]
    else:
        config = shape_config(opts["shape"], opts["layers"], opts["vision_layers"], opts["attn"])
        full_config = shape_config(opts["shape"])
        preset = opts["shape"] if opts["shape"] in SHAPES else None
        source = f"random weights, shape {opts['shape']}"
    num_layers, full_layers = config.num_hidden_layers, full_config.num_hidden_layers
    full_vision = _kept_vision_layers(full_config)
    newline = getattr(config, "mm_newline_position", None) or "one_token"
    frames_n = opts["frames"] or (64 if newline == "grid" else 32)
    if opts["methods"] == DEFAULT_METHODS and newline not in ("one_token", "grid"):
        opts["methods"] = DEFAULT_METHODS_OTHER_LAYOUTS
    common = {"reference_compat": True} if getattr(args, "reference_compat", False) else None
    specs = parse_methods(opts["methods"], num_layers, preset, full_layers, newline, common)
    shape = dataclasses.replace(get_shape(config.to_dict()), name=opts["shape"] or source, frames=frames_n)

    build_start = time.perf_counter()
    if opts["model_path"]:
        from llava.model.builder import load_pretrained_model

        tokenizer, model, _, _ = load_pretrained_model(
            opts["model_path"],
            None,
            None,
            device_map=str(device),
            torch_dtype=dtype,
            attn_implementation=opts["attn"],
        )
        ids = video_prompt(tokenizer)
    else:
        if device.type == "cuda":
            need = estimated_bytes(config, dtype)
            have = torch.cuda.get_device_properties(device).total_memory
            if need > 0.9 * have:
                raise ValueError(
                    f"--shape={opts['shape']}: ~{need / 2**30:.0f} GiB of {str(dtype).split('.')[-1]} weights "
                    f"do not fit in {have / 2**30:.0f} GiB; truncate with --layers N"
                )
        model = build_random_model(
            opts["shape"], opts["layers"], opts["vision_layers"], device, dtype, opts["attn"], opts["seed"]
        )
        ids = synthetic_prompt(config.vocab_size, opts["seed"])
    build_s = time.perf_counter() - build_start
    tower = model.get_vision_tower()
    frames = synthetic_pixels(frames_n, tower.config.image_size, opts["seed"]).to(device=device, dtype=dtype)
    ids = ids.to(device)

    print(
        f"holitom bench: {source}; LM {num_layers}/{full_layers} layers (d={config.hidden_size}, ffn={config.intermediate_size}), "
        f"SigLIP {len(tower.encoder_layers)}/{full_vision} layers, {frames_n} frames, {device} {str(dtype).split('.')[-1]}; "
        f"built in {build_s:.1f}s; {opts['warmup']} warm-up + {opts['repeats']} timed rounds over {len(specs)} methods"
    )
    results = bench_methods(
        model, ids, frames, specs, opts["repeats"], opts["warmup"], opts["decode_tokens"], log=print
    )
    add_accounting(results, shape, frames_n)

    device_info: dict[str, Any] = {
        "type": device.type,
        "name": cpu_name(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        device_info["name"] = torch.cuda.get_device_name(device)
        device_info["model_memory_mib"] = torch.cuda.memory_allocated(device) / 2**20
    report = {
        "tool": "holitom bench",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "holitom": holitom.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "cuda": torch.version.cuda,
        },
        "device": device_info,
        "dtype": str(dtype).split(".")[-1],
        "attn": opts["attn"],
        "model": {
            "source": source,
            "shape": opts["shape"] or preset,
            "layers": num_layers,
            "layers_full": full_layers,
            "vision_layers": len(tower.encoder_layers),
            "vision_layers_full": full_vision,
            "hidden": config.hidden_size,
            "ffn": config.intermediate_size,
            "vocab": config.vocab_size,
            "frames": frames_n,
            "tokens_per_frame": shape.tokens_per_frame,
            "prompt_text_tokens": int(ids.shape[1]) - 1,
            "build_s": build_s,
        },
        "settings": {
            "repeats": opts["repeats"],
            "warmup": opts["warmup"],
            "decode_tokens": opts["decode_tokens"],
            "seed": opts["seed"],
            "methods": opts["methods"],
        },
        "results": results,
    }
    report["targets"] = check_targets(report)
    print(format_table(report))
    if opts["json"]:
        with open(opts["json"], "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
        print(f"wrote {opts['json']}")
    return 0
