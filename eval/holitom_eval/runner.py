"""The sweep runner behind `scripts/eval_*.sh` and `scripts/sweep.py`: configs/*.yaml → lmms-eval runs
(the config → plan part: `holitom_eval.plan`).

A config names a checkpoint, the lmms-eval tasks, model args shared by every run, and the runs: a `runs`
list and/or a `base` with `grids` (each grid a cartesian product over its keys, merged over `base`).
A `smoke` section replaces any of these for `--smoke` (a tiny checkpoint, synthetic videos, the local
smoke tasks, CPU). Each run gets its own folder `OUT/<run name>/` with `run.json` (what was run),
`log.txt` (lmms-eval's output), lmms-eval's result files under `lmms_eval/`, the model's per-sample
records, and `holitom_done.json` once lmms-eval has written its results. A restart skips finished runs;
a failing run is reported and the sweep goes on; the exit status is 1 if any run failed.

Environment variables override the config (command-line flags override both): MODEL, TASKS, OUT, GPUS,
LIMIT, FRAMES, RUNS, DEVICE, DTYPE, SMOKE, PYTHON, PORT, LMMS_EVAL_ARGS.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from holitom_eval import MODEL_NAME, TASKS_DIR, records
from holitom_eval.plan import DONE_FILE, SMOKE_ENV, Plan, Run, build_plan, load_config
from holitom_eval.settings import format_model_args

# ---------------------------------------------------------------------------------------------- commands


def detect_gpus(env: Mapping[str, str]) -> int:
    """Visible GPUs: CUDA_VISIBLE_DEVICES if set, else `nvidia-smi -L`; 1 when none (a single CPU process)."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return max(1, len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"]))
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
            return max(1, sum(line.startswith("GPU") for line in out.splitlines()))
        except (OSError, subprocess.SubprocessError):
            pass
    return 1


def lmms_command(
    run: Run,
    run_dir: str,
    *,
    python: str,
    processes: int = 1,
    cpu: bool = False,
    port: int | None = None,
    limit: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The lmms-eval command line of one run.

    Several processes: `accelerate launch` on GPUs; on CPU `torch.distributed.run` (accelerate launch runs a
    single process on CPU), which lmms-eval and the model see the same way (a gloo process group). Without a
    `port` the launcher picks a free one itself (`--standalone`, `--main_process_port 0`), so two sweeps on
    one machine never race for a port.
    """
    model_args = dict(run.model_args)
    if run.lmms_model == MODEL_NAME:
        model_args["stats_dir"] = run_dir
    elif cpu:
        model_args.setdefault("device_map", "auto")  # lmms-eval's llava wrappers honour --device only then
    if processes > 1 and cpu:
        cmd = [python, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        cmd += ["--master_port", str(port)] if port else ["--standalone"]
        cmd += ["-m", "lmms_eval"]
    elif processes > 1:
        cmd = [python, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
        cmd += ["--main_process_port", str(port or 0), "-m", "lmms_eval"]
    else:
        cmd = [python, "-m", "lmms_eval"]
    cmd += ["--model", run.lmms_model, "--model_args", format_model_args(model_args)]
    cmd += [
        "--tasks",
        ",".join(run.tasks),
        "--batch_size",
        "1",
        "--log_samples",
        "--log_samples_suffix",
        run.name,
    ]
    cmd += ["--output_path", os.path.join(run_dir, records.LMMS_DIR), "--include_path", TASKS_DIR]
    if cpu and run.lmms_model != MODEL_NAME:
        cmd += ["--device", "cpu"]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    return cmd + list(extra_args)


def plugin_installed() -> bool:
    return any(ep.name == MODEL_NAME for ep in entry_points(group="lmms_eval.models"))


def child_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of an lmms-eval process: the source tree importable, the plugin discoverable."""
    env = dict(base)
    env.update(extra)
    repo = Path(__file__).resolve().parents[2]
    if (repo / "holitom").is_dir() and (repo / "eval" / "holitom_eval").is_dir():
        paths = [str(repo), str(repo / "eval")]
        env["PYTHONPATH"] = os.pathsep.join(
            paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
    if not plugin_installed():
        # Not pip-installed: lmms-eval's legacy plugin variable finds holitom_eval.models.AVAILABLE_MODELS.
        plugins = [p for p in env.get("LMMS_EVAL_PLUGINS", "").split(",") if p]
        env["LMMS_EVAL_PLUGINS"] = ",".join(plugins + ["holitom_eval"] * ("holitom_eval" not in plugins))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


# ---------------------------------------------------------------------------------------------- running


def claim_out_dir(out_dir: str, what: str) -> Any:
    """Hold OUT for this process (an flock on OUT/.sweep.lock, released when the process ends, even killed):
    a second sweep into the same OUT refuses, naming the holder, instead of running every run twice and
    appending duplicate records. Returns the open lock file; keep it."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, records.SWEEP_LOCK)
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise ValueError(
            f"{os.path.abspath(out_dir)} is in use by {holder}; wait for it to finish (finished runs are then "
            "skipped) or choose another --out"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"sweep {what} (pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})")
    fh.flush()
    return fh


def records_problem(run_dir: str) -> str | None:
    """Why the model's per-request records of a finished run cannot be trusted, or None: no records at all,
    or requests that carried a video but put 0 visual tokens into the LLM."""
    rows = []
    for path in sorted(Path(run_dir).glob(records.SAMPLES_GLOB)):
        with open(path) as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    if not rows:
        return "the model wrote no per-request records"
    empty = sum(1 for r in rows if r.get("visual_inputs", 1) and not r.get("visual_tokens"))
    if empty:
        return f"{empty} of {len(rows)} requests carried a video but put 0 visual tokens into the LLM"
    return None


class Interrupted(Exception):
    """Ctrl-C during a sweep: which run was going and what had finished."""

    def __init__(self, run: str, outcomes: list) -> None:
        super().__init__(run)
        self.run, self.outcomes = run, outcomes


@dataclass
class Outcome:
    name: str
    status: str  # done | skipped | failed | planned
    detail: str = ""
    seconds: float = 0.0


def _results_since(run_dir: str, start: float) -> list[str]:
    found = Path(run_dir, records.LMMS_DIR).glob("**/" + records.RESULTS_GLOB)
    return sorted(str(p) for p in found if p.stat().st_mtime >= start - 1)


def _log_tail(path: str, lines: int = 12) -> str:
    try:
        with open(path, errors="replace") as fh:
            text = fh.read().splitlines()
    except OSError:
        return ""
    errors = [line for line in text if "Error" in line or "error" in line.split(":")[0]]
    picked = errors[-lines:] if errors else text[-lines:]
    return "\n".join("      " + line[:300] for line in picked)


def execute(
    plan: Plan,
    out_dir: str,
    *,
    python: str = sys.executable,
    processes: int = 1,
    cpu: bool = False,
    limit: int | None = None,
    port: int | None = None,
    force: bool = False,
    dry_run: bool = False,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    echo=print,
) -> list[Outcome]:
    """Run every run of `plan` that is not finished yet; never stops at a failure."""
    env = child_env(os.environ if env is None else env, plan.env)
    outcomes: list[Outcome] = []
    for run in plan.runs:
        try:
            _execute_one(run, outcomes, out_dir, python, processes, cpu, limit, port, force, dry_run, extra_args, env, echo)
        except KeyboardInterrupt:
            raise Interrupted(run.name, outcomes) from None
    return outcomes


def _execute_one(
    run: Run,
    outcomes: list[Outcome],
    out_dir: str,
    python: str,
    processes: int,
    cpu: bool,
    limit: int | None,
    port: int | None,
    force: bool,
    dry_run: bool,
    extra_args: Sequence[str],
    env: Mapping[str, str],
    echo,
) -> None:
    """One run of `execute`: skipped, planned, failed or done, appended to `outcomes`."""
    run_dir = os.path.abspath(os.path.join(out_dir, run.name))
    if run.error:
        echo(f"✗ {run.name}: invalid config: {run.error}")
        outcomes.append(Outcome(run.name, "failed", f"invalid config: {run.error}"))
        return
    fingerprint = run.fingerprint(limit)
    done_path = os.path.join(run_dir, DONE_FILE)
    if os.path.isfile(done_path) and not force:
        with open(done_path) as fh:
            done = json.load(fh)
        note = (
            ""
            if done.get("fingerprint") == fingerprint
            else " (settings changed since; --force re-runs it)"
        )
        echo(f"• {run.name}: finished earlier, skipped{note}")
        outcomes.append(Outcome(run.name, "skipped", note.strip(" ()")))
        return
    cmd = lmms_command(
        run,
        run_dir,
        python=python,
        processes=processes,
        cpu=cpu,
        port=port,
        limit=limit,
        extra_args=extra_args,
    )
    if dry_run:
        echo(f"{run.name}: {shlex.join(cmd)}")
        outcomes.append(Outcome(run.name, "planned"))
        return
    os.makedirs(run_dir, exist_ok=True)
    for stale in [DONE_FILE, *(p.name for p in Path(run_dir).glob(records.SAMPLES_GLOB))]:
        Path(run_dir, stale).unlink(missing_ok=True)  # records of an interrupted attempt
    with open(os.path.join(run_dir, records.RUN_SPEC), "w") as fh:
        record = {"name": run.name, "lmms_model": run.lmms_model, "model_args": run.model_args}
        record.update(tasks=run.tasks, limit=limit, fingerprint=fingerprint, command=cmd)
        json.dump(record, fh, indent=2)
    echo(f"▶ {run.name}: {run.lmms_model} {format_model_args(run.model_args)}")
    log_path = os.path.join(run_dir, records.RUN_LOG)
    start = time.time()
    with open(log_path, "w") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    seconds = time.time() - start
    results = _results_since(run_dir, start)
    problem = records_problem(run_dir) if code == 0 and results and run.lmms_model == MODEL_NAME else None
    if code == 0 and results and problem is None:
        with open(done_path, "w") as fh:
            json.dump({"fingerprint": fingerprint, "results": results, "seconds": seconds}, fh, indent=2)
        echo(f"✓ {run.name} ({seconds:.0f} s)")
        outcomes.append(Outcome(run.name, "done", seconds=seconds))
    else:
        if problem:  # keep the rejected results out of the tables (and out of the next attempt's way)
            for path in results:
                os.replace(path, path + ".rejected")
        why = (
            f"exit status {code}"
            if code
            else problem or "lmms-eval wrote no results (it reports errors and exits 0)"
        )
        echo(f"✗ {run.name}: {why}; log: {log_path}\n{_log_tail(log_path)}")
        outcomes.append(Outcome(run.name, "failed", f"{why}; log: {log_path}", seconds))


def prepare_smoke(plan: Plan, out_dir: str, create: bool = True) -> None:
    """Tiny checkpoint + synthetic videos under OUT/_smoke (made unless `create` is False, for a dry run);
    point the runs and HF_HOME at them (and `fastvid_siglip: tiny` at a tiny SigLIP with its head)."""
    from holitom_eval.smoke import prepare_smoke_data, prepare_tiny_checkpoint, prepare_tiny_siglip

    root = os.path.join(os.path.abspath(out_dir), "_smoke")
    if create:
        checkpoint = prepare_tiny_checkpoint(root, plan.model_kind)
        hf_home = prepare_smoke_data(root)
    else:
        checkpoint, hf_home = os.path.join(root, f"tiny_{plan.model_kind}"), os.path.join(root, "hf_home")
    plan.env.update(SMOKE_ENV, HF_HOME=hf_home)
    siglip = os.path.join(root, "tiny_siglip")
    for run in plan.runs:
        if run.model_args.get("pretrained") in (None, "tiny"):
            run.model_args["pretrained"] = checkpoint
        if run.model_args.get("fastvid_siglip") == "tiny":  # FastVID's head from a tiny SigLIP, offline
            run.model_args["fastvid_siglip"] = prepare_tiny_siglip(root) if create else siglip
        run.model_args.setdefault("device", "cpu")
        run.model_args.setdefault("torch_dtype", "float32")


# ---------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep.py",
        description="Run the lmms-eval runs of a configs/*.yaml file, one folder per run; finished runs are skipped.",
        epilog="Environment variables (flags win): MODEL TASKS OUT GPUS LIMIT FRAMES RUNS DEVICE DTYPE SMOKE "
        "PYTHON PORT LMMS_EVAL_ARGS.",
    )
    parser.add_argument("config", help="a configs/*.yaml file")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny checkpoint, synthetic videos, smoke tasks, CPU (or SMOKE=1)",
    )
    parser.add_argument("--out", help="output root (OUT; default outputs/<config name>[_smoke])")
    parser.add_argument(
        "--gpus", type=int, help="processes for data parallelism (GPUS; default: visible GPUs)"
    )
    parser.add_argument("--limit", type=int, help="documents per task (LIMIT), for quick checks")
    parser.add_argument("--runs", help="comma-separated run names or globs to run (RUNS)")
    parser.add_argument("--model", help="checkpoint directory or hub id (MODEL)")
    parser.add_argument("--tasks", help="comma-separated lmms-eval tasks (TASKS)")
    parser.add_argument("--frames", type=int, help="max_frames_num for every run (FRAMES)")
    parser.add_argument("--force", action="store_true", help="re-run finished runs")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--no-tables", action="store_true", help="do not write tables after the sweep")
    return parser


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: must be an integer") from None


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        smoke = args.smoke or env.get("SMOKE", "").strip().lower() in ("1", "true", "yes")
        overrides = {
            "model": args.model or env.get("MODEL"),
            "tasks": args.tasks or env.get("TASKS"),
            "frames": args.frames or _env_int(env, "FRAMES"),
            "device": env.get("DEVICE"),
            "dtype": env.get("DTYPE"),
            "runs": args.runs or env.get("RUNS"),
        }
        plan = build_plan(config, smoke=smoke, overrides=overrides)
        limit = args.limit if args.limit is not None else _env_int(env, "LIMIT")
        out_dir = (
            args.out or env.get("OUT") or os.path.join("outputs", plan.name + ("_smoke" if smoke else ""))
        )
        gpus = args.gpus or _env_int(env, "GPUS") or (1 if smoke else detect_gpus(env))
        if gpus < 1:
            raise ValueError(f"GPUS={gpus}: must be ≥ 1")
    except (ValueError, FileNotFoundError) as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return 2
    if not args.dry_run:
        try:
            lock = claim_out_dir(out_dir, plan.name)  # noqa: F841 - held until the process ends
        except ValueError as exc:
            print(f"sweep: error: {exc}", file=sys.stderr)
            return 2
    processes = gpus if plan.data_parallel else 1
    cpu = smoke or any(r.model_args.get("device") == "cpu" for r in plan.runs)
    if smoke:
        prepare_smoke(plan, out_dir, create=not args.dry_run)
    python = env.get("PYTHON") or sys.executable
    extra = shlex.split(env.get("LMMS_EVAL_ARGS", ""))
    print(
        f"sweep {plan.name}: {len(plan.runs)} run(s) → {os.path.abspath(out_dir)}; "
        f"{processes} process(es){' on CPU' if cpu else ''}; tasks {','.join(plan.runs[0].tasks) if plan.runs else '-'}"
    )
    try:
        outcomes = execute(
            plan,
            out_dir,
            python=python,
            processes=processes,
            cpu=cpu,
            limit=limit,
            port=_env_int(env, "PORT"),
            force=args.force,
            dry_run=args.dry_run,
            extra_args=extra,
            env=env,
        )
    except Interrupted as stop:
        finished = [o.name for o in stop.outcomes if o.status in ("done", "skipped")]
        print(
            f"\nsweep {plan.name}: interrupted during {stop.run}; {len(finished)} of {len(plan.runs)} run(s) finished"
            f"{' (' + ', '.join(finished) + ')' if finished else ''}. Run the same command again to resume: "
            "finished runs are skipped.",
            file=sys.stderr,
        )
        return 130
    if args.dry_run:
        return 0
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "sweep_summary.json"), "w") as fh:
        json.dump([o.__dict__ for o in outcomes], fh, indent=2)
    failed = [o for o in outcomes if o.status == "failed"]
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    print(f"sweep {plan.name}: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed")
    for o in failed:
        print(f"  failed: {o.name}: {o.detail}")
    if not args.no_tables and len(failed) < len(outcomes):
        _write_tables(out_dir, plan.paper_table)
    return 1 if failed else 0


def _write_tables(out_dir: str, paper_table: str = "auto") -> None:
    """Paper-style tables of everything finished under out_dir (a failure here is reported, not fatal)."""
    try:
        from holitom_eval.report import write_tables

        paths = write_tables(out_dir, out_dir, paper_table=paper_table)
        print("tables: " + ", ".join(paths))
    except Exception as exc:  # noqa: BLE001 - the sweep's runs are done; report and move on
        print(f"tables: not written ({type(exc).__name__}: {exc}); run `holitom tables {out_dir} --paper {paper_table}`")
