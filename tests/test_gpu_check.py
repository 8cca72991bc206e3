"""The GPU check (`scripts/gpu_check.sh`, `holitom.tools.gpu_check`) in its dry mode, end to end, so it cannot rot before
it meets a GPU: the shell script on tiny stand-ins on the CPU, its JSON and its table; the time budget; a CUDA run
without CUDA; the method rows against the paper's configs; and nothing on its path imports what the bare GPU
machine lacks (PyAV, decord, lmms-eval, matplotlib)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from holitom.counts import drop_keep_count, merge_keep_count
from holitom.methods import get
from holitom.tools.gpu_measure import paper_specs

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
ABSENT_ON_THE_GPU_MACHINE = ("av", "decord", "lmms_eval", "matplotlib")
# Run at interpreter start-up in the check's process: at exit it writes which of those were imported.
SITECUSTOMIZE = f"""
import atexit, json, os, sys
def _dump():
    with open(os.environ["GPU_CHECK_IMPORTED"], "w") as fh:
        json.dump([m for m in {ABSENT_ON_THE_GPU_MACHINE!r} if m in sys.modules], fh)
atexit.register(_dump)
"""


def _run(tmp: Path, *args: str, timeout: int = 120) -> tuple[subprocess.CompletedProcess, Path]:
    site = tmp / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    imported = tmp / "imported.json"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONPATH": str(site),  # the script puts the checkout in front of it
        "GPU_CHECK_IMPORTED": str(imported),
    }
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(tmp / "out"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    return proc, imported


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    proc, imported = _run(tmp, "--device", "cpu", "--tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp / "out"
    report = json.loads((out / "gpu_check.json").read_text())
    return {"proc": proc, "report": report, "table": (out / "gpu_check.md").read_text(), "imported": imported}


def _labels(rows):
    return [row["label"] for row in rows]


SPEC_LABELS = [
    "vanilla",
    "holitom ρ=0.10 K=2 r=0.5",
    "holitom w/o M ρ=0.10",
    "visionzip ρ=0.10",
    "fastv K=2 R=0.2",
    "pdrop layers=1/2/3 lambda=0.5",
    "dycoke K=1.0",
    "prunevid ρ=0.10",
    "fastvid ρ=0.10",
]


def test_dry_mode_prints_the_table_last_and_imports_nothing_the_gpu_machine_lacks(dry):
    stdout = dry["proc"].stdout
    assert stdout.rstrip().endswith(dry["table"].rstrip())  # the table is the last thing printed
    assert dry["table"].startswith("## HoliTom GPU check (DRY MODE")
    for part in ("correctness (2 frames", "host syncs per 4-frame prefill", "ov-7b, 4 frames", "ov-0.5b, 4 frames",
                 "vid-7b, 4 frames", "goals:", "speed does not depend on weight values"):  # fmt: skip
        assert part in dry["table"], part
    for label in SPEC_LABELS:
        assert f"| {label} |" in dry["table"], label
    assert json.loads(dry["imported"].read_text()) == []


def test_dry_mode_environment_and_no_errors(dry):
    report = dry["report"]
    env = report["environment"]
    assert env["device"] == "cpu" and env["attn"] == "sdpa" and env["torch"] == torch.__version__
    assert env["versions"]["transformers"] and "gpu" not in env
    assert report["tiny"] and report["errors"] == [] and report["not_run"] == {}
    assert report["settings"]["repeats"] == 2 and report["settings"]["lower_precision"] == ["bfloat16"]
    assert 0 < report["elapsed_s"] < report["budget_s"] == 420


def test_dry_mode_correctness_rows_both_hosts_and_hand_counts(dry):
    corr = dry["report"]["correctness"]
    rows = corr["rows"]
    assert [(r["label"], r["host"]) for r in rows] == [
        (label, host) for label in SPEC_LABELS for host in ("llava", "hf")
    ]
    assert corr["ok"] and all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]
    by = {(r["label"], r["host"]): r for r in rows}
    for label in SPEC_LABELS:  # both host layouts put the same tokens into the LM
        assert by[label, "llava"]["counts_device"] == by[label, "hf"]["counts_device"], label
    frames, prompt = corr["frames"], 38
    n = frames * 196 + 1  # pooled 14×14 per frame + one newline
    assert by["vanilla", "llava"]["counts_device"] == [frames * 196, n, n, n + prompt]
    kept = frames * math.ceil(196 * 0.10) + 1
    assert by["visionzip ρ=0.10", "llava"]["counts_device"][1:3] == [kept, kept]
    assert by["fastv K=2 R=0.2", "llava"]["counts_device"][1:3] == [n, drop_keep_count(n, 0.2)]
    merged = by["holitom ρ=0.10 K=2 r=0.5", "llava"]["counts_device"]
    assert merged[2] == merge_keep_count(merged[1], 0.5)
    for row in rows:
        assert len(row["greedy_device"]) <= corr["decode_tokens"] and row["max_abs_dlogits_fp32"] == 0.0
        assert 0 < row["bfloat16"]["max_abs_dlogits"] < 1 and "float16" not in row  # CPU: bf16 only


def test_dry_mode_syncs(dry):
    syncs = {r["label"]: r for r in dry["report"]["syncs"]["rows"]}
    assert list(syncs) == SPEC_LABELS
    assert all(r["cuda"] is None for r in syncs.values())  # the CUDA runtime's count only on CUDA
    vanilla = syncs["vanilla"]["counted"]
    assert syncs["fastv K=2 R=0.2"]["counted"] == syncs["pdrop layers=1/2/3 lambda=0.5"]["counted"] == vanilla
    assert (
        syncs["holitom ρ=0.10 K=2 r=0.5"]["counted"] > vanilla
        and syncs["holitom ρ=0.10 K=2 r=0.5"]["by_call"]["cpu"] == 1
    )


def test_dry_mode_latency_rows_ratios_and_goals(dry):
    report = dry["report"]
    models = {entry["name"]: entry for entry in report["latency"]}
    assert list(models) == ["ov-7b", "ov-0.5b", "vid-7b"]
    assert _labels(models["ov-7b"]["results"]) == SPEC_LABELS
    assert _labels(models["ov-0.5b"]["results"]) == [
        "vanilla",
        "holitom ρ=0.10 K=2 r=0.5",
        "holitom ρ=0.25 K=2 r=0.5",
    ]
    assert _labels(models["vid-7b"]["results"]) == [
        "vanilla",
        "holitom ρ=0.15 K=2 r=0.5",
    ]  # the paper's LLaVA-Video ρ
    assert models["vid-7b"]["shape"] == "tiny-video" and models["ov-7b"]["shape"] == "tiny"
    for entry in models.values():
        assert entry["skipped"] == [] and entry["frames"] == 4
        vanilla = entry["results"][0]
        tokens = 4 * (182 if entry["name"] == "vid-7b" else 196) + (0 if entry["name"] == "vid-7b" else 1)
        assert vanilla["tokens"]["llm_input"] == tokens  # grid: 13 rows of 13 + a newline per frame
        for res in entry["results"]:
            t = res["timings_ms"]
            assert t["ttft_ms"] == pytest.approx(t["vision_ms"] + t["compression_ms"] + t["prefill_ms"])
            assert res["speedup"]["ttft"] == pytest.approx(vanilla["timings_ms"]["ttft_ms"] / t["ttft_ms"])
            assert res["syncs"]["counted"] > 0 and res["peak_memory_mib"] is None
    targets = models["ov-7b"]["targets"]
    assert targets["label"] == "holitom ρ=0.10 K=2 r=0.5" and targets["paper_setting"] is False
    goals = report["goals"]
    assert [g["value"] for g in goals[:3]] == [
        targets["ttft_speedup"],
        targets["decode_speedup"],
        targets["compression_overhead_ms"],
    ]
    assert goals[0]["met"] == (targets["ttft_speedup"] >= 2.5) and not any(g["real_shape"] for g in goals)
    small = [r["speedup"]["ttft"] for r in models["ov-0.5b"]["results"] if r["method"] == "holitom"]
    assert goals[3]["value"] == min(small)


def test_the_time_budget_stops_cleanly_and_keeps_the_report(tmp_path):
    proc, imported = _run(tmp_path, "--device", "cpu", "--tiny", "--budget-s", "1.5", "--skip", "correctness")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["not_run"]["correctness"] == "--skip"
    # Where the 1.5 s run out depends on the machine's load (imports alone can take it on a busy CI machine):
    # the syncs section either finished, was stopped by the alarm, or never started; the latency sections
    # (several seconds each) never finish.
    stopped = {"stopped: the time budget ran out during it", "time budget"}
    assert report["not_run"].get("syncs") in stopped or report["syncs"]["rows"]
    assert {report["not_run"].get(name) for name in ("ov-7b", "ov-0.5b", "vid-7b")} <= stopped
    assert report["errors"] == [] and all(not entry["results"] for entry in report["latency"])
    assert proc.stdout.rstrip().endswith((tmp_path / "out" / "gpu_check.md").read_text().rstrip())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_without_cuda_is_one_clear_line_and_a_failure(tmp_path):
    proc, _ = _run(tmp_path, "--device", "cuda")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "CUDA is not available here" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_7b_rows_are_the_papers_configs():
    """The latency rows at OV-7B, ρ = 0.10 come from the registry's paper settings; they must be what the paper
    runs use (configs/onevision_7b.yaml, configs/baselines_onevision_7b.yaml)."""
    runs = []
    for name in ("onevision_7b.yaml", "baselines_onevision_7b.yaml"):
        runs += yaml.safe_load((ROOT / "configs" / name).read_text())["runs"]
    specs = paper_specs("ov-7b", 0.10, 28, "one_token", extra={"fastvid": {"fastvid_siglip": "HEAD"}})
    assert [s.label for s in specs[:2]] == ["vanilla", "holitom ρ=0.10 K=18 r=0.5"]
    for spec in specs[1:]:
        method = get(spec.method)
        matching = []
        for run in runs:
            if run.get("method") != spec.method:
                continue
            given = {k: v for k, v in run.items() if k not in ("name", "method")}
            if spec.method == "fastvid":
                given.setdefault("fastvid_siglip", "HEAD")
            config = method.config_dict(method.make_config(given, shape="ov-7b", num_layers=28))
            if {k: v for k, v in config.items() if k != "reference_compat"} == {
                k: v for k, v in spec.settings.items() if k != "reference_compat"
            }:
                matching.append(run["name"])
        assert matching, f"{spec.label}: no run of the paper's configs has these settings"
