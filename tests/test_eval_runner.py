"""The sweep runner: configs → runs, command lines, skipping finished runs, carrying on past failures.

lmms-eval itself is replaced here by a small fake script (the real end-to-end path is test_eval_smoke.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "eval"))

from holitom_eval import TASKS_DIR  # noqa: E402
from holitom_eval.plan import DONE_FILE, Plan, Run, build_plan, expand_runs, load_config  # noqa: E402
from holitom_eval.runner import child_env, execute, lmms_command, main  # noqa: E402
from holitom_eval.smoke import SMOKE_TASKS  # noqa: E402

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def _config(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


# ---------------------------------------------------------------------------------------------- configs


def test_grids_expand_around_the_base_and_drop_repeats():
    section = {
        "runs": [{"name": "vanilla", "method": "vanilla"}],
        "base": {"method": "holitom", "retain_ratio": 0.1, "tau": 0.65, "merge_layer": 18},
        "grids": [
            {"tau": [0.65, 0.9]},
            {"merge_layer": ["none", 18]},
            {"retain_ratio": [0.1, 0.2], "beta": [0.6]},
        ],
    }
    entries = expand_runs(section)
    assert [e["name"] for e in entries] == [
        "vanilla",
        "holitom_tau0.65",
        "holitom_tau0.9",
        "holitom_Knone",
        "holitom_rho0.1_beta0.6",
        "holitom_rho0.2_beta0.6",
    ]  # holitom_K18 equals holitom_tau0.65 and runs once
    assert entries[3] == {
        "name": "holitom_Knone",
        "method": "holitom",
        "retain_ratio": 0.1,
        "tau": 0.65,
        "merge_layer": "none",
    }


def test_plan_applies_overrides_and_validates_each_run():
    config = {
        "name": "c",
        "model": "org/model",
        "tasks": ["mvbench", "videomme"],
        "model_args": {"max_frames_num": 32},
        "runs": [
            {"name": "vanilla", "method": "vanilla"},
            {"name": "typo", "method": "holitm"},
            {"name": "own_tasks", "method": "holitom", "retain_ratio": 0.15, "tasks": "egoschema"},
        ],
    }
    plan = build_plan(config)
    vanilla, typo, own = plan.runs
    assert vanilla.model_args == {"max_frames_num": 32, "pretrained": "org/model", "method": "vanilla"}
    assert vanilla.tasks == ["mvbench", "videomme"] and own.tasks == ["egoschema"]
    assert vanilla.error is None and own.error is None
    assert "valid methods: vanilla, holitom, visionzip, fastv" in typo.error

    plan = build_plan(
        config, overrides={"model": "/local/ckpt", "tasks": "mvbench", "frames": 8, "runs": "own*,vanilla"}
    )
    assert [r.name for r in plan.runs] == ["vanilla", "own_tasks"]
    assert all(r.tasks == ["mvbench"] and r.model_args["max_frames_num"] == 8 for r in plan.runs)
    assert plan.runs[0].model_args["pretrained"] == "/local/ckpt"
    with pytest.raises(ValueError, match="RUNS='nothing' matches none of the runs: vanilla, typo, own_tasks"):
        build_plan(config, overrides={"runs": "nothing"})


def test_smoke_section_replaces_runs_and_uses_cpu_and_the_smoke_tasks():
    config = load_config(REPO / "configs" / "onevision_7b.yaml")
    plan = build_plan(config, smoke=True)
    assert [r.name for r in plan.runs] == ["vanilla", "holitom_wo_m_rho0.25", "holitom_rho0.25", "holitom_causal_rho0.25"]
    assert plan.paper_table == "table1"
    for run in plan.runs:
        assert run.tasks == list(SMOKE_TASKS)
        assert (
            run.model_args["device"],
            run.model_args["torch_dtype"],
            run.model_args["max_frames_num"],
        ) == ("cpu", "float32", 8)
        assert run.model_args["pretrained"] is None  # filled with the tiny checkpoint by prepare_smoke
    assert build_plan(load_config(REPO / "configs" / "video_7b.yaml"), smoke=True).model_kind == "video"


def test_72b_config_runs_one_sharded_process():
    plan = build_plan(load_config(REPO / "configs" / "onevision_72b.yaml"))
    assert plan.data_parallel is False
    assert all(r.model_args["device_map"] == "auto" for r in plan.runs)
    holitom = [r for r in plan.runs if r.model_args["method"] == "holitom"]
    assert [(r.model_args["retain_ratio"], r.model_args["merge_layer"]) for r in holitom] == [(0.15, "none"), (0.15, 60)]
    assert all(r.model_args["reference_compat"] is True for r in holitom) and plan.paper_table == "table2_ov72b"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
@pytest.mark.parametrize("smoke", [False, True])
def test_every_shipped_config_is_valid(path, smoke):
    plan = build_plan(load_config(path), smoke=smoke)
    assert plan.runs
    assert [r.error for r in plan.runs] == [None] * len(plan.runs)


def test_table1_config_has_the_papers_settings():
    plan = build_plan(load_config(REPO / "configs" / "onevision_7b.yaml"))
    settings = {
        (
            r.model_args["method"],
            r.model_args.get("retain_ratio"),
            r.model_args.get("tau"),
            r.model_args.get("merge_layer"),
            r.model_args.get("merge_ratio"),
            r.model_args.get("reference_compat"),
        )
        for r in plan.runs
    }
    expected = {("vanilla", None, None, None, None, None)}
    for rho, tau in ((0.25, 0.80), (0.20, 0.80), (0.15, 0.80), (0.10, 0.65)):
        expected |= {("holitom", rho, tau, "none", None, True), ("holitom", rho, tau, 18, 0.5, True)}
    expected.add(("holitom", 0.10, 0.65, 18, 0.5, False))  # HoliTom (causal): the paper's description
    assert settings == expected
    assert all(r.model_args["max_frames_num"] == 32 for r in plan.runs)
    assert plan.runs[0].tasks == ["mvbench", "egoschema", "videomme", "longvideobench_val_v"]


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"unknown keys \['modle'\]"):
        load_config(_config(tmp_path, {"modle": "x", "runs": []}))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match=r"duplicate run names \['a'\]"):
        build_plan(
            {"tasks": ["t"], "runs": [{"name": "a", "method": "vanilla"}, {"name": "a", "method": "holitom"}]}
        )
    plan = build_plan({"tasks": ["t"], "runs": [{"name": "bad name/..", "method": "vanilla"}]})
    assert "must match" in plan.runs[0].error


# ---------------------------------------------------------------------------------------------- commands


def test_command_lines():
    run = Run(
        "r1",
        "holitom_llava",
        {"pretrained": "m", "method": "holitom", "merge_layer": None},
        ["mvbench", "videomme"],
    )
    cmd = lmms_command(run, "/out/r1", python="py", limit=5)
    assert cmd[:3] == ["py", "-m", "lmms_eval"]
    assert (
        cmd[cmd.index("--model_args") + 1] == "pretrained=m,method=holitom,merge_layer=none,stats_dir=/out/r1"
    )
    assert cmd[cmd.index("--tasks") + 1] == "mvbench,videomme"
    assert cmd[cmd.index("--output_path") + 1] == "/out/r1/lmms_eval"
    assert cmd[cmd.index("--include_path") + 1] == TASKS_DIR
    assert cmd[cmd.index("--limit") + 1] == "5" and "--log_samples" in cmd and "--device" not in cmd

    gpu = lmms_command(run, "/out/r1", python="py", processes=8, port=29555)
    assert gpu[:8] == [
        "py",
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "8",
        "--main_process_port",
        "29555",
        "-m",
    ]
    assert gpu[8] == "lmms_eval"
    cpu = lmms_command(run, "/out/r1", python="py", processes=2, cpu=True, port=29556)
    assert cpu[:8] == [
        "py",
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29556",
        "-m",
    ]

    stock = lmms_command(
        Run("s", "llava_onevision", {"pretrained": "m"}, ["t"]), "/out/s", python="py", cpu=True
    )
    assert (
        stock[stock.index("--model_args") + 1] == "pretrained=m,device_map=auto"
    )  # no stats_dir for stock models
    assert stock[stock.index("--device") + 1] == "cpu"


def test_child_env_makes_the_source_tree_and_plugin_visible(monkeypatch):
    import holitom_eval.runner as runner

    monkeypatch.setattr(runner, "plugin_installed", lambda: False)
    env = child_env({"PYTHONPATH": "/x", "LMMS_EVAL_PLUGINS": "other"}, {"HF_HOME": "/h"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), str(REPO / "eval"), "/x"]
    assert env["LMMS_EVAL_PLUGINS"] == "other,holitom_eval" and env["HF_HOME"] == "/h"
    monkeypatch.setattr(runner, "plugin_installed", lambda: True)  # entry point installed: no legacy variable
    assert "LMMS_EVAL_PLUGINS" not in child_env({}, {})


# ---------------------------------------------------------------------------------------------- running (fake lmms-eval)

FAKE = """#!{python}
# Stands in for `python -m lmms_eval`: logs the call, then behaves as the model args ask.
import json, os, sys, time
args = sys.argv[sys.argv.index("lmms_eval") + 1:]
opts = {{a: b for a, b in zip(args, args[1:] + [""]) if a.startswith("--") and not b.startswith("--")}}
with open(os.environ["FAKE_CALLS"], "a") as fh:
    fh.write(opts["--log_samples_suffix"] + "\\n")
model_args = opts["--model_args"]
if "retain_ratio=0.99" in model_args:
    print("Traceback ...\\nRuntimeError: boom")
    sys.exit(3)
if "retain_ratio=0.98" in model_args:
    print("ERROR | lmms_eval.__main__ - Error during evaluation: swallowed")  # lmms-eval exits 0 then
    sys.exit(0)
out = os.path.join(opts["--output_path"], "model")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, time.strftime("%Y%m%d_%H%M%S") + "_results.json"), "w") as fh:
    json.dump({{"results": {{}}, "config": {{"model": "holitom_llava", "model_args": model_args}}}}, fh)
stats_dir = dict(kv.split("=", 1) for kv in model_args.split(","))["stats_dir"]
visual = 0 if "retain_ratio=0.97" in model_args else 196  # 0.97: the video was dropped on the way
with open(os.path.join(stats_dir, "holitom_samples_rank0.jsonl"), "a") as fh:
    for doc in range(2):
        fh.write(json.dumps({{"doc_id": doc, "visual_inputs": 1, "visual_tokens": visual}}) + "\\n")
"""


@pytest.fixture()
def fake_lmms(tmp_path, monkeypatch):
    script = tmp_path / "fake_python"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(0o755)
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    return str(script), calls


def _plan() -> Plan:
    config = {
        "name": "fake",
        "model": "m",
        "tasks": ["t"],
        "runs": [
            {"name": "ok1", "method": "holitom", "retain_ratio": 0.5},
            {"name": "crashes", "method": "holitom", "retain_ratio": 0.99},
            {"name": "swallowed", "method": "holitom", "retain_ratio": 0.98},
            {"name": "invalid", "method": "holitom", "retain_ratio": 2.0},
            {"name": "ok2", "method": "vanilla"},
            {"name": "no_video", "method": "holitom", "retain_ratio": 0.97},
        ],
    }
    return build_plan(config)


def test_failures_do_not_stop_the_sweep_and_finished_runs_are_skipped(fake_lmms, tmp_path):
    python, calls = fake_lmms
    out = tmp_path / "out"
    messages = []
    outcomes = execute(_plan(), str(out), python=python, echo=messages.append)
    assert [(o.name, o.status) for o in outcomes] == [
        ("ok1", "done"),
        ("crashes", "failed"),
        ("swallowed", "failed"),
        ("invalid", "failed"),
        ("ok2", "done"),
        ("no_video", "failed"),
    ]
    assert "2 of 2 requests carried a video but put 0 visual tokens into the LLM" in outcomes[5].detail
    assert not list((out / "no_video").glob("**/*_results.json"))  # rejected results stay out of the tables
    assert list((out / "no_video").glob("**/*_results.json.rejected"))
    assert "exit status 3" in outcomes[1].detail and "RuntimeError: boom" in "\n".join(messages)
    assert "wrote no results" in outcomes[2].detail
    assert "invalid config: method holitom: retain_ratio=2.0: must be in (0, 1]" == outcomes[3].detail
    assert calls.read_text().split() == [
        "ok1",
        "crashes",
        "swallowed",
        "ok2",
        "no_video",
    ]  # the invalid run never launched
    done = json.loads((out / "ok1" / DONE_FILE).read_text())
    assert done["results"] and not (out / "crashes" / DONE_FILE).exists()
    record = json.loads((out / "ok1" / "run.json").read_text())
    assert record["model_args"]["retain_ratio"] == 0.5 and record["command"][1:3] == ["-m", "lmms_eval"]
    assert (out / "crashes" / "log.txt").read_text().startswith("$ ")

    # Restart: the finished runs are skipped, the failed ones are tried again.
    calls.write_text("")
    outcomes = execute(_plan(), str(out), python=python, echo=messages.append)
    assert [o.status for o in outcomes] == ["skipped", "failed", "failed", "failed", "skipped", "failed"]
    assert calls.read_text().split() == ["crashes", "swallowed", "no_video"]

    # Changed settings: still skipped (no surprise re-runs), but said so; --force runs it again.
    plan = _plan()
    plan.runs[0].model_args["max_frames_num"] = 8
    messages.clear()
    execute(Plan("fake", plan.runs[:1]), str(out), python=python, echo=messages.append)
    assert messages == ["• ok1: finished earlier, skipped (settings changed since; --force re-runs it)"]
    calls.write_text("")
    (out / "ok1" / "holitom_samples_rank0.jsonl").write_text("stale\n")
    assert (
        execute(Plan("fake", plan.runs[:1]), str(out), python=python, force=True, echo=print)[0].status
        == "done"
    )
    assert calls.read_text().split() == ["ok1"]
    fresh = (out / "ok1" / "holitom_samples_rank0.jsonl").read_text().splitlines()
    assert len(fresh) == 2 and "stale" not in fresh  # records of the old attempt removed, no duplicates


def test_main_exits_nonzero_after_running_everything(fake_lmms, tmp_path, capsys):
    python, calls = fake_lmms
    config = _config(
        tmp_path,
        {
            "name": "fake",
            "model": "m",
            "tasks": ["t"],
            "runs": [
                {"name": "crashes", "method": "holitom", "retain_ratio": 0.99},
                {"name": "ok", "method": "vanilla"},
            ],
        },
    )
    out = tmp_path / "out"
    env = {
        "PYTHON": python,
        "OUT": str(out),
        "GPUS": "1",
        "FAKE_CALLS": str(calls),
        "PATH": os.environ["PATH"],
    }
    assert main([config, "--no-tables"], env=env) == 1
    text = capsys.readouterr().out
    assert "sweep fake: 1 done, 0 skipped, 1 failed" in text and "failed: crashes: exit status 3" in text
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert [(s["name"], s["status"]) for s in summary] == [("crashes", "failed"), ("ok", "done")]
    assert (
        main([config, "--no-tables", "--runs", "ok"], env=env) == 0
    )  # only the finished run: skipped, success


def test_main_reports_bad_input(tmp_path, capsys):
    assert main([str(tmp_path / "nope.yaml")], env={}) == 2
    assert "sweep: error: config" in capsys.readouterr().err
    config = _config(tmp_path, {"tasks": ["t"], "runs": [{"name": "a", "method": "vanilla"}]})
    assert main([config], env={"LIMIT": "ten"}) == 2
    assert "LIMIT='ten': must be an integer" in capsys.readouterr().err


def test_dry_run_prints_commands_and_runs_nothing(tmp_path, capsys):
    config = _config(
        tmp_path, {"name": "d", "model": "m", "tasks": ["t"], "runs": [{"name": "a", "method": "vanilla"}]}
    )
    assert main([config, "--dry-run", "--out", str(tmp_path / "o"), "--gpus", "4"], env={}) == 0
    text = capsys.readouterr().out
    assert "4 process(es)" in text and "accelerate.commands.launch --num_processes 4" in text
    assert not (tmp_path / "o").exists()
