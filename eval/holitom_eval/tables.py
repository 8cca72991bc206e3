"""`holitom tables LOG_DIR`: lmms-eval result folders → the paper's table layout, Markdown and LaTeX, plus a
FLOPs-vs-average-score plot.

Rows are method × retention (one table per checkpoint and frame count); columns are prefill TFLOPs with the
percentage of vanilla, MVBench, EgoSchema, LongVideoBench, VideoMME, their average, and that average as a
percentage of the vanilla row's average. Scores are percentages. Sources, all found by walking LOG_DIR:

- `*_results.json` written by lmms-eval (`--output_path`): scores, the model and its `--model_args`.
- `holitom_run.json` / `holitom_samples_rank*.jsonl` written by the `holitom_llava` model (`stats_dir`) in
  the same run folder or a parent (names: `holitom_eval.records`): the settings in force, the paper-style
  FLOPs of the configuration and the measured per-request visual tokens and prefill FLOPs. Without them
  (e.g. lmms-eval's stock llava wrappers) the paper-style FLOPs are computed from the model args with
  `holitom.flops`.

MVBench is the sample-weighted mean of its sub-tasks (`mvbench_*`) when the group itself has no score; the
local smoke tasks (`smoke_<task>`) count as their benchmark. Results of the same configuration found more
than once: the newest file wins per benchmark.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from holitom import methods
from holitom_eval import records

# (task, column title, [(metric, scale to percent)...]) in table order.
BENCHMARKS: tuple[tuple[str, str, tuple[tuple[str, float], ...]], ...] = (
    ("mvbench", "MVBench", (("mvbench_accuracy", 1.0),)),
    ("egoschema", "EgoSchema", (("submission", 1.0), ("score", 100.0))),
    ("longvideobench_val_v", "LongVideoBench", (("lvb_acc", 100.0),)),
    ("videomme", "VideoMME", (("videomme_perception_score", 1.0),)),
)
# Other task names that count as a benchmark (smoke_ prefixes are stripped first).
TASK_ALIASES = {"egoschema_subset": "egoschema"}
STOCK_MODELS_NOTE = "lmms-eval's stock llava wrappers run the vanilla model"


def _row_kinds() -> tuple[dict[str, int], dict[str, str]]:
    """Row kinds in the paper's Table 1 order (Vanilla, FastV, PDrop, ..., HoliTom), with their labels.

    A kind is a registered method's name, or "holitom_wo_m" for HoliTom without inner merging."""
    labels = {"vanilla": "Vanilla", "holitom_wo_m": "HoliTom (w/o M)", "holitom": "HoliTom"}
    for method in methods.all_methods():
        if method.name not in labels and method.paper_labels:
            labels[method.name] = method.paper_labels[0]
    paper_order = ["Vanilla", "FastV", "PDrop", "DyCoke", "VisionZip", "PruneVid", "FastVID", "HoliTom (w/o M)", "HoliTom"]
    order = {kind: paper_order.index(label) if label in paper_order else len(paper_order) for kind, label in labels.items()}
    return order, labels


METHOD_ORDER, METHOD_LABELS = _row_kinds()
STOCK_MODELS = ("llava_onevision", "llava_vid")
DETAIL_NAMES = {"tau": "τ", "merge_layer": "K", "merge_ratio": "r", "beta": "β", "fastv_layer": "K"}
LATEX_DETAIL = {"τ": r"$\tau$", "β": r"$\beta$"}


@dataclass
class Row:
    """One configuration: its identity, FLOPs, scores (percent) and measured counts."""

    model: str
    frames: int | None
    method: str  # key of METHOD_LABELS
    retention: float
    details: dict[str, Any]
    tflops: float | None = None
    percent: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    dates: dict[str, str] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    runs: set[str] = field(default_factory=set)
    measured: dict[str, float] = field(default_factory=dict)
    label: str = ""

    @property
    def avg(self) -> float | None:
        values = [self.scores[b] for b, _, _ in BENCHMARKS if b in self.scores]
        return sum(values) / len(values) if values else None

    @property
    def complete(self) -> bool:
        return all(b in self.scores for b, _, _ in BENCHMARKS)


# ---------------------------------------------------------------------------------------------- reading


def _value(text: str) -> Any:
    """A model-arg value converted the way lmms-eval converts it."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.isnumeric():
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def parse_model_args(model_args: Any) -> dict[str, Any]:
    """lmms-eval's `model_args` (a "k=v,k=v" string or a dict) as a dict."""
    if isinstance(model_args, dict):
        return dict(model_args)
    out: dict[str, Any] = {}
    for part in str(model_args or "").split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            out[name.strip()] = _value(value.strip())
    return out


def _find_up(start: str, stop: str, name: str) -> str | None:
    """The nearest `name` in `start` or its parents, not above `stop`."""
    here, stop = os.path.abspath(start), os.path.abspath(stop)
    while True:
        if os.path.isfile(os.path.join(here, name)):
            return os.path.join(here, name)
        if here == stop or os.path.dirname(here) == here:
            return None
        here = os.path.dirname(here)


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.lower() in ("none", "null", "off", ""))


def _identity(model: str, args: dict[str, Any], run_record: dict[str, Any] | None) -> tuple[str, float, dict]:
    """(row kind, retention, details) of one configuration: the settings in force, from the run record
    (or, without one, the model args over the method's defaults)."""
    if model in STOCK_MODELS:
        return "vanilla", 1.0, {}
    name = (run_record or {}).get("method") or args.get("method", "vanilla")
    try:
        spec = methods.get(name)
    except ValueError:
        return name, 1.0, {}
    if name == "vanilla":
        return "vanilla", 1.0, {}
    # "holitom_config": the record of runs made before the method registry (still read: finished runs count)
    config = dict((run_record or {}).get("method_config") or (run_record or {}).get("holitom_config") or {})
    if not config:
        given = {k: v for k, v in args.items() if k in {s.name for s in spec.settings}}
        try:
            config = spec.config_dict(spec.make_config(given))
        except ValueError:
            config = given
    retention_key = spec.retention_setting
    retention = float(config.get(retention_key, 1.0)) if retention_key else 1.0
    details = {k: v for k, v in config.items() if k != retention_key}
    kind = name
    if name == "holitom":
        layer = details.get("merge_layer")
        num_layers = ((run_record or {}).get("shape") or {}).get("num_layers")
        merged = layer is not None and (num_layers is None or layer < num_layers)
        kind = "holitom" if merged else "holitom_wo_m"
        if not merged:
            details = {k: v for k, v in details.items() if k not in ("merge_layer", "merge_ratio", "inner_update")}
    return kind, retention, details


def _paper_flops(model: str, args: dict[str, Any], kind: str, retention: float, details: dict) -> Any:
    """Paper-style FLOPs from the model args when the run left no run record."""
    from holitom.flops import method_flops
    from holitom.shapes import SHAPES, get_shape, guess_shape

    pretrained = str(args.get("pretrained", ""))
    try:
        shape = get_shape(pretrained)
    except ValueError:
        preset = guess_shape(pretrained)
        if preset is None:
            return None
        shape = SHAPES[preset]
    frames = int(args.get("max_frames_num", 32 if model != "llava_vid" else 20))
    name = "holitom" if kind == "holitom_wo_m" else kind
    try:
        spec = methods.get(name)
        settings = dict(details)
        if spec.retention_setting:
            settings[spec.retention_setting] = retention
        if kind == "holitom_wo_m":
            settings["merge_layer"] = None
        return method_flops(shape, frames=frames, method=name, **settings)
    except ValueError:
        return None


def _measured(run_dir: str) -> dict[str, float]:
    """Means over the model's per-request records in a run folder (all ranks)."""
    lines = []
    for path in sorted(glob.glob(os.path.join(run_dir, records.SAMPLES_GLOB))):
        with open(path) as fh:
            lines += [json.loads(line) for line in fh if line.strip()]
    if not lines:
        return {}
    n = len(lines)
    kept = [r["visual_tokens"] if r.get("visual_kept") is None else r["visual_kept"] for r in lines]
    return {
        "requests": n,
        "visual_tokens": sum(r["visual_tokens"] for r in lines) / n,
        "visual_kept": sum(kept) / n,
        "tflops": sum(r["tflops"] for r in lines) / n,
    }


def _benchmark_of(task: str) -> tuple[str, bool] | None:
    """(benchmark, is a sub-task) for a task name, or None."""
    name = task[len("smoke_") :] if task.startswith("smoke_") else task
    name = TASK_ALIASES.get(name, name)
    for bench, _, _ in BENCHMARKS:
        if name == bench:
            return bench, False
    if name.startswith("mvbench_"):
        return "mvbench", True
    return None


def _metric(result: dict[str, Any], metrics: Iterable[tuple[str, float]]) -> float | None:
    for metric, scale in metrics:
        for key, value in result.items():
            if key.split(",")[0] == metric and "_stderr" not in key and isinstance(value, (int, float)):
                return float(value) * scale
    return None


def scores_of(results: dict[str, Any]) -> dict[str, tuple[float, int]]:
    """Benchmark → (score in percent, documents) from one lmms-eval results.json."""
    per_task = results.get("results") or {}
    samples = results.get("n-samples") or {}
    whole: dict[str, tuple[float, int]] = {}
    parts: dict[str, list[tuple[float, int]]] = {}
    metrics = {bench: m for bench, _, m in BENCHMARKS}
    for task, result in per_task.items():
        found = _benchmark_of(task)
        if found is None:
            continue
        bench, is_part = found
        value = _metric(result, metrics[bench])
        if value is None:
            continue
        n = int((samples.get(task) or {}).get("effective", 0) or 0)
        if is_part:
            parts.setdefault(bench, []).append((value, n))
        else:
            whole[bench] = (value, n)
    for bench, values in parts.items():
        if bench not in whole:
            total = sum(n for _, n in values)
            mean = sum(v * n for v, n in values) / total if total else sum(v for v, _ in values) / len(values)
            whole[bench] = (mean, total)
    return whole


def collect(log_dir: str) -> list[Row]:
    """Every configuration with results under log_dir, sorted for the tables."""
    log_dir = os.path.abspath(log_dir)
    if not os.path.isdir(log_dir):
        raise ValueError(f"LOG_DIR={log_dir!r} is not a directory")
    files = sorted(glob.glob(os.path.join(log_dir, "**", records.RESULTS_GLOB), recursive=True))
    if not files:
        raise ValueError(f"no lmms-eval results ({records.RESULTS_GLOB}) under {log_dir}")
    rows: dict[tuple, Row] = {}
    for path in files:
        with open(path) as fh:
            results = json.load(fh)
        config = results.get("config") or {}
        model = str(config.get("model", ""))
        args = parse_model_args(config.get("model_args"))
        record_path = _find_up(os.path.dirname(path), log_dir, records.RUN_RECORD)
        record = None
        if record_path:
            with open(record_path) as fh:
                record = json.load(fh)
        method, retention, details = _identity(model, args, record)
        pretrained = str(args.get("pretrained", "?")).rstrip("/")
        frames = args.get("max_frames_num")
        frames = int(frames) if isinstance(frames, (int, float)) else None
        key = (pretrained, frames, method, round(retention, 6), json.dumps(details, sort_keys=True))
        row = rows.get(key)
        if row is None:
            name = os.path.basename(pretrained) or pretrained
            row = rows[key] = Row(name, frames, method, retention, details)
            flops = (record or {}).get("paper_flops")
            if flops:
                row.tflops, row.percent = flops["tflops"], flops["percent_of_vanilla"]
            else:
                result = _paper_flops(model, args, method, retention, details)
                if result is not None:
                    row.tflops, row.percent = result.tflops, result.percent_of_vanilla
        run_dir = os.path.dirname(record_path) if record_path else os.path.dirname(path)
        row.runs.add(os.path.relpath(run_dir, log_dir))
        if record_path and not row.measured:
            row.measured = _measured(run_dir)
        date = str(results.get("date", "")) or str(os.path.getmtime(path))
        for bench, (value, n) in scores_of(results).items():
            if date >= row.dates.get(bench, ""):
                row.scores[bench], row.samples[bench], row.dates[bench] = value, n, date
    ordered = sorted(
        rows.values(),
        key=lambda r: (
            r.model,
            r.frames or 0,
            r.method != "vanilla",
            -r.retention,
            METHOD_ORDER.get(r.method, 9),
            json.dumps(r.details, sort_keys=True),
        ),
    )
    _label(ordered)
    return ordered


def _label(rows: list[Row]) -> None:
    """Method labels; rows that would read the same get the settings that tell them apart."""
    for row in rows:
        row.label = METHOD_LABELS.get(row.method, row.method)
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        groups.setdefault((row.model, row.frames, row.label, row.retention), []).append(row)
    for group in groups.values():
        if len(group) < 2:
            continue
        keys = sorted({k for r in group for k in r.details})
        varying = [k for k in keys if len({json.dumps(r.details.get(k)) for r in group}) > 1]
        for row in group:
            text = ", ".join(f"{DETAIL_NAMES.get(k, k)}={row.details.get(k)}" for k in varying)
            row.label = f"{row.label} ({text})"


# ---------------------------------------------------------------------------------------------- rendering


def _fmt_tflops(row: Row) -> str:
    if row.tflops is None:
        return "–"
    value = f"{row.tflops:.1f}" if row.tflops >= 0.1 else f"{row.tflops:.2g}"
    return value if row.percent is None else f"{value} ({row.percent:.1f}%)"


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _retention(row: Row) -> str:
    return "100%" if row.method == "vanilla" else f"{100 * row.retention:g}%"


def table_cells(rows: list[Row]) -> list[list[str]]:
    """Body cells of one model's table (vanilla gives the reference average)."""
    vanilla = next((r for r in rows if r.method == "vanilla"), None)
    reference = vanilla.avg if vanilla is not None else None
    body = []
    for row in rows:
        avg = row.avg
        relative = "–"
        if avg is not None and reference:
            relative = f"{100 * avg / reference:.1f}%"
        avg_text = _fmt(avg) + ("" if row.complete or avg is None else "*")
        scores = [_fmt(row.scores.get(b)) for b, _, _ in BENCHMARKS]
        body.append([row.label, _retention(row), _fmt_tflops(row), *scores, avg_text, relative])
    return body


HEADER = [
    "Method",
    "Retention",
    "TFLOPs (FLOPs %)",
    *(title for _, title, _ in BENCHMARKS),
    "Avg",
    "Avg (% of vanilla)",
]


def _groups(rows: list[Row]) -> list[tuple[str, list[Row]]]:
    out: dict[str, list[Row]] = {}
    for row in rows:
        title = row.model + (f", {row.frames} frames" if row.frames else "")
        out.setdefault(title, []).append(row)
    return list(out.items())


def to_markdown(rows: list[Row]) -> str:
    parts = []
    for title, group in _groups(rows):
        lines = [f"### {title}", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(cells) + " |" for cells in table_cells(group)]
        if any(not r.complete for r in group if r.avg is not None):
            lines += ["", "\\* average over the benchmarks present only."]
        measured = [r for r in group if r.measured]
        if measured:
            lines += [
                "",
                "Measured per request (holitom_llava records): visual tokens entering the LLM, left after "
                "inner-LLM reduction, and the prefill TFLOPs those counts give.",
                "",
                "| Method | Retention | Requests | Visual tokens | After inner | Measured TFLOPs | Runs |",
                "|---|---|---|---|---|---|---|",
            ]
            for r in measured:
                m = r.measured
                tf = f"{m['tflops']:.1f}" if m["tflops"] >= 0.1 else f"{m['tflops']:.2g}"
                lines.append(
                    f"| {r.label} | {_retention(r)} | {int(m['requests'])} | {m['visual_tokens']:.1f} | "
                    f"{m['visual_kept']:.1f} | {tf} | {', '.join(sorted(r.runs))} |"
                )
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _latex_escape(text: str) -> str:
    for symbol, latex in LATEX_DETAIL.items():
        text = text.replace(symbol, latex)
    for char in ("&", "%", "#", "_"):
        text = text.replace(char, "\\" + char)
    return text


def to_latex(rows: list[Row]) -> str:
    parts = []
    for title, group in _groups(rows):
        head = " & ".join(_latex_escape(h) for h in HEADER)
        lines = [
            f"% {title}",
            "\\begin{tabular}{ll" + "c" * (len(HEADER) - 2) + "}",
            "\\toprule",
            f"\\multicolumn{{{len(HEADER)}}}{{l}}{{\\textit{{{_latex_escape(title)}}}}} \\\\",
            head + " \\\\",
            "\\midrule",
        ]
        previous = None
        for row, cells in zip(group, table_cells(group)):
            if previous is not None and previous.method == "vanilla" and row.method != "vanilla":
                lines.append("\\midrule")
            previous = row
            lines.append(" & ".join(_latex_escape(c) for c in cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def plot(rows: list[Row], path: str) -> str | None:
    """FLOPs (x) against the average score (y), one point per configuration; None if nothing to plot."""
    points = [r for r in rows if r.tflops is not None and r.avg is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    markers = "osD^v<>"
    models = list(dict.fromkeys(title for title, _ in _groups(points)))
    for title, group in _groups(points):
        by_method: dict[str, list[Row]] = {}
        for r in group:
            by_method.setdefault(r.method, []).append(r)
        for method, items in sorted(by_method.items(), key=lambda kv: METHOD_ORDER.get(kv[0], 9)):
            items = sorted(items, key=lambda r: r.tflops)
            name = METHOD_LABELS.get(method, method) + (f" — {title}" if len(models) > 1 else "")
            ax.plot(
                [r.tflops for r in items],
                [r.avg for r in items],
                marker=markers[models.index(title) % 7],
                linestyle="-" if len(items) > 1 else "none",
                label=name,
            )
            for r in items:
                if r.method != "vanilla":
                    ax.annotate(
                        _retention(r),
                        (r.tflops, r.avg),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize=7,
                    )
    ax.set_xlabel("prefill TFLOPs (paper accounting)")
    ax.set_ylabel("average score (%)")
    if (
        all(r.tflops > 0 for r in points)
        and max(r.tflops for r in points) / min(r.tflops for r in points) > 20
    ):
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def rows_as_dicts(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        out.append(
            {
                "model": r.model,
                "frames": r.frames,
                "method": r.method,
                "label": r.label,
                "retention": r.retention,
                "details": r.details,
                "tflops": r.tflops,
                "percent_of_vanilla": r.percent,
                "scores": r.scores,
                "samples": r.samples,
                "avg": r.avg,
                "complete": r.complete,
                "measured": r.measured,
                "runs": sorted(r.runs),
            }
        )
    return out


def write_tables(log_dir: str, out_dir: str | None = None, plot_png: bool = True) -> list[str]:
    """Collect log_dir and write tables.md, tables.tex, tables.json (and flops_vs_avg.png) to out_dir
    (default log_dir); returns the paths written."""
    return _write(collect(log_dir), out_dir or log_dir, plot_png)


def _write(rows: list[Row], out_dir: str, plot_png: bool) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, text in (("tables.md", to_markdown(rows)), ("tables.tex", to_latex(rows))):
        path = os.path.join(out_dir, name)
        with open(path, "w") as fh:
            fh.write(text)
        written.append(path)
    path = os.path.join(out_dir, "tables.json")
    with open(path, "w") as fh:
        json.dump(rows_as_dicts(rows), fh, indent=2)
    written.append(path)
    if plot_png:
        png = plot(rows, os.path.join(out_dir, "flops_vs_avg.png"))
        if png:
            written.append(png)
    return written


# ---------------------------------------------------------------------------------------------- CLI


def add_tables_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of `holitom tables`."""
    parser.add_argument(
        "log_dir", help="folder with lmms-eval results (searched recursively), e.g. a sweep's OUT"
    )
    parser.add_argument(
        "--out", default=None, help="where to write tables.md/.tex/.json and the plot (default LOG_DIR)"
    )
    parser.add_argument("--format", choices=("markdown", "latex"), default="markdown", help="what to print")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    return parser


def run_tables(args: argparse.Namespace) -> int:
    """Print the table and write the files; a LOG_DIR without results raises ValueError."""
    rows = collect(args.log_dir)
    written = _write(rows, args.out or args.log_dir, plot_png=not args.no_plot)
    print(to_latex(rows) if args.format == "latex" else to_markdown(rows), end="")
    print("\nwrote " + ", ".join(written))
    return 0
