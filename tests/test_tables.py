"""`holitom tables`: lmms-eval result folders → paper-layout Markdown / LaTeX and a FLOPs-vs-score plot.

tests/data/eval_smoke holds real output of `bash scripts/eval_onevision.sh --smoke` (8 frames, 2 documents per
task): lmms-eval's results.json files and the holitom_llava records next to them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from holitom_eval.report import to_latex, to_markdown, write_tables
from holitom_eval.tables import collect, scores_of

from holitom.cli import main as cli_main

FIXTURE = Path(__file__).resolve().parent / "data" / "eval_smoke"


def _results(
    path: Path,
    model: str,
    model_args: str,
    results: dict,
    n: dict | None = None,
    date: str = "20250101_000000",
):
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = {task: {"original": k, "effective": k} for task, k in (n or {}).items()}
    path.write_text(
        json.dumps(
            {
                "results": results,
                "n-samples": samples,
                "date": date,
                "config": {"model": model, "model_args": model_args},
            }
        )
    )


def test_smoke_fixture_rows(tmp_path):
    rows = collect(str(FIXTURE))
    assert [(r.label, r.retention) for r in rows] == [
        ("Vanilla", 1.0),
        ("HoliTom (w/o M)", 0.25),
        ("HoliTom", 0.25),
    ]
    vanilla, wo_m, merged = rows
    assert (vanilla.model, vanilla.frames) == ("tiny_onevision", 8)
    # Scores straight from the fixture's results.json, in percent: egoschema `score` and lvb_acc are 0..1.
    assert vanilla.scores == {"mvbench": 0.0, "egoschema": 50.0, "longvideobench_val_v": 0.0, "videomme": 0.0}
    assert merged.scores == {"mvbench": 0.0, "egoschema": 0.0, "longvideobench_val_v": 50.0, "videomme": 0.0}
    assert vanilla.samples == {"mvbench": 4, "egoschema": 2, "longvideobench_val_v": 2, "videomme": 2}
    assert vanilla.avg == merged.avg == 12.5 and all(r.complete for r in rows)
    # FLOPs from holitom_run.json (paper accounting for the tiny model): vanilla is the reference.
    run = json.loads((FIXTURE / "holitom_rho0.25" / "holitom_run.json").read_text())
    assert (
        merged.tflops == run["paper_flops"]["tflops"]
        and merged.percent == run["paper_flops"]["percent_of_vanilla"]
    )
    assert vanilla.percent == 100.0 and merged.tflops < wo_m.tflops < vanilla.tflops
    assert merged.details == {
        "tau": 0.8, "beta": 0.6, "contextual_share": 0.0, "knn": 7, "max_window_size": 1024,
        "merge_layer": 2, "merge_ratio": 0.5, "inner_update": "sequential",
    }  # fmt: skip
    # Measured: means over the per-request records.
    records = [
        json.loads(x)
        for x in (FIXTURE / "holitom_rho0.25" / "holitom_samples_rank0.jsonl").read_text().splitlines()
    ]
    assert merged.measured["requests"] == len(records) == 10
    assert merged.measured["visual_tokens"] == pytest.approx(sum(r["visual_tokens"] for r in records) / 10)
    assert merged.measured["visual_kept"] == pytest.approx(sum(r["visual_kept"] for r in records) / 10)
    assert wo_m.measured["visual_kept"] == wo_m.measured["visual_tokens"]  # no inner reduction
    assert vanilla.measured["visual_tokens"] == 8 * 196 + 1


def test_markdown_and_latex_layout():
    rows = collect(str(FIXTURE))
    md = to_markdown(rows).splitlines()
    header = "| Method | Retention | TFLOPs (FLOPs %) | MVBench | EgoSchema | LongVideoBench | VideoMME | Avg | Avg (% of vanilla) |"
    assert md[0] == "### tiny_onevision, 8 frames" and md[2] == header
    assert md[4] == "| Vanilla | 100% | 0.0015 (100.0%) | 0.0 | 50.0 | 0.0 | 0.0 | 12.5 | 100.0% |"
    assert md[6].startswith("| HoliTom | 25% | 8.8e-05 (6.0%) | 0.0 | 0.0 | 50.0 | 0.0 | 12.5 | 100.0% |")
    tex = to_latex(rows)
    assert "\\begin{tabular}{llccccccc}" in tex and "tiny\\_onevision" in tex
    assert "Vanilla & 100\\% & 0.0015 (100.0\\%) & 0.0 & 50.0 & 0.0 & 0.0 & 12.5 & 100.0\\% \\\\" in tex
    assert tex.count("\\midrule") == 2  # after the header and after the vanilla row


def test_benchmark_scores_and_averages_worked_by_hand(tmp_path):
    # MVBench as a group without its own score: sample-weighted mean of its sub-tasks ((60·200 + 45·100) / 300 = 55).
    # EgoSchema from the full task's `submission` (already percent), LongVideoBench lvb_acc 0..1, VideoMME percent.
    args = "pretrained=lmms-lab/llava-onevision-qwen2-7b-ov,max_frames_num=32"
    _results(
        tmp_path / "vanilla" / "r_results.json",
        "llava_onevision",
        args,
        {
            "mvbench": {" ": " ", "alias": "mvbench"},
            "mvbench_action_sequence": {"mvbench_accuracy,none": 60.0},
            "mvbench_moving_count": {"mvbench_accuracy,none": 45.0},
            "egoschema": {"submission,none": 60.4},
            "longvideobench_val_v": {"lvb_acc,none": 0.564, "submission,none": []},
            "videomme": {"videomme_perception_score,none": 58.6},
        },
        {"mvbench_action_sequence": 200, "mvbench_moving_count": 100, "egoschema": 5031},
    )
    _results(
        tmp_path / "holitom" / "r_results.json",
        "holitom_llava",
        args + ",method=holitom,retain_ratio=0.1,tau=0.65,merge_layer=18",
        {
            "mvbench": {"mvbench_accuracy,none": 57.0},
            "egoschema_subset": {"score,none": 0.62},
            "longvideobench_val_v": {"lvb_acc,none": 0.55},
            "videomme": {"videomme_perception_score,none": 57.8},
        },
    )
    vanilla, holitom = collect(str(tmp_path))
    assert vanilla.scores == pytest.approx(
        {"mvbench": 55.0, "egoschema": 60.4, "longvideobench_val_v": 56.4, "videomme": 58.6}
    )
    assert vanilla.avg == pytest.approx((55.0 + 60.4 + 56.4 + 58.6) / 4)  # 57.6
    assert holitom.scores == pytest.approx(
        {"mvbench": 57.0, "egoschema": 62.0, "longvideobench_val_v": 55.0, "videomme": 57.8}
    )
    # No holitom_run.json here: FLOPs from the model args with the paper's accounting (OV-7B, 32 frames).
    assert (round(vanilla.tflops, 1), vanilla.percent) == (40.8, 100.0)
    assert (round(holitom.tflops, 1), round(holitom.percent, 1)) == (2.8, 6.9)
    assert holitom.label == "HoliTom" and holitom.details["merge_layer"] == 18
    lines = to_markdown([vanilla, holitom]).splitlines()
    assert lines[0] == "### llava-onevision-qwen2-7b-ov, 32 frames"
    assert lines[4] == "| Vanilla | 100% | 40.8 (100.0%) | 55.0 | 60.4 | 56.4 | 58.6 | 57.6 | 100.0% |"
    # Avg 57.95 → 58.0; relative to vanilla 57.95 / 57.6 = 100.6%.
    assert lines[5] == "| HoliTom | 10% | 2.8 (6.9%) | 57.0 | 62.0 | 55.0 | 57.8 | 58.0 | 100.6% |"


def test_rows_that_read_the_same_get_their_settings_and_newest_results_win(tmp_path):
    base = "pretrained=/m/tiny,max_frames_num=8,method=holitom,retain_ratio=0.1,merge_layer=none"
    _results(
        tmp_path / "a" / "x_results.json",
        "holitom_llava",
        base + ",tau=0.65",
        {"videomme": {"videomme_perception_score,none": 40.0}},
        date="20250101_000000",
    )
    _results(
        tmp_path / "a2" / "x_results.json",
        "holitom_llava",
        base + ",tau=0.65",
        {"videomme": {"videomme_perception_score,none": 44.0}},
        date="20250202_000000",
    )
    _results(
        tmp_path / "b" / "x_results.json",
        "holitom_llava",
        base + ",tau=0.9",
        {"videomme": {"videomme_perception_score,none": 41.0}, "mvbench": {"mvbench_accuracy,none": 30.0}},
    )
    rows = collect(str(tmp_path))
    assert [r.label for r in rows] == ["HoliTom (w/o M) (τ=0.65)", "HoliTom (w/o M) (τ=0.9)"]
    assert rows[0].scores == {"videomme": 44.0} and rows[0].runs == {"a", "a2"}
    text = to_markdown(rows)
    assert "| 44.0 | 44.0* | – |" in text and "\\* average over the benchmarks present only." in text
    assert "HoliTom (w/o M) ($\\tau$=0.65)" in to_latex(rows)


def test_scores_of_ignores_unrelated_tasks_and_non_numbers():
    results = {
        "results": {
            "mmmu_val": {"mmmu_acc,none": 0.5},
            "smoke_egoschema": {"submission,none": [], "score,none": 1.0},
        }
    }
    assert scores_of(results) == {"egoschema": (100.0, 0)}


def test_cli_writes_files_and_reports_a_folder_without_results(tmp_path, capsys):
    log_dir = tmp_path / "logs"
    shutil.copytree(FIXTURE, log_dir)
    assert cli_main(["tables", str(log_dir)]) == 0
    out = capsys.readouterr().out
    assert "| Vanilla | 100% |" in out and "wrote " in out
    for name in ("tables.md", "tables.tex", "tables.json"):
        assert (log_dir / name).is_file()
    assert (log_dir / "flops_vs_avg.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        cli_main(["tables", str(log_dir), "--format", "latex", "--no-plot", "--out", str(tmp_path / "t")])
        == 0
    )
    assert capsys.readouterr().out.startswith("% tiny_onevision, 8 frames\n\\begin{tabular}")
    assert not (tmp_path / "t" / "flops_vs_avg.png").exists()
    (tmp_path / "empty").mkdir()
    assert cli_main(["tables", str(tmp_path / "empty")]) == 2
    assert "no lmms-eval results (*_results.json) under" in capsys.readouterr().err


def test_write_tables_returns_what_it_wrote(tmp_path):
    written = write_tables(str(FIXTURE), str(tmp_path))
    assert [Path(p).name for p in written] == ["tables.md", "tables.tex", "tables.json", "flops_vs_avg.png"]
    rows = json.loads((tmp_path / "tables.json").read_text())
    assert [r["method"] for r in rows] == ["vanilla", "holitom_wo_m", "holitom"]


# ---------------------------------------------------------------------------------------------- the paper


def test_paper_rows_match_by_label_retention_and_model():
    from holitom_eval.report import paper_cells
    from holitom_eval.tables import Row, paper_row_for

    ov = dict(model="llava-onevision-qwen2-7b-ov", frames=32, shape="ov-7b")
    holitom_row = Row(method="holitom", retention=0.15, details={"merge_layer": 18}, **ov)
    assert paper_row_for(holitom_row)["values"]["MVBench"] == 58.1  # Table 1, HoliTom at 15 %
    wo_m = Row(method="holitom_wo_m", retention=0.10, details={}, **ov)
    assert paper_row_for(wo_m)["values"]["VideoMME"] == 56.9
    fastv = Row(method="fastv", retention=0.2, details={"fastv_layer": 2}, **ov)  # FastV's row: its one row
    assert paper_row_for(fastv)["values"]["TFLOPs"] == 9.3
    assert paper_row_for(Row(method="holitom", retention=0.3, details={}, **ov)) is None  # no such budget
    video = Row(model="LLaVA-Video-7B-Qwen2", frames=64, shape="vid-7b", method="vanilla", retention=1.0, details={})
    assert paper_row_for(video)["values"]["Avg_score"] == 60.2
    tiny = Row(model="tiny", frames=8, shape=None, method="vanilla", retention=1.0, details={})
    assert paper_row_for(tiny) is None and paper_row_for(tiny, "table1")["values"]["MVBench"] == 58.3

    holitom_row.label = "HoliTom"
    holitom_row.paper = paper_row_for(holitom_row)
    holitom_row.scores = {"mvbench": 58.6, "egoschema": 59.4, "longvideobench_val_v": 56.2, "videomme": 58.2}
    holitom_row.tflops = 4.3
    (cells,) = paper_cells([holitom_row])
    paper_values = holitom_row.paper["values"]
    assert cells[2] == f"4.3 / {paper_values['TFLOPs']}"
    expected = [58.6 - paper_values["MVBench"], 59.4 - paper_values["EgoSchema"]]
    assert cells[3] == f"58.6 / {paper_values['MVBench']} ({expected[0]:+.1f})" + (" ⚠" if abs(expected[0]) > 1 else "")
    assert cells[4].endswith(" ⚠") == (abs(expected[1]) > 1.0)


# ---------------------------------------------------------------------------------------------- the plot


def _ov_rows() -> list:
    """Table 1-like rows: four baselines at 8.7 TFLOPs (25 %), HoliTom in the authors' mode and causal."""
    from holitom_eval.tables import Row, _label, paper_row_for

    rows = []
    for method, retention, details, tflops, avg in [
        ("vanilla", 1.0, {}, 40.8, 58.1),
        ("fastv", 0.2, {"fastv_layer": 2}, 9.3, 56.0),
        ("dycoke", 0.25, {}, 8.7, 56.4),
        ("visionzip", 0.25, {}, 8.7, 56.6),
        ("prunevid", 0.25, {}, 8.7, 56.9),
        ("fastvid", 0.25, {}, 8.7, 57.2),
        ("holitom", 0.25, {"reference_compat": True}, 7.1, 57.7),
        ("holitom", 0.10, {"reference_compat": True}, 2.8, 57.3),
        ("holitom", 0.10, {"reference_compat": False}, 2.8, 57.1),
    ]:
        row = Row("llava-onevision-qwen2-7b-ov", 32, method, retention, details, tflops=tflops, shape="ov-7b")
        row.scores = {b: avg for b in ("mvbench", "egoschema", "longvideobench_val_v", "videomme")}
        rows.append(row)
    _label(rows)
    for row in rows:
        row.paper = paper_row_for(row)
    return rows


def _plotted(rows, tmp_path, monkeypatch):
    """plot() on the rows, returning its figure (drawn) instead of closing it."""
    import matplotlib.pyplot as plt
    from holitom_eval.report import plot

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    assert plot(rows, str(tmp_path / "p.png")) == str(tmp_path / "p.png")
    (fig,) = figures
    fig.canvas.draw()
    return fig, fig.axes[0]


def test_plot_legend_markers_and_labels(tmp_path, monkeypatch):
    fig, ax = _plotted(_ov_rows(), tmp_path, monkeypatch)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "HoliTom (causal)" in legend and "HoliTom" in legend  # the causal row is its own series
    assert "paper: FastVID (mean of 3, no EgoSchema)" in legend  # the paper prints no EgoSchema for FastVID
    assert {"paper: DyCoke", "paper: VisionZip", "paper: PruneVid", "paper: HoliTom"} <= set(legend)
    ours = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("paper")}
    # the four 25 % baselines share x = 8.7: each its own marker, drawn at a different horizontal place
    four = [ours[name] for name in ("DyCoke", "VisionZip", "PruneVid", "FastVID")]
    assert len({line.get_marker() for line in four}) == 4
    shown = [line.get_transform().transform((8.7, 56.5))[0] for line in four]
    assert len({round(x, 3) for x in shown}) == 4
    # retention labels: none overlaps another, "25%" is not written twice on top of itself
    texts = [a for a in ax.texts if a.get_text().endswith("%")]
    boxes = [a.get_window_extent() for a in texts]
    assert all(not a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    # once per FLOPs value: HoliTom's 7.1 and the four baselines' 8.7 (not once per baseline)
    assert sorted(a.get_text() for a in texts) == ["10%", "20%", "25%", "25%"]
    assert ax.get_title() == "llava-onevision-qwen2-7b-ov, 32 frames"


def test_plot_of_a_smoke_run_says_so(tmp_path, monkeypatch):
    fig, ax = _plotted(collect(str(FIXTURE)), tmp_path, monkeypatch)
    assert ax.get_title() == "tiny_onevision, 8 frames\n(smoke run on a tiny model: pipeline check, not the paper's numbers)"
    boxes = [a.get_window_extent() for a in ax.texts]
    assert len(boxes) == 1  # both 25 % points sit side by side: one label
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["Vanilla", "HoliTom (w/o M)", "HoliTom"]
