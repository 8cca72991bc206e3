"""The rows of `holitom tables`: lmms-eval result folders → one row per configuration, with its scores, FLOPs,
the paper's numbers for the same row, and where the numbers came from. (Rendering: `holitom_eval.report`.)

Rows are method × retention (one table per checkpoint and frame count). Scores are percentages. Sources, all
found by walking LOG_DIR:

- `*_results.json` written by lmms-eval (`--output_path`): scores, the model and its `--model_args`.
- `holitom_run.json` / `holitom_samples_rank*.jsonl` written by the `holitom_llava` model (`stats_dir`) in
  the same run folder or a parent (names: `holitom_eval.records`): the settings in force, the paper-style
  FLOPs of the configuration and the measured per-request visual tokens and prefill FLOPs. Without them
  (e.g. lmms-eval's stock llava wrappers) the paper-style FLOPs are computed from the model args with
  `holitom.flops`.

MVBench is the sample-weighted mean of its sub-tasks (`mvbench_*`) when the group itself has no score; the
local smoke tasks (`smoke_<task>`) count as their benchmark. Results of the same configuration found more
than once: the newest file wins per benchmark.

The paper's row for a result row (`holitom.paper`): the same printed method label, at the same retention for
methods with a `retain_ratio` (the first row of that label otherwise), in the paper table of the same model and
frame count — or in a table named explicitly (a sweep config's `paper_table`, `holitom tables --paper`), which
is how a smoke sweep on a tiny model is set beside the table it stands in for.
"""

from __future__ import annotations

import glob
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from holitom import methods, paper
from holitom.shapes import guess_shape, match_shape, shape_of_paper_model
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
PAPER_AUTO, PAPER_NONE = "auto", "none"


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
    shape: str | None = None  # the published shape the checkpoint has (holitom.shapes), if any
    paper: dict[str, Any] | None = None  # the paper's row: table, method, budget, values
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)  # run folder → where it came from

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
    retention = float(config.get(retention_key, 1.0)) if retention_key else _retention(spec, config, args, run_record)
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


def _retention(spec: Any, config: dict[str, Any], args: dict[str, Any], record: dict[str, Any] | None) -> float:
    """The share of the pooled tokens a method without a retention setting keeps before the LLM (DyCoke: its
    frame pruning), at the run's frame count and tokens per frame (1.0 when they are unknown)."""
    record = record or {}
    frames = record.get("max_frames_num") or args.get("max_frames_num")
    per_frame = (record.get("shape") or {}).get("tokens_per_frame")
    if not frames or not per_frame:
        return 1.0
    try:
        known = {item.name for item in spec.settings}
        return spec.retention(spec.make_config({k: v for k, v in config.items() if k in known}), int(frames), int(per_frame))
    except ValueError:
        return 1.0


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


def read_json_object(path: str, what: str) -> dict[str, Any]:
    """A JSON file that must hold an object; a truncated or wrongly shaped one is named in one line."""
    try:
        with open(path) as fh:
            value = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path}: not valid JSON (truncated?): {exc}") from None
    if not isinstance(value, dict):
        kinds = {list: "an array", type(None): "null", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
        raise ValueError(f"{what} {path}: expected a JSON object, got {kinds.get(type(value), type(value).__name__)}")
    return value


def read_results(path: str) -> dict[str, Any]:
    """One lmms-eval results file, checked for the shape the tables read: `results` an object of per-task
    objects, `config` an object."""
    results = read_json_object(path, "results file")
    tasks = results.get("results")
    if not isinstance(tasks, dict) or not all(isinstance(v, dict) for v in tasks.values()):
        raise ValueError(f"results file {path}: not lmms-eval results (`results` must map task names to objects)")
    for key in ("config", "n-samples"):
        if results.get(key) is not None and not isinstance(results[key], dict):
            raise ValueError(f"results file {path}: `{key}` must be an object")
    return results


def collect(log_dirs: str | Sequence[str], paper_table: str = PAPER_AUTO) -> list[Row]:
    """Every configuration with results under the log folder(s), sorted for the tables, with the paper's row
    for each (`paper_table`: "auto" = the table of the same model and frames, a table id, or "none")."""
    dirs = [os.path.abspath(d) for d in ([log_dirs] if isinstance(log_dirs, str) else log_dirs)]
    if not dirs:
        raise ValueError("no LOG_DIR given")
    for log_dir in dirs:
        if not os.path.isdir(log_dir):
            raise ValueError(f"LOG_DIR={log_dir!r} is not a directory")
    # run folders are named relative to the one folder, or to the common parent of several
    root = dirs[0] if len(dirs) == 1 else os.path.commonpath(dirs)
    files = [
        (path, log_dir)
        for log_dir in dirs
        for path in sorted(glob.glob(os.path.join(log_dir, "**", records.RESULTS_GLOB), recursive=True))
    ]
    if not files:
        raise ValueError(f"no lmms-eval results ({records.RESULTS_GLOB}) under {', '.join(dirs)}")
    rows: dict[tuple, Row] = {}
    for path, log_dir in files:
        results = read_results(path)
        config = results.get("config") or {}
        model = str(config.get("model", ""))
        args = parse_model_args(config.get("model_args"))
        record_path = _find_up(os.path.dirname(path), log_dir, records.RUN_RECORD)
        record = None
        if record_path:
            record = read_json_object(record_path, "run record")
        method, retention, details = _identity(model, args, record)
        pretrained = str(args.get("pretrained", "?")).rstrip("/")
        frames = args.get("max_frames_num")
        frames = int(frames) if isinstance(frames, (int, float)) else None
        key = (pretrained, frames, method, round(retention, 6), json.dumps(details, sort_keys=True))
        row = rows.get(key)
        if row is None:
            name = os.path.basename(pretrained) or pretrained
            row = rows[key] = Row(name, frames, method, retention, details, shape=_shape_name(record, pretrained))
            flops = (record or {}).get("paper_flops")
            if flops:
                row.tflops, row.percent = flops["tflops"], flops["percent_of_vanilla"]
            else:
                result = _paper_flops(model, args, method, retention, details)
                if result is not None:
                    row.tflops, row.percent = result.tflops, result.percent_of_vanilla
        run_dir = os.path.dirname(record_path) if record_path else os.path.dirname(path)
        row.runs.add(os.path.relpath(run_dir, root))
        row.provenance[os.path.relpath(run_dir, root)] = provenance_of(record, results, args)
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
            r.details.get("reference_compat") is False,  # the paper's row first, its causal variant after
            json.dumps(r.details, sort_keys=True),
        ),
    )
    _label(ordered)
    if paper_table != PAPER_NONE:
        known = {t for t in paper.RESULT_TABLES}
        if paper_table != PAPER_AUTO and paper_table not in known:
            raise ValueError(f"paper table {paper_table!r}: valid tables are {', '.join(sorted(known))}, auto, none")
        for row in ordered:
            row.paper = paper_row_for(row, None if paper_table == PAPER_AUTO else paper_table)
    return ordered


def _shape_name(record: dict[str, Any] | None, pretrained: str) -> str | None:
    from holitom.shapes import ModelShape

    shape = (record or {}).get("shape")
    if shape:
        fields = {k: shape[k] for k in ModelShape.__dataclass_fields__ if k in shape}
        return match_shape(ModelShape(**fields))
    return guess_shape(pretrained)


def _paper_labels(kind: str) -> tuple[str, ...]:
    """The paper's printed labels of a row kind ("holitom_wo_m" → "HoliTom (w/o M)")."""
    if kind in ("holitom", "holitom_wo_m"):
        return (METHOD_LABELS[kind],)
    try:
        return methods.get(kind).paper_labels
    except ValueError:
        return ()


def paper_row_for(row: Row, table_id: str | None = None) -> dict[str, Any] | None:
    """The paper's row this result row reproduces (see the module docstring), or None."""
    labels = _paper_labels(row.method)
    if table_id is None:
        rows = [r for r in paper.result_rows() if shape_of_paper_model(r["model"]) == row.shape and r["frames"] == row.frames]
    else:
        rows = [r for r in paper.result_rows() if r["table"] == table_id]
    rows = [r for r in rows if r["method"] in labels]
    name = "holitom" if row.method == "holitom_wo_m" else row.method
    by_retention = name == "vanilla" or (name in methods.METHODS and methods.get(name).retention_setting == "retain_ratio")
    if by_retention:
        rows = [r for r in rows if math.isclose(r["retain_ratio"], row.retention)]
    if not rows:
        return None
    found = rows[0]
    return {"table": found["table"], "method": found["method"], "budget": found["budget"], "values": found["values"]}


def provenance_of(record: dict[str, Any] | None, results: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """Where one run's numbers came from: versions, attention, dtype, devices, frames, decoding, settings."""
    if record is None:  # a run without the holitom_llava record (e.g. lmms-eval's stock llava wrappers)
        return {
            "model": (results.get("config") or {}).get("model"),
            "versions": {"lmms_eval": results.get("lmms_eval_version")},
            "torch_dtype": args.get("torch_dtype"),
            "attn_implementation": args.get("attn_implementation"),
            "frames": args.get("max_frames_num"),
            "date": results.get("date"),
        }
    return {
        "model": record.get("model"),
        "versions": record.get("versions") or {},
        "torch_dtype": record.get("torch_dtype"),
        "attn_implementation": record.get("attn_implementation"),
        "devices": record.get("devices"),
        "world_size": record.get("world_size"),
        "frames": record.get("max_frames_num"),
        "video_fps": record.get("video_fps"),
        "decoding": record.get("decoding") or {},
        "method": record.get("method"),
        "settings": record.get("method_config") or record.get("holitom_config") or {},
        "date": results.get("date"),
    }


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
            parts = [f"{DETAIL_NAMES.get(k, k)}={row.details.get(k)}" for k in varying if k != "reference_compat"]
            if "reference_compat" in varying and not row.details.get("reference_compat"):
                # the row as the paper describes it, beside the row as the authors ran it
                parts.append("causal" if row.method == "holitom" else "float32 merges")
            if parts:
                row.label = f"{row.label} ({', '.join(parts)})"


