"""`holitom tables LOG_DIR`: the rows of `holitom_eval.tables` in the paper's layout — Markdown, LaTeX, JSON and a
FLOPs-vs-average-score plot — with the paper's numbers beside ours and where every number came from.

Per model and frame count: the results table (prefill TFLOPs with the percentage of vanilla, MVBench,
EgoSchema, LongVideoBench, VideoMME, their average, and that average as a percentage of the vanilla row's),
then the paper comparison (ours / paper (Δ) per cell, ⚠ where |Δ| > 1.0 point), the measured token counts
of holitom_llava runs, and the provenance of every run (versions, attention, dtype, devices, frames,
decoding, settings). The plot shows the paper's points (hollow) beside ours.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from holitom import paper
from holitom_eval.tables import BENCHMARKS, METHOD_LABELS, METHOD_ORDER, PAPER_AUTO, Row, collect

LATEX_DETAIL = {"τ": r"$\tau$", "β": r"$\beta$", "Δ": r"$\Delta$", "⚠": r"$\dagger$"}
DELTA_MARK = 1.0  # points: a paper comparison cell further off than this is marked ⚠


def _fmt_flops_value(tflops: float | None) -> str:
    if tflops is None:
        return "–"
    return f"{tflops:.1f}" if tflops >= 0.1 else f"{tflops:.2g}"


def _fmt_tflops(row: Row) -> str:
    value = _fmt_flops_value(row.tflops)
    return value if row.percent is None or row.tflops is None else f"{value} ({row.percent:.1f}%)"


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
PAPER_HEADER = ["Method", "Retention", "TFLOPs ours / paper", *(title for _, title, _ in BENCHMARKS), "Avg"]


def _vs(ours: float | None, theirs: float | None) -> str:
    """"ours / paper (Δ)", ⚠ when |Δ| > DELTA_MARK."""
    if ours is None or theirs is None:
        return f"{_fmt(ours)} / {_fmt(theirs)}"
    delta = ours - theirs
    mark = " ⚠" if abs(delta) > DELTA_MARK else ""
    return f"{ours:.1f} / {theirs:.1f} ({delta:+.1f}){mark}"


def paper_cells(rows: list[Row]) -> list[list[str]]:
    """Body cells of the paper comparison: the rows that have a paper row."""
    body = []
    for row in rows:
        if row.paper is None:
            continue
        values = row.paper["values"]
        tflops = f"{_fmt_flops_value(row.tflops)} / {_fmt(values.get('TFLOPs'))}"
        scores = [_vs(row.scores.get(bench), values.get(title)) for bench, title, _ in BENCHMARKS]
        body.append([row.label, _retention(row), tflops, *scores, _vs(row.avg, values.get("Avg_score"))])
    return body


def _provenance_fields(p: dict[str, Any]) -> dict[str, str]:
    """One run's provenance as short texts, by field."""
    v = p.get("versions") or {}
    names = (("holitom", "holitom"), ("python", "python"), ("torch", "torch"), ("transformers", "transformers"))
    versions = ", ".join(f"{name} {v[key]}" for name, key in names if v.get(key))
    if v.get("holitom_git"):
        versions = versions.replace(f"holitom {v.get('holitom')}", f"holitom {v.get('holitom')} (git {v['holitom_git']})")
    if v.get("lmms_eval"):
        versions += f", lmms-eval {v['lmms_eval']}"
    devices = p.get("devices") or []
    frames = f"{p.get('frames')} frames" + (f" at {p['video_fps']} fps" if p.get("video_fps") else " (uniform)")
    decoding = "; ".join(
        f"{task}: " + ", ".join(f"{k}={val}" for k, val in sorted(d.items()) if k != "until")
        for task, d in sorted((p.get("decoding") or {}).items())
    )
    fields = {
        "versions": versions or "versions unknown",
        "setup": ", ".join(str(x) for x in (p.get("attn_implementation"), p.get("torch_dtype")) if x),
        "devices": (f"{len(devices)} device(s): {'; '.join(devices)}" if devices else "")
        + (f", {p['world_size']} process(es)" if p.get("world_size") else ""),
        "frames": frames,
        "decoding": f"decoding {decoding}" if decoding else "",
        "settings": ", ".join(f"{k}={val}" for k, val in (p.get("settings") or {}).items()),
    }
    return {k: text for k, text in fields.items() if text}


def provenance_lines(rows: list[Row]) -> list[str]:
    """Where the numbers came from: what every run shares once, then each run's own settings and differences."""
    runs = [(run, row.label, _provenance_fields(row.provenance[run])) for row in rows for run in sorted(row.provenance)]
    if not runs:
        return []
    keys = list(dict.fromkeys(k for _, _, fields in runs for k in fields))
    shared = [k for k in keys if k != "settings" and len({fields.get(k) for _, _, fields in runs}) == 1]
    lines = ["- all runs: " + "; ".join(runs[0][2][k] for k in shared if k in runs[0][2])] if shared else []
    for run, label, fields in runs:
        own = "; ".join(fields[k] for k in keys if k in fields and k not in shared)
        lines.append(f"- `{run}` ({label})" + (f": {own}" if own else ""))
    return lines


def _groups(rows: list[Row]) -> list[tuple[str, list[Row]]]:
    out: dict[str, list[Row]] = {}
    for row in rows:
        title = row.model + (f", {row.frames} frames" if row.frames else "")
        out.setdefault(title, []).append(row)
    return list(out.items())


def _paper_note(group: list[Row]) -> str:
    tables = sorted({r.paper["table"] for r in group if r.paper})
    return (
        f"Paper comparison ({', '.join(tables)} of arXiv 2505.21334, as printed): ours / paper (Δ = ours − paper); "
        f"⚠ marks |Δ| > {DELTA_MARK:.1f} point."
    )


def to_markdown(rows: list[Row]) -> str:
    parts = []
    for title, group in _groups(rows):
        lines = [f"### {title}", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(cells) + " |" for cells in table_cells(group)]
        if any(not r.complete for r in group if r.avg is not None):
            lines += ["", "\\* average over the benchmarks present only."]
        compared = paper_cells(group)
        if compared:
            lines += ["", _paper_note(group), "", "| " + " | ".join(PAPER_HEADER) + " |", "|" + "---|" * len(PAPER_HEADER)]
            lines += ["| " + " | ".join(cells) + " |" for cells in compared]
        measured = [r for r in group if r.measured]
        if measured:
            lines += [
                "",
                "Measured per request (holitom_llava records): visual tokens entering the LLM, left after "
                "reduction inside it, and the prefill TFLOPs those counts give.",
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
        provenance = provenance_lines(group)
        if provenance:
            lines += ["", "Provenance:", "", *provenance]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _latex_escape(text: str) -> str:
    for symbol, latex in LATEX_DETAIL.items():
        text = text.replace(symbol, latex)
    for char in ("&", "%", "#", "_"):
        text = text.replace(char, "\\" + char)
    return text


def _latex_table(title: str, header: list[str], group: list[Row], body: list[list[str]]) -> list[str]:
    lines = [
        f"% {title}",
        "\\begin{tabular}{ll" + "c" * (len(header) - 2) + "}",
        "\\toprule",
        f"\\multicolumn{{{len(header)}}}{{l}}{{\\textit{{{_latex_escape(title)}}}}} \\\\",
        " & ".join(_latex_escape(h) for h in header) + " \\\\",
        "\\midrule",
    ]
    previous = None
    for row, cells in zip(group, body):
        if previous is not None and previous.method == "vanilla" and row.method != "vanilla":
            lines.append("\\midrule")
        previous = row
        lines.append(" & ".join(_latex_escape(c) for c in cells) + " \\\\")
    return lines + ["\\bottomrule", "\\end{tabular}"]


def to_latex(rows: list[Row]) -> str:
    parts = []
    for title, group in _groups(rows):
        lines = _latex_table(title, HEADER, group, table_cells(group))
        compared = [r for r in group if r.paper]
        if compared:
            lines += ["", f"% {_paper_note(group)}"]
            lines += _latex_table(f"{title}: ours / paper", PAPER_HEADER, compared, paper_cells(compared))
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


PLOT_MARKERS = "osD^v<>pPXh*"


def _plot_title(points: list[Row]) -> str:
    """The models and frame counts plotted; a model that is not a published shape (the tiny smoke checkpoints)
    is said to be one, so a smoke plot is never mistaken for the paper's numbers."""
    title = "; ".join(dict.fromkeys(name for name, _ in _groups(points)))
    if any(r.shape is None for r in points):
        title += "\n(smoke run on a tiny model: pipeline check, not the paper's numbers)"
    return title


def plot(rows: list[Row], path: str) -> str | None:
    """FLOPs (x) against the average score (y): one series per row label (so "HoliTom (causal)" is its own
    legend entry), each with its own colour and marker, and the paper's points of the same methods (hollow
    markers, dashed lines; a paper row without an average, e.g. FastVID without EgoSchema, at the mean of the
    benchmarks it prints, said in its legend entry). Series that share a FLOPs value are set a few points
    apart so equal-cost methods (the 25 % baselines) stay visible; each retention label is written once per
    FLOPs value. None if there is nothing to plot."""
    points = [r for r in rows if r.tflops is not None and r.avg is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import transforms

    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    groups = _groups(points)
    several = len(groups) > 1
    series: list[tuple[str, str, list[Row]]] = []  # (legend name, row kind, rows)
    for title, group in groups:
        by_label: dict[str, list[Row]] = {}
        for r in group:
            by_label.setdefault(r.label, []).append(r)
        for label, items in sorted(by_label.items(), key=lambda kv: (METHOD_ORDER.get(kv[1][0].method, 9), kv[0])):
            series.append((label + (f" — {title}" if several else ""), items[0].method, sorted(items, key=lambda r: r.tflops)))
    # dodge: series sharing a FLOPs value are offset horizontally by 3 points each, centred
    at_x: dict[float, list[int]] = {}
    for i, (_, _, items) in enumerate(series):
        for x in {round(r.tflops, 6) for r in items}:
            at_x.setdefault(x, []).append(i)
    shift = [0.0] * len(series)
    for members in at_x.values():
        if len(members) > 1:
            for k, i in enumerate(members):
                shift[i] = shift[i] or (k - (len(members) - 1) / 2) * 3.0
    colors: dict[str, Any] = {}
    style: dict[str, str] = {}
    xs: list[float] = []
    labelled: dict[tuple[float, str], tuple[float, float]] = {}
    for i, (name, kind, items) in enumerate(series):
        marker = style.setdefault(name.split(" — ")[0], PLOT_MARKERS[len(style) % len(PLOT_MARKERS)])
        offset = transforms.offset_copy(ax.transData, fig=fig, x=shift[i], y=0, units="points")
        (line,) = ax.plot(
            [r.tflops for r in items],
            [r.avg for r in items],
            marker=marker,
            linestyle="-" if len(items) > 1 else "none",
            label=name,
            transform=offset,
        )
        colors.setdefault(kind, line.get_color())
        xs += [r.tflops for r in items]
        for r in items:
            if r.method == "vanilla":
                continue
            key = (round(r.tflops, 6), _retention(r))
            top = labelled.get(key)
            labelled[key] = (r.tflops, max(r.avg, top[1]) if top else r.avg)
    for title, group in groups:
        for kind, (cells, note) in _paper_points(group).items():
            cells.sort()
            name = f"paper: {METHOD_LABELS.get(kind, kind)}{note}" + (f" — {title}" if several else "")
            ax.plot(
                [x for x, _ in cells],
                [y for _, y in cells],
                marker=style.get(METHOD_LABELS.get(kind, kind), "o"),
                markerfacecolor="none",
                color=colors.get(kind),
                linestyle="--" if len(cells) > 1 else "none",
                label=name,
            )
            xs += [x for x, _ in cells]
    # lines drawn with an offset transform do not enter the autoscale: give it every plotted value
    ax.update_datalim([(r.tflops, r.avg) for _, _, items in series for r in items])
    ax.autoscale_view()
    ax.set_xlabel("prefill TFLOPs (paper accounting)")
    ax.set_ylabel("average score (%)")
    ax.set_title(_plot_title(points), fontsize=9)
    if all(x > 0 for x in xs) and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    _retention_labels(ax, labelled)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def _retention_labels(ax: Any, labelled: dict[tuple[float, str], tuple[float, float]]) -> None:
    """Write each retention label above its point, left to right: a label with the same text close to one
    already written is left out (it would read twice), any other label that would overlap one is raised."""
    width, height = 26.0, 10.0  # points: about "100%" at fontsize 7
    scale = ax.figure.dpi / 72.0
    placed: list[tuple[float, float, str]] = []  # display x, y (points) and text
    for (_, text), (x, y) in sorted(labelled.items(), key=lambda kv: kv[1]):
        px, py = (v / scale for v in ax.transData.transform((x, y)))
        py += 7.0
        if any(t == text and abs(px - qx) < width and abs(py - qy) < 2 * height for qx, qy, t in placed):
            continue
        while any(abs(px - qx) < width and abs(py - qy) < height for qx, qy, _ in placed):
            py += height
        placed.append((px, py, text))
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, py - (ax.transData.transform((x, y))[1] / scale)),
                    fontsize=7, ha="center")


def _paper_points(group: list[Row]) -> dict[str, tuple[list[tuple[float, float]], str]]:
    """Per row kind present in the group: the paper's (TFLOPs, average score) of that method in its table,
    and a legend note. A paper row without an average (a benchmark it does not print) is placed at the mean
    of the benchmarks it does print; the note says which are missing."""
    tables = {r.paper["table"] for r in group if r.paper}
    labels = {r.paper["method"]: r.method for r in group if r.paper}
    out: dict[str, tuple[list[tuple[float, float]], str]] = {}
    for cell in paper.result_rows():
        values = cell["values"]
        if cell["table"] not in tables or cell["method"] not in labels or values.get("TFLOPs") is None:
            continue
        avg, note = values.get("Avg_score"), ""
        if avg is None:
            printed = [values[title] for _, title, _ in BENCHMARKS if values.get(title) is not None]
            if not printed:
                continue
            avg = sum(printed) / len(printed)
            missing = [title for _, title, _ in BENCHMARKS if values.get(title) is None]
            note = f" (mean of {len(printed)}, no {', '.join(missing)})"
        cells, seen = out.setdefault(labels[cell["method"]], ([], note))
        cells.append((values["TFLOPs"], avg))
        if note and not seen:
            out[labels[cell["method"]]] = (cells, note)
    return out


def rows_as_dicts(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        out.append(
            {
                "model": r.model,
                "frames": r.frames,
                "shape": r.shape,
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
                "paper": r.paper,
                "provenance": r.provenance,
            }
        )
    return out


def write_tables(log_dir: str, out_dir: str | None = None, plot_png: bool = True, paper_table: str = PAPER_AUTO) -> list[str]:
    """Collect log_dir and write tables.md, tables.tex, tables.json (and flops_vs_avg.png) to out_dir
    (default log_dir); returns the paths written."""
    return _write(collect(log_dir, paper_table), out_dir or log_dir, plot_png)


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
        "log_dir", nargs="+", metavar="LOG_DIR",
        help="folder(s) with lmms-eval results (searched recursively), e.g. a sweep's OUT; several are put in one table",
    )
    parser.add_argument(
        "--out", default=None, help="folder to write tables.md/.tex/.json and the plot into (default: the first LOG_DIR)"
    )
    parser.add_argument("--format", choices=("markdown", "latex"), default="markdown", help="what to print")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    parser.add_argument(
        "--paper",
        default=PAPER_AUTO,
        metavar="TABLE",
        help=f"the paper table to compare with: auto (the table of the same model and frames; default), none, or "
        f"one of {', '.join(paper.RESULT_TABLES)}",
    )
    return parser


def run_tables(args: argparse.Namespace) -> int:
    """Print the table and write the files; a LOG_DIR without results raises ValueError."""
    out = args.out or args.log_dir[0]
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out!r} is a file; give a folder to write tables.md/.tex/.json into")
    rows = collect(args.log_dir, args.paper)
    written = _write(rows, out, plot_png=not args.no_plot)
    print(to_latex(rows) if args.format == "latex" else to_markdown(rows), end="")
    print("\nwrote " + ", ".join(written))
    return 0
