"""End to end: `bash scripts/eval_onevision.sh --smoke` (tiny checkpoint, synthetic videos, the four smoke tasks
through real lmms-eval on CPU), then `holitom tables` on what it wrote; a restart skips everything; two
processes split the documents (the data-parallel path, on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "eval"))

from holitom_eval.smoke import MVBENCH_FOLDERS, prepare_smoke_data, video_relpaths  # noqa: E402

pytestmark = pytest.mark.slow  # end to end through lmms-eval subprocesses

RUNS = ("vanilla", "holitom_wo_m_rho0.25", "holitom_rho0.25", "holitom_causal_rho0.25")
# smoke_mvbench (2 sub-tasks), smoke_egoschema, smoke_videomme, smoke_longvideobench_val_v
TASKS_PER_RUN = 5


def _script(out: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("GPUS", "RUNS", "MODEL", "TASKS", "SMOKE")}
    full.update({"PYTHON": sys.executable, "OUT": str(out), "FRAMES": "4", "LIMIT": "1"})
    full.update(env)
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "eval_onevision.sh"), "--smoke", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "out"
    proc = _script(out)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, proc.stdout


def _records(run_dir: Path) -> list[dict]:
    lines = []
    for path in sorted(run_dir.glob("holitom_samples_rank*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def test_smoke_data_sits_where_the_real_task_code_looks(tmp_path, monkeypatch):
    from lmms_eval.tasks.mvbench.utils import DATA_LIST

    assert all(DATA_LIST[sub] == folder for sub, folder in MVBENCH_FOLDERS.items())
    hf_home = prepare_smoke_data(tmp_path)
    paths = video_relpaths()
    assert len(paths) == 10 and all(os.path.getsize(os.path.join(hf_home, p)) > 0 for p in paths)
    monkeypatch.setenv("HF_HOME", hf_home)
    from lmms_eval.tasks.longvideobench.utils import longvideobench_doc_to_visual_v

    (video,) = longvideobench_doc_to_visual_v({"video_path": "smoke_lvb_1.mp4"})  # reads HF_HOME at call time
    assert os.path.isfile(video) and video.startswith(hf_home)
    from llava.video import load_video

    frames, info = load_video(video, 4)
    assert frames.shape == (4, 64, 96, 3) and info["total_frames"] >= 16


def test_smoke_sweep_runs_every_configuration(smoke_out):
    out, stdout = smoke_out
    assert "sweep onevision_7b: 4 done, 0 skipped, 0 failed" in stdout
    for run in RUNS:
        run_dir = out / run
        assert (run_dir / "holitom_done.json").is_file()
        (results_path,) = run_dir.glob("lmms_eval/*/*_results.json")
        results = json.loads(results_path.read_text())
        assert set(results["n-samples"]) == {
            "smoke_mvbench_action_sequence",
            "smoke_mvbench_moving_count",
            "smoke_egoschema",
            "smoke_videomme",
            "smoke_longvideobench_val_v",
        }
        assert results["results"]["smoke_egoschema"]["score,none"] in (0.0, 1.0)  # LIMIT=1: one document
        assert len(_records(run_dir)) == TASKS_PER_RUN
    vanilla = _records(out / "vanilla")
    wo_m = _records(out / "holitom_wo_m_rho0.25")
    merged = _records(out / "holitom_rho0.25")
    causal = _records(out / "holitom_causal_rho0.25")
    assert {r["visual_tokens"] for r in vanilla} == {4 * 196 + 1}  # 4 frames × 14×14 + one newline
    for a, b, c in zip(wo_m, merged, causal):
        assert a["visual_tokens"] == b["visual_tokens"] < 4 * 196  # same outer merging with and without K
        assert a["visual_kept"] is None and b["inner_layer"] == 2
        assert b["visual_kept"] == round(b["visual_tokens"] * 0.5)  # r=0.5: keep round(n·(1−r))
        assert (c["visual_tokens"], c["visual_kept"]) == (b["visual_tokens"], b["visual_kept"])  # same counts
    # the sweep writes tables at the end, beside the paper table its config names (table1)
    tables = (out / "tables.md").read_text()
    assert "Paper comparison (table1 of arXiv 2505.21334, as printed)" in tables
    assert "| Vanilla | 100% | " in tables.split("Paper comparison")[1] and "/ 58.3 (" in tables  # MVBench 58.3
    assert "| HoliTom (causal) | 25% |" in tables
    run = json.loads((out / "holitom_rho0.25" / "holitom_run.json").read_text())
    assert run["method_config"]["reference_compat"] is True and run["attn_implementation"] == "sdpa"
    assert run["versions"]["torch"] and run["versions"]["lmms_eval"] and run["devices"][0].startswith("cpu")
    assert set(run["decoding"]) == {
        "smoke_mvbench_action_sequence",
        "smoke_mvbench_moving_count",
        "smoke_egoschema",
        "smoke_videomme",
        "smoke_longvideobench_val_v",
    }
    assert "Provenance:" in tables and "`holitom_rho0.25` (HoliTom)" in tables


def test_tables_cli_on_the_smoke_output(smoke_out, tmp_path):
    out, _ = smoke_out
    proc = subprocess.run(
        [sys.executable, "-m", "holitom", "tables", str(out), "--out", str(tmp_path)],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "### tiny_onevision, 4 frames" in lines
    rows = [line for line in lines if line.startswith("| Vanilla") or line.startswith("| HoliTom")]
    assert [r.split(" | ")[0:2] for r in rows[:4]] == [
        ["| Vanilla", "100%"],
        ["| HoliTom (w/o M)", "25%"],
        ["| HoliTom", "25%"],
        ["| HoliTom (causal)", "25%"],
    ]
    assert "Paper comparison" not in proc.stdout  # a tiny model matches no paper table unless one is named
    # Vanilla relative to itself: 100.0%, or "–" when a random tiny model averages 0.
    assert rows[0].endswith(("| 100.0% |", "| – |"))
    assert (tmp_path / "flops_vs_avg.png").read_bytes()[:4] == b"\x89PNG"
    table = json.loads((tmp_path / "tables.json").read_text())
    assert [row["label"] for row in table] == ["Vanilla", "HoliTom (w/o M)", "HoliTom", "HoliTom (causal)"]
    assert all(row["complete"] and row["measured"]["requests"] == TASKS_PER_RUN for row in table)
    assert table[2]["tflops"] == table[3]["tflops"] < table[1]["tflops"] < table[0]["tflops"]


def test_restart_skips_finished_runs(smoke_out):
    out, _ = smoke_out
    logs = {run: (out / run / "log.txt").stat().st_mtime_ns for run in RUNS}
    proc = _script(out, "--no-tables")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sweep onevision_7b: 0 done, 4 skipped, 0 failed" in proc.stdout
    # nothing was launched: no run started, no log rewritten
    assert "▶" not in proc.stdout and {run: (out / run / "log.txt").stat().st_mtime_ns for run in RUNS} == logs


def test_two_processes_split_the_documents(tmp_path):
    out = tmp_path / "dp"
    proc = _script(out, "--no-tables", GPUS="2", LIMIT="2", RUNS="holitom_rho0.25")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "2 process(es) on CPU" in proc.stdout
    run_dir = out / "holitom_rho0.25"
    ranks = [
        [json.loads(x) for x in (run_dir / f"holitom_samples_rank{r}.jsonl").read_text().splitlines()]
        for r in (0, 1)
    ]
    docs = [{(r["task"], r["doc_id"]) for r in records} for records in ranks]
    assert len(ranks[0]) == len(ranks[1]) == TASKS_PER_RUN and not docs[0] & docs[1]
    assert len(docs[0] | docs[1]) == 2 * TASKS_PER_RUN  # every document once, split over the two ranks
    (results_path,) = run_dir.glob("lmms_eval/*/*_results.json")
    samples = json.loads(results_path.read_text())["n-samples"]
    assert all(v["effective"] == 2 for v in samples.values())


def test_qwen2_5_vl_smoke_sweep_runs_end_to_end(tmp_path):
    """`bash scripts/eval_qwen2_5_vl.sh --smoke`: the tiny Qwen2.5-VL through real lmms-eval on CPU. 4 frames of the
    96×64 smoke videos → 2 temporal patches of 2×3 tokens (the tiny checkpoint's [56², 112²] px bounds: 84×56)."""
    full = {k: v for k, v in os.environ.items() if k not in ("GPUS", "RUNS", "MODEL", "TASKS", "SMOKE")}
    full.update({"PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "FRAMES": "4", "LIMIT": "1"})
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "eval_qwen2_5_vl.sh"), "--smoke", "--no-tables"],
        env=full, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "sweep qwen2_5_vl_7b: 3 done, 0 skipped, 0 failed" in proc.stdout
    vanilla, wo_m, merged = (_records(tmp_path / "out" / run) for run in ("vanilla", "holitom_wo_m_rho0.25", "holitom_rho0.25"))
    assert len(vanilla) == len(wo_m) == len(merged) == TASKS_PER_RUN
    assert {(r["pooled_tokens"], r["visual_tokens"]) for r in vanilla} == {(12, 12)}
    for a, b in zip(wo_m, merged):
        assert a["visual_tokens"] == b["visual_tokens"] <= 2 * 2  # ρ 0.25: at most ceil(6·0.25) = 2 per patch
        assert a["visual_kept"] is None and b["inner_layer"] == 2
        assert b["visual_kept"] == round(b["visual_tokens"] * 0.5)  # r=0.5: keep round(n·(1−r))
    run = json.loads((tmp_path / "out" / "holitom_rho0.25" / "holitom_run.json").read_text())
    assert run["paper_flops"]["schedule"] == [[0, 4], [2, 2]] and run["shape"]["tokens_per_frame"] == 6


def test_qwen3_vl_smoke_sweep_runs_end_to_end(tmp_path):
    """`bash scripts/eval_qwen3_vl.sh --smoke`: the tiny Qwen3-VL through real lmms-eval on CPU. 4 frames of the 96×64
    smoke videos, bounded as a whole to [64², 128²] px (the tiny checkpoint's size): 4·64·96 > 128², β = √1.5 →
    32×64 per frame, 2 temporal patches of 1×2 tokens, each with its timestamp."""
    full = {k: v for k, v in os.environ.items() if k not in ("GPUS", "RUNS", "MODEL", "TASKS", "SMOKE")}
    full.update({"PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "FRAMES": "4", "LIMIT": "1"})
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "eval_qwen3_vl.sh"), "--smoke", "--no-tables"],
        env=full, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "sweep qwen3_vl_8b: 3 done, 0 skipped, 0 failed" in proc.stdout
    vanilla, wo_m, merged = (_records(tmp_path / "out" / run) for run in ("vanilla", "holitom_wo_m_rho0.25", "holitom_rho0.25"))
    assert len(vanilla) == len(wo_m) == len(merged) == TASKS_PER_RUN
    assert {(r["pooled_tokens"], r["visual_tokens"]) for r in vanilla} == {(4, 4)}
    for a, b in zip(wo_m, merged):
        assert a["visual_tokens"] == b["visual_tokens"] <= 2  # ρ 0.25: at most ceil(2·ρ′) = 1 per temporal patch
        assert a["visual_kept"] is None and b["inner_layer"] == 2  # K = 2 = the tiny's deepstack depth
        assert b["visual_kept"] == 1  # r = 0.5 of 1 or 2 tokens: one left
    run = json.loads((tmp_path / "out" / "holitom_rho0.25" / "holitom_run.json").read_text())
    assert run["paper_flops"]["schedule"] == [[0, 2], [2, 1]] and run["shape"]["tokens_per_frame"] == 2
    assert run["paper_flops"]["video"].startswith("4 frames of 64×96 px (the first video) → 2 temporal patches of 1×2")
