"""Prefill FLOPs accounting as the HoliTom paper counts it (spec: interfaces.md "FLOPs accounting").

Per decoder layer with n visual tokens, hidden d and FFN width m: 4nd² + 2n²d + 2ndm (QKV/O projections,
attention scores and values, the FFN). Prefill FLOPs = sum over layers; only visual tokens are counted (no
text, no newline tokens, no vision encoder). At retention ρ the paper counts n = F × ceil(N × ρ); with a
token reduction at layer K, layers 0..K−1 see n and layers K.. see the reduced count.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from holitom.baselines.fastv import FASTV_DEFAULT_KEEP, FASTV_DEFAULT_LAYER, fastv_keep_count
from holitom.inner import round_count

METHODS = ("vanilla", "holitom", "visionzip", "fastv")
DEFAULT_RETAIN_RATIO = 0.10  # HoliTomConfig's default ρ
DEFAULT_MERGE_RATIO = 0.5  # the paper's r
SIGLIP_GRID = 27  # SigLIP-so400m-patch14-384: 384/14 → 27×27 patches


@dataclass(frozen=True)
class ModelShape:
    """What the accounting needs of a model: LM depth/widths and the pooled visual tokens per frame."""

    name: str
    num_layers: int
    hidden: int
    ffn: int
    tokens_per_frame: int
    frames: int


MODEL_SHAPES: dict[str, ModelShape] = {
    # OneVision pools bilinearly to ceil(27/2)² = 14×14 = 196 tokens per frame; LLaVA-Video averages to 13×13.
    "ov-0.5b": ModelShape("ov-0.5b", num_layers=24, hidden=896, ffn=4864, tokens_per_frame=196, frames=32),
    "ov-7b": ModelShape("ov-7b", num_layers=28, hidden=3584, ffn=18944, tokens_per_frame=196, frames=32),
    "ov-72b": ModelShape("ov-72b", num_layers=80, hidden=8192, ffn=29568, tokens_per_frame=196, frames=32),
    "vid-7b": ModelShape("vid-7b", num_layers=28, hidden=3584, ffn=18944, tokens_per_frame=169, frames=64),
}


@dataclass(frozen=True)
class FlopsResult:
    """Prefill FLOPs of one method on one model.

    n_visual_in: visual tokens entering the LM; n_visual_after: visual tokens in layers ≥ reduction_layer
    (equal to n_visual_in when nothing is reduced inside the LM); reduction_layer: K of the inner merge or of
    FastV's pruning, None if none.
    """

    model: str
    method: str
    frames: int
    tokens_per_frame: int
    n_visual_in: int
    n_visual_after: int
    reduction_layer: int | None
    flops: float
    tflops: float
    vanilla_tflops: float
    percent_of_vanilla: float

    def summary(self) -> str:
        after = ""
        if self.n_visual_after != self.n_visual_in:
            after = f" (→ {self.n_visual_after} from layer {self.reduction_layer})"
        return (
            f"{self.model} {self.method}, {self.frames} frames: prefill {self.tflops:.1f} TFLOPs "
            f"({self.percent_of_vanilla:.1f}% of vanilla {self.vanilla_tflops:.1f}), visual tokens "
            f"{self.frames * self.tokens_per_frame} → {self.n_visual_in}{after}"
        )


# ---------------------------------------------------------------------------------------------- formulas


def layer_flops(n: int, d: int, m: int) -> int:
    """FLOPs of one decoder layer over n tokens: 4nd² + 2n²d + 2ndm (exact integer)."""
    return 4 * n * d * d + 2 * n * n * d + 2 * n * d * m


def _layers_flops(
    num_layers: int, hidden: int, ffn: int, n_in: int, n_after: int, layer: int | None
) -> float:
    k = num_layers if layer is None else min(layer, num_layers)
    return float(k * layer_flops(n_in, hidden, ffn) + (num_layers - k) * layer_flops(n_after, hidden, ffn))


def prefill_flops(
    num_layers: int,
    hidden: int,
    ffn: int,
    n_visual: int,
    merge_layer: int | None = None,
    merge_ratio: float = 0.0,
) -> float:
    """Prefill FLOPs over n_visual tokens; layers 0..K−1 see n, layers K.. see n − round(n·r).

    merge_layer None (or ≥ num_layers) means no reduction inside the LM.
    """
    for name, value, low in (("num_layers", num_layers, 1), ("hidden", hidden, 1), ("ffn", ffn, 1)):
        _check_int(name, value, low)
    _check_int("n_visual", n_visual, 0)
    if merge_layer is not None:
        _check_int("merge_layer", merge_layer, 1)
    _check_ratio("merge_ratio", merge_ratio, closed_high=False, open_low=False)
    n_after = n_visual - round_count(n_visual * merge_ratio)
    return _layers_flops(num_layers, hidden, ffn, n_visual, n_after, merge_layer)


def outer_visual_tokens(frames: int, tokens_per_frame: int, retain_ratio: float) -> int:
    """Tokens entering the LM as the paper counts them: frames × ceil(tokens_per_frame × ρ).

    The product is rounded to 9 decimals before ceil so that 196 × 0.15 (= 29.400000000000002 in binary) or
    200 × 0.15 (= 30.000000000000004) give 30, not 31.
    """
    _check_int("frames", frames, 1)
    _check_int("tokens_per_frame", tokens_per_frame, 1)
    _check_ratio("retain_ratio", retain_ratio)
    return frames * math.ceil(round(tokens_per_frame * retain_ratio, 9))


# ---------------------------------------------------------------------------------------------- model shapes


def shape_from_config(path_or_dict: str | os.PathLike[str] | Mapping[str, Any]) -> ModelShape:
    """ModelShape of a LLaVA-OneVision / LLaVA-Video config.json (a dict, a file, or a model directory).

    Reads num_hidden_layers, hidden_size, intermediate_size and mm_spatial_pool_mode / mm_spatial_pool_stride
    (default 2) to get tokens per frame from the SigLIP 27×27 grid (a `vision_config` with image_size and
    patch_size overrides the grid): bilinear → ceil(27/2)² = 196, average/max → floor(27/2)² = 169.
    Default frames: 64 for `mm_newline_position: grid` (LLaVA-Video), else 32 (OneVision).
    """
    if isinstance(path_or_dict, Mapping):
        cfg, name = dict(path_or_dict), "config"
    else:
        path = os.fspath(path_or_dict)
        file = os.path.join(path, "config.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise ValueError(f"path_or_dict={path!r}: no config.json there")
        with open(file, encoding="utf-8") as f:
            cfg = json.load(f)
        name = path
    missing = [k for k in ("num_hidden_layers", "hidden_size", "intermediate_size") if k not in cfg]
    if missing:
        raise ValueError(f"path_or_dict: config lacks {missing} (not a LLaVA/Qwen2 config?)")
    mode = cfg.get("mm_spatial_pool_mode")
    if mode not in ("bilinear", "average", "max"):
        raise ValueError(f"mm_spatial_pool_mode={mode!r} in config: must be 'bilinear', 'average' or 'max'")
    stride = cfg.get("mm_spatial_pool_stride") or 2
    _check_int("mm_spatial_pool_stride", stride, 1)
    grid = SIGLIP_GRID
    vision = cfg.get("vision_config")
    if isinstance(vision, Mapping) and "image_size" in vision and "patch_size" in vision:
        grid = int(vision["image_size"]) // int(vision["patch_size"])
    side = math.ceil(grid / stride) if mode == "bilinear" else grid // stride
    frames = 64 if cfg.get("mm_newline_position") == "grid" else 32
    shape = ModelShape(
        name=name,
        num_layers=cfg["num_hidden_layers"],
        hidden=cfg["hidden_size"],
        ffn=cfg["intermediate_size"],
        tokens_per_frame=side * side,
        frames=frames,
    )
    for field in ("num_layers", "hidden", "ffn", "tokens_per_frame"):
        _check_int(field, getattr(shape, field), 1)
    return shape


def get_shape(model: str | os.PathLike[str] | Mapping[str, Any] | ModelShape) -> ModelShape:
    """A ModelShape from a preset name (MODEL_SHAPES), a config dict, a config.json path, or a ModelShape."""
    if isinstance(model, ModelShape):
        return model
    if isinstance(model, Mapping):
        return shape_from_config(model)
    if isinstance(model, str) and model in MODEL_SHAPES:
        return MODEL_SHAPES[model]
    if isinstance(model, (str, os.PathLike)) and os.path.exists(model):
        return shape_from_config(model)
    raise ValueError(
        f"model={model!r}: unknown preset and not a config.json path; presets: {sorted(MODEL_SHAPES)}"
    )


# ---------------------------------------------------------------------------------------------- methods


def method_flops(
    shape: str | ModelShape | Mapping[str, Any],
    frames: int | None = None,
    method: str = "holitom",
    retain_ratio: float | None = None,
    merge_layer: int | None = None,
    merge_ratio: float | None = None,
    fastv_layer: int | None = None,
    fastv_keep: float | None = None,
) -> FlopsResult:
    """Prefill FLOPs of a method, as the paper counts them. Parameters that do not apply to `method` must
    be left None (a given one raises, so a typo'd command line cannot silently count something else).

    vanilla:   n = F·N in every layer.
    holitom:   n = F·ceil(N·ρ) (ρ default 0.10); with merge_layer K, layers K.. see n − round(n·r)
               (r = merge_ratio, default 0.5). No merge_layer → "HoliTom w/o M".
    visionzip: n = F·ceil(N·ρ) in every layer (same per-frame budget, no inner reduction).
    fastv:     n = F·N in layers 0..K−1 (K = fastv_layer, default 2); layers K.. keep
               fastv_keep_count(n, R) = n − round(n·(1−R)) tokens (R = fastv_keep, default 0.5).
    """
    shape = get_shape(shape)
    if method not in METHODS:
        raise ValueError(f"method={method!r}: must be one of {METHODS}")
    frames = shape.frames if frames is None else frames
    _check_int("frames", frames, 1)
    n_full = frames * shape.tokens_per_frame

    applies = {
        "retain_ratio": method in ("holitom", "visionzip"),
        "merge_layer": method == "holitom",
        "merge_ratio": method == "holitom" and merge_layer is not None,
        "fastv_layer": method == "fastv",
        "fastv_keep": method == "fastv",
    }
    given = {
        "retain_ratio": retain_ratio,
        "merge_layer": merge_layer,
        "merge_ratio": merge_ratio,
        "fastv_layer": fastv_layer,
        "fastv_keep": fastv_keep,
    }
    for name, value in given.items():
        if value is not None and not applies[name]:
            if name == "merge_ratio" and method == "holitom":
                raise ValueError(f"merge_ratio={value!r}: needs merge_layer (no inner merge without it)")
            raise ValueError(f"{name}={value!r}: does not apply to method {method!r}")

    layer: int | None = None
    if method == "vanilla":
        n_in = n_after = n_full
    elif method in ("holitom", "visionzip"):
        rho = DEFAULT_RETAIN_RATIO if retain_ratio is None else retain_ratio
        n_in = n_after = outer_visual_tokens(frames, shape.tokens_per_frame, rho)
        if merge_layer is not None:
            _check_int("merge_layer", merge_layer, 1)
            r = DEFAULT_MERGE_RATIO if merge_ratio is None else merge_ratio
            _check_ratio("merge_ratio", r, closed_high=False, open_low=False)
            layer = merge_layer
            n_after = n_in - round_count(n_in * r) if merge_layer < shape.num_layers else n_in
    else:  # fastv
        layer = FASTV_DEFAULT_LAYER if fastv_layer is None else fastv_layer
        _check_int("fastv_layer", layer, 1)
        keep = FASTV_DEFAULT_KEEP if fastv_keep is None else fastv_keep
        n_in = n_full
        n_after = fastv_keep_count(n_full, keep) if layer < shape.num_layers else n_full

    flops = _layers_flops(shape.num_layers, shape.hidden, shape.ffn, n_in, n_after, layer)
    vanilla = _layers_flops(shape.num_layers, shape.hidden, shape.ffn, n_full, n_full, None)
    return FlopsResult(
        model=shape.name,
        method=method,
        frames=frames,
        tokens_per_frame=shape.tokens_per_frame,
        n_visual_in=n_in,
        n_visual_after=n_after,
        reduction_layer=layer,
        flops=flops,
        tflops=flops / 1e12,
        vanilla_tflops=vanilla / 1e12,
        percent_of_vanilla=100.0 * flops / vanilla,
    )


def actual_prefill_flops(
    shape: str | ModelShape | Mapping[str, Any],
    n_visual_in: int,
    n_visual_after_inner: int | None = None,
    merge_layer: int | None = None,
) -> float:
    """Prefill FLOPs (paper formula) for the token counts a real run produced.

    n_visual_in: visual tokens that entered the LM (whatever the caller counts, e.g. with newline tokens);
    n_visual_after_inner: visual tokens left from merge_layer on (None → no inner reduction).
    """
    shape = get_shape(shape)
    _check_int("n_visual_in", n_visual_in, 0)
    if (merge_layer is None) != (n_visual_after_inner is None):
        raise ValueError(
            f"merge_layer={merge_layer!r}, n_visual_after_inner={n_visual_after_inner!r}: give both or neither"
        )
    if merge_layer is None:
        return _layers_flops(shape.num_layers, shape.hidden, shape.ffn, n_visual_in, n_visual_in, None)
    _check_int("merge_layer", merge_layer, 1)
    _check_int("n_visual_after_inner", n_visual_after_inner, 0)
    if n_visual_after_inner > n_visual_in:
        raise ValueError(f"n_visual_after_inner={n_visual_after_inner}: more than n_visual_in={n_visual_in}")
    return _layers_flops(
        shape.num_layers, shape.hidden, shape.ffn, n_visual_in, n_visual_after_inner, merge_layer
    )


# ---------------------------------------------------------------------------------------------- paper cells

# (model, label, method, ρ, K, r, the paper's TFLOPs). Tables 1–2 of arXiv 2505.21334; K/r None = w/o M.
_PAPER_CELLS: tuple[tuple[str, str, str, float | None, int | None, float | None, float], ...] = (
    ("ov-7b", "Vanilla", "vanilla", None, None, None, 40.8),
    ("ov-7b", "HoliTom (w/o M)", "holitom", 0.25, None, None, 8.7),
    ("ov-7b", "HoliTom (w/o M)", "holitom", 0.20, None, None, 7.0),
    ("ov-7b", "HoliTom (w/o M)", "holitom", 0.15, None, None, 5.2),
    ("ov-7b", "HoliTom (w/o M)", "holitom", 0.10, None, None, 3.4),
    ("ov-7b", "HoliTom", "holitom", 0.25, 18, 0.5, 7.1),
    ("ov-7b", "HoliTom", "holitom", 0.20, 18, 0.5, 5.8),
    ("ov-7b", "HoliTom", "holitom", 0.15, 18, 0.5, 4.3),
    ("ov-7b", "HoliTom", "holitom", 0.10, 18, 0.5, 2.8),
    ("vid-7b", "Vanilla", "vanilla", None, None, None, 80.2),
    ("vid-7b", "HoliTom (w/o M)", "holitom", 0.15, None, None, 9.3),
    ("vid-7b", "HoliTom", "holitom", 0.15, 18, 0.5, 7.6),
    ("ov-72b", "Vanilla", "vanilla", None, None, None, 429.3),
    ("ov-72b", "HoliTom", "holitom", 0.15, 60, 0.5, 51.6),
)


def paper_table() -> list[dict[str, Any]]:
    """Every TFLOPs cell of the paper's Tables 1–2, recomputed: one dict per cell with the paper's value
    (`paper_tflops`) next to ours (`tflops`, rounded to 1 decimal as the paper prints it)."""
    rows = []
    for model, label, method, rho, k, r, paper in _PAPER_CELLS:
        res = method_flops(model, method=method, retain_ratio=rho, merge_layer=k, merge_ratio=r)
        rows.append(
            {
                "model": model,
                "frames": res.frames,
                "label": label,
                "method": method,
                "retain_ratio": rho,
                "merge_layer": k,
                "merge_ratio": r,
                "n_visual_in": res.n_visual_in,
                "n_visual_after": res.n_visual_after,
                "tflops": round(res.tflops, 1),
                "percent_of_vanilla": round(res.percent_of_vanilla, 1),
                "paper_tflops": paper,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------- CLI


def add_flops_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of `holitom flops`."""
    parser.add_argument(
        "--model",
        default="ov-7b",
        help=f"preset ({', '.join(MODEL_SHAPES)}) or a path to a llava config.json / model directory",
    )
    parser.add_argument("--frames", type=int, default=None, help="frames (default: 32 OV, 64 LLaVA-Video)")
    parser.add_argument("--method", choices=METHODS, default="holitom")
    parser.add_argument(
        "--retain-ratio", type=float, default=None, help="ρ for holitom/visionzip (default 0.10)"
    )
    parser.add_argument(
        "--merge-layer", type=int, default=None, help="holitom inner merge layer K (default off)"
    )
    parser.add_argument(
        "--merge-ratio", type=float, default=None, help="holitom inner merge ratio r (default 0.5)"
    )
    parser.add_argument(
        "--fastv-layer", type=int, default=None, help=f"FastV K (default {FASTV_DEFAULT_LAYER})"
    )
    parser.add_argument(
        "--fastv-keep", type=float, default=None, help=f"FastV keep share (default {FASTV_DEFAULT_KEEP})"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a one-line summary")
    parser.add_argument("--paper", action="store_true", help="print every TFLOPs cell of the paper's tables")
    return parser


def run_flops(args: argparse.Namespace) -> int:
    """Print the FLOPs summary (or the paper's cells with --paper). Bad values raise ValueError."""
    if getattr(args, "paper", False):
        rows = paper_table()
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for row in rows:
            setting = "" if row["retain_ratio"] is None else f" ρ={row['retain_ratio']:.2f}"
            if row["merge_layer"] is not None:
                setting += f" K={row['merge_layer']} r={row['merge_ratio']}"
            print(
                f"{row['model']:7s} {row['frames']:3d}f {row['label']:16s}{setting:22s} "
                f"{row['tflops']:6.1f} TFLOPs ({row['percent_of_vanilla']:5.1f}%)  paper {row['paper_tflops']}"
            )
        return 0
    res = method_flops(
        args.model,
        frames=args.frames,
        method=args.method,
        retain_ratio=args.retain_ratio,
        merge_layer=args.merge_layer,
        merge_ratio=args.merge_ratio,
        fastv_layer=args.fastv_layer,
        fastv_keep=args.fastv_keep,
    )
    print(json.dumps(asdict(res), indent=2) if args.json else res.summary())
    return 0


# ---------------------------------------------------------------------------------------------- checks


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r}: must be an integer ≥ {low}")


def _check_ratio(name: str, value: Any, closed_high: bool = True, open_low: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > 0.0 if open_low else value >= 0.0) and (value <= 1.0 if closed_high else value < 1.0)
    if not ok:
        interval = ("(" if open_low else "[") + "0, 1" + ("]" if closed_high else ")")
        raise ValueError(f"{name}={value!r}: must be in {interval}")
