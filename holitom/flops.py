"""Prefill FLOPs accounting as the HoliTom paper counts it. Pure Python: no torch.

Per decoder layer with n visual tokens, hidden d and FFN width m: 4nd² + 2n²d + 2ndm (QKV/O projections,
attention scores and values, the FFN). Prefill FLOPs = sum over layers; only visual tokens are counted (no
text, no newline tokens, no vision encoder). Which layers see how many tokens is the method's schedule
(`Method.schedule` in `holitom.methods`): e.g. HoliTom at ρ counts n = F·ceil(N·ρ) in layers 0..K−1 and
n − round(n·r) from its merge layer K on.

Qwen2.5-VL / Qwen3-VL (`QWEN_SHAPES`): a "frame" of the count is a temporal patch (two video frames) and its tokens
follow from the resolution, (H'/28)·(W'/28) with (H', W') = smart_resize(H, W) within the video processor's pixel
bounds (Qwen3-VL: /32, the bounds on the whole video); so 32 frames at 448×448 count 16 temporal patches × 16·16 =
256 tokens on Qwen2.5-VL, 16 × 14·14 on Qwen3-VL. Where head_dim is not hidden/heads (Qwen3-VL-4B, 32B: 128) the
attention terms use the real width heads·head_dim in place of d (`layer_flops`); elsewhere the count is the paper's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from holitom import methods, paper
from holitom.counts import check_int
from holitom.methods.base import Schedule
from holitom.shapes import QWEN_SHAPES, SHAPES, ModelShape, QwenVLShape, get_shape, shape_of_paper_model

QWEN_DEFAULT_FRAMES = 32
QWEN_DEFAULT_SIDE = 448  # px, both sides, when --height/--width are not given: 16×16 tokens per temporal patch


@dataclass(frozen=True)
class FlopsResult:
    """Prefill FLOPs of one method configuration on one model.

    schedule: ((first layer, visual tokens), ...); n_visual_in: tokens entering the LM; n_visual_after:
    tokens in the last layers; reduction_layer: the first layer after which fewer tokens run (None if none).
    """

    model: str
    method: str
    settings: dict[str, Any]
    frames: int
    tokens_per_frame: int
    schedule: Schedule
    flops: float
    tflops: float
    vanilla_tflops: float
    percent_of_vanilla: float
    video: str | None = None  # Qwen-VL: the video behind the count ("32 frames of 448×448 px → ...")

    @property
    def n_visual_in(self) -> int:
        return self.schedule[0][1]

    @property
    def n_visual_after(self) -> int:
        return self.schedule[-1][1]

    @property
    def reduction_layer(self) -> int | None:
        return self.schedule[1][0] if len(self.schedule) > 1 else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["schedule"] = [list(step) for step in self.schedule]
        out.update(
            n_visual_in=self.n_visual_in, n_visual_after=self.n_visual_after, reduction_layer=self.reduction_layer
        )
        return out

    def summary(self) -> str:
        stages = "".join(f" (→ {n} from layer {layer})" for layer, n in self.schedule[1:])
        frames = self.video or f"{self.frames} frames"
        return (
            f"{self.model} {self.method}, {frames}: prefill {format_flops(self.flops)} "
            f"({self.percent_of_vanilla:.1f}% of vanilla {format_flops(self.vanilla_tflops * 1e12)}), visual tokens "
            f"{self.frames * self.tokens_per_frame} → {self.n_visual_in}{stages}"
        )


def format_flops(flops: float) -> str:
    """FLOPs with a unit that shows the number: TFLOPs down to 0.1, then GFLOPs, MFLOPs."""
    for scale, unit in ((1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs")):
        if flops >= 0.1 * scale:
            return f"{flops / scale:.1f} {unit}"
    return f"{flops:.0f} FLOPs"


# ---------------------------------------------------------------------------------------------- formulas


def layer_flops(n: int, d: int, m: int, q_width: int | None = None, kv_width: int | None = None) -> int:
    """FLOPs of one decoder layer over n tokens, exact integer: the paper's 4nd² + 2n²d + 2ndm when the attention
    is d wide. In general q and o are q_width = heads·head_dim wide, k and v kv_width (default q_width: the paper
    counts k/v as wide as q, not discounting grouped-query attention): nd·q (q) + 2nd·kv (k, v) + nd·q (o) +
    2n²·q (scores, values) + 2ndm (FFN)."""
    q = d if q_width is None else q_width
    kv = q if kv_width is None else kv_width
    return 2 * n * d * (q + kv) + 2 * n * n * q + 2 * n * d * m


def schedule_flops(shape: ModelShape, schedule: Schedule) -> float:
    """Sum over the layers of `shape` of layer_flops(n_layer); schedule ((first layer, n), ...) from layer 0."""
    if not schedule or schedule[0][0] != 0:
        raise ValueError(f"schedule={schedule!r}: must start at layer 0")
    total = 0
    for (start, n), nxt in zip(schedule, (*schedule[1:], (shape.num_layers, 0))):
        check_int("visual tokens", n, 0)
        if not start <= nxt[0] <= shape.num_layers:
            raise ValueError(f"schedule={schedule!r}: layers must increase within 0..{shape.num_layers}")
        total += (nxt[0] - start) * layer_flops(n, shape.hidden, shape.ffn, shape.attention_width())
    return float(total)


def prefill_flops(
    num_layers: int,
    hidden: int,
    ffn: int,
    n_visual: int,
    merge_layer: int | None = None,
    merge_ratio: float = 0.0,
) -> float:
    """Prefill FLOPs over n_visual tokens; with merge_layer K, layers K.. see n − round(n·r)."""
    from holitom import counts

    for name, value, low in (("num_layers", num_layers, 1), ("hidden", hidden, 1), ("ffn", ffn, 1)):
        check_int(name, value, low)
    check_int("n_visual", n_visual, 0)
    shape = ModelShape("custom", num_layers, hidden, ffn, 1, 1)
    schedule: Schedule = ((0, n_visual),)
    if merge_layer is not None:
        if not 1 <= merge_layer <= num_layers - 1:
            raise ValueError(f"merge_layer={merge_layer!r}: must be in [1, {num_layers - 1}]")
        schedule += ((merge_layer, counts.after_merge_flops_count(n_visual, merge_ratio)),)
    return schedule_flops(shape, schedule)


# ---------------------------------------------------------------------------------------------- methods


def method_flops(
    model: str | ModelShape | QwenVLShape | Mapping[str, Any],
    frames: int | None = None,
    method: str = "holitom",
    *,
    height: int | None = None,
    width: int | None = None,
    **settings: Any,
) -> FlopsResult:
    """Prefill FLOPs of a registered method with its settings (by name, as `holitom.apply_method` takes
    them), as the paper counts them. Settings not given take the paper's values on a model of the paper's
    tables (`Method.presets`: e.g. FastV K=2 keep 0.2, ρ=0.15 on OV-72B / LLaVA-Video-7B), else the method's
    defaults; a layer beyond the model's depth is an error. A Qwen-VL shape name (`QWEN_SHAPES`) counts a
    video of `frames` frames (default 32) of height×width px (default 448×448) in temporal patches; the paper has
    no Qwen cells, so its settings not given are the method's defaults."""
    video = None
    if isinstance(model, str) and model in QWEN_SHAPES:
        model = QWEN_SHAPES[model]
    if isinstance(model, QwenVLShape):
        frames = QWEN_DEFAULT_FRAMES if frames is None else frames
        height = QWEN_DEFAULT_SIDE if height is None else height
        width = QWEN_DEFAULT_SIDE if width is None else width
        for name, value in (("frames", frames), ("height", height), ("width", width)):
            check_int(name, value, 1)
        shape = model.model_shape(frames, height, width)
        side = model.patch * model.merge
        t, rows, cols = model.grid(frames, height, width)
        video = (
            f"{frames} frames of {height}×{width} px → {t} temporal patches of {rows}×{cols} tokens "
            f"(resized to {rows * side}×{cols * side})"
        )
        frames = t
    elif height is not None or width is not None:
        raise ValueError(f"height/width apply to the Qwen-VL shapes ({', '.join(QWEN_SHAPES)}) only, not {model!r}")
    else:
        shape = get_shape(model)
    spec = methods.get(method)
    frames = shape.frames if frames is None else frames
    check_int("frames", frames, 1)
    published = shape.name if shape.name in SHAPES else None
    config = spec.make_config(settings, shape=published, num_layers=shape.num_layers)
    schedule = spec.schedule(config, frames, shape.tokens_per_frame, shape.num_layers)
    flops = schedule_flops(shape, schedule)
    vanilla = schedule_flops(shape, ((0, frames * shape.tokens_per_frame),))
    return FlopsResult(
        model=shape.name,
        method=method,
        settings=spec.config_dict(config),
        frames=frames,
        tokens_per_frame=shape.tokens_per_frame,
        schedule=schedule,
        flops=flops,
        tflops=flops / 1e12,
        vanilla_tflops=vanilla / 1e12,
        percent_of_vanilla=100.0 * flops / vanilla if vanilla else 0.0,
        video=video,
    )


# ---------------------------------------------------------------------------------------------- paper cells


def paper_method(label: str) -> methods.Method | None:
    """The registered method producing a row label of the paper's tables (None: not implemented yet)."""
    return next((m for m in methods.all_methods() if label in m.paper_labels), None)


def paper_cells() -> list[dict[str, Any]]:
    """Every TFLOPs cell of the paper's result tables, recomputed from the settings behind its row.

    One dict per cell: table, model (shape name), method (the row label as printed), budget (the row's
    retention block), tflops (ours, to one decimal as the paper prints; None when the method is not
    implemented), paper_tflops, settings (the settings behind the row, on top of the method's defaults; None
    when not implemented).
    """
    cells = []
    for row in paper.result_rows():
        paper_tflops = row["values"].get("TFLOPs")
        if paper_tflops is None:
            continue
        shape = shape_of_paper_model(row["model"])
        spec = paper_method(row["method"])
        tflops = settings = None
        if spec is not None and shape is not None:
            settings = spec.paper_settings(row["method"], shape, row["budget"])
            result = method_flops(shape, frames=row["frames"], method=spec.name, **settings)
            tflops = round(result.tflops, 1)
        cells.append(
            {
                "table": row["table"],
                "model": shape or row["model"],
                "method": row["method"],
                "budget": row["budget"],
                "tflops": tflops,
                "paper_tflops": paper_tflops,
                "settings": settings,
            }
        )
    return cells


# ---------------------------------------------------------------------------------------------- CLI


def add_flops_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of `holitom flops` (the method settings come from the registry)."""
    from holitom.methods.arguments import add_method_arguments

    parser.add_argument(
        "--model",
        default="ov-7b",
        help=f"published shape ({', '.join([*SHAPES, *QWEN_SHAPES])}) or a path to a llava config.json / model directory",
    )
    parser.add_argument("--frames", type=int, default=None, help="frames (default: 32 OV and Qwen, 64 LLaVA-Video)")
    parser.add_argument("--height", type=int, default=None, help=f"Qwen-VL: frame height in px (default {QWEN_DEFAULT_SIDE})")
    parser.add_argument("--width", type=int, default=None, help=f"Qwen-VL: frame width in px (default {QWEN_DEFAULT_SIDE})")
    add_method_arguments(parser, default="holitom")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a one-line summary")
    parser.add_argument("--paper", action="store_true", help="every TFLOPs cell of the paper's tables, recomputed")
    return parser


def run_flops(args: argparse.Namespace) -> int:
    """Print the FLOPs summary (or the paper's cells with --paper). Bad values raise ValueError."""
    from holitom.methods.arguments import method_settings_from_args

    if args.paper:
        cells = paper_cells()
        if args.json:
            print(json.dumps(cells, indent=2))
            return 0
        print(f"{'table':21s} {'model':7s} {'method':16s} {'budget':>6s} {'ours':>6s} {'paper':>6s}  settings")
        for cell in cells:
            ours = "–" if cell["tflops"] is None else f"{cell['tflops']:.1f}"
            settings = "not implemented" if cell["settings"] is None else _short_settings(cell["settings"])
            print(
                f"{cell['table']:21s} {cell['model']:7s} {cell['method']:16s} {cell['budget']:6.2f} {ours:>6s} "
                f"{cell['paper_tflops']:6.1f}  {settings}"
            )
        return 0
    video = {"height": getattr(args, "height", None), "width": getattr(args, "width", None)}
    result = method_flops(args.model, frames=args.frames, method=args.method, **video, **method_settings_from_args(args))
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.summary())
    return 0


def _short_settings(settings: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items())
