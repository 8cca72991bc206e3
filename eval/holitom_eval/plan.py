"""Sweep configs (configs/*.yaml) → a plan of lmms-eval runs: reading and checking a config, expanding its
runs and grids, applying the smoke section and the overrides. Running the plan: `holitom_eval.runner`."""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from holitom import methods
from holitom_eval import MODEL_NAME, records
from holitom_eval.settings import parse_model_args

TOP_KEYS = {
    "name",
    "description",
    "model",
    "lmms_model",
    "tasks",
    "model_args",
    "runs",
    "base",
    "grids",
    "data_parallel",
    "paper_table",
    "smoke",
}
SMOKE_KEYS = {"model_kind", "model_args", "tasks", "runs", "base", "grids"}
RUN_KEYS = {"name", "lmms_model", "tasks", "model_args"}  # everything else in a run is a model arg
# grid run names use a setting's short key (retain_ratio → rho, merge_layer → K, ...)
SHORT = {name: owners[0][1].short for name, owners in methods.all_settings().items() if owners[0][1].short}
DONE_FILE = records.DONE_FILE
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SMOKE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass
class Run:
    """One lmms-eval invocation. `error` is set when the config entry is invalid (reported, not run)."""

    name: str
    lmms_model: str
    model_args: dict[str, Any]
    tasks: list[str]
    error: str | None = None

    def fingerprint(self, limit: int | None) -> str:
        payload = json.dumps(
            [self.lmms_model, self.model_args, self.tasks, limit], sort_keys=True, default=str
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class Plan:
    name: str
    runs: list[Run]
    data_parallel: bool = True
    smoke: bool = False
    model_kind: str = "onevision"
    env: dict[str, str] = field(default_factory=dict)
    paper_table: str = "auto"  # the paper table `holitom tables` compares with (holitom.paper)


# ---------------------------------------------------------------------------------------------- config


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and shape-check a config file (unknown keys name themselves)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config {path!r} does not exist")
    with open(path) as fh:
        try:
            config = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValueError(f"config {where}: malformed YAML: {problem}") from None
    if not isinstance(config, dict):
        raise ValueError(f"config {path}: expected a mapping at the top level")
    unknown = sorted(set(config) - TOP_KEYS)
    if unknown:
        raise ValueError(f"config {path}: unknown keys {unknown}; valid keys: {sorted(TOP_KEYS)}")
    smoke = config.get("smoke") or {}
    if not isinstance(smoke, dict) or set(smoke) - SMOKE_KEYS:
        raise ValueError(f"config {path}: smoke section keys must be among {sorted(SMOKE_KEYS)}")
    config.setdefault("name", Path(path).stem)
    return config


def _task_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    tasks = [t.strip() for t in value or [] if str(t).strip()]
    if not tasks:
        raise ValueError("no tasks given (config `tasks` or TASKS)")
    return tasks


def _format_value(value: Any) -> str:
    return "none" if value is None else str(value)


def expand_runs(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run entries of a config section: its `runs`, then `base` merged with every grid point.

    Grid runs are named `<method>_<key><value>...` (e.g. holitom_tau0.65); a grid point whose settings
    equal an earlier run's is dropped (the base point appears in every one-parameter grid).
    """
    entries = [dict(r) for r in section.get("runs") or []]
    base = dict(section.get("base") or {})
    for grid in section.get("grids") or []:
        if not isinstance(grid, dict) or not grid:
            raise ValueError(f"each grid must be a mapping of model arg → list of values, got {grid!r}")
        keys = list(grid)
        values = [v if isinstance(v, list) else [v] for v in grid.values()]
        for point in itertools.product(*values):
            entry = {**base, **dict(zip(keys, point))}
            label = "_".join(f"{SHORT.get(k, k)}{_format_value(v)}" for k, v in zip(keys, point))
            entry["name"] = f"{entry.get('method', 'holitom')}_{label}"
            entries.append(entry)
    seen, unique = set(), []
    for entry in entries:
        key = json.dumps({k: v for k, v in entry.items() if k != "name"}, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            unique.append(entry)
    return unique


def build_plan(
    config: Mapping[str, Any], *, smoke: bool = False, overrides: Mapping[str, Any] | None = None
) -> Plan:
    """Resolve a config (its smoke section when `smoke`) and overrides into runs.

    overrides: model (pretrained), tasks, frames (max_frames_num), device, dtype (torch_dtype), runs
    (comma-separated names or globs to keep).
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v not in (None, "")}
    section: dict[str, Any] = dict(config)
    if smoke:
        smoke_section = config.get("smoke") or {}
        for key in ("runs", "base", "grids", "tasks"):
            if key in smoke_section:
                section[key] = smoke_section[key]
        if "runs" in smoke_section and "grids" not in smoke_section:
            section.pop("grids", None)
        if "grids" in smoke_section and "runs" not in smoke_section:
            section.pop("runs", None)
        section["model_args"] = {
            **(config.get("model_args") or {}),
            **(smoke_section.get("model_args") or {}),
        }
        if "tasks" not in smoke_section:
            from holitom_eval.smoke import SMOKE_TASKS

            section["tasks"] = list(SMOKE_TASKS)
    shared = dict(section.get("model_args") or {})
    if smoke:
        # The tiny checkpoint (filled in by prepare_smoke) on CPU in float32, unless overridden.
        shared.update(pretrained=overrides.get("model"), device="cpu", torch_dtype="float32")
    elif "model" in overrides or section.get("model"):
        shared["pretrained"] = overrides.get("model", section.get("model"))
    if "frames" in overrides:
        shared["max_frames_num"] = int(overrides["frames"])
    if "device" in overrides:
        shared["device"] = overrides["device"]
    if "dtype" in overrides:
        shared["torch_dtype"] = overrides["dtype"]
    data_parallel = bool(section.get("data_parallel", True))
    if not data_parallel:
        shared.setdefault("device_map", "auto")
    tasks = _task_list(overrides.get("tasks", section.get("tasks")))

    runs = []
    for entry in expand_runs(section):
        name = str(entry.pop("name", "") or "")
        lmms_model = entry.pop("lmms_model", section.get("lmms_model", MODEL_NAME))
        run_tasks = _task_list(entry.pop("tasks")) if "tasks" in entry and "tasks" not in overrides else tasks
        entry.pop("tasks", None)
        model_args = {**shared, **(entry.pop("model_args", None) or {}), **entry}
        error = None
        if not NAME_RE.match(name):
            error, name = f"run name {name!r} must match {NAME_RE.pattern}", name or f"run{len(runs)}"
        elif lmms_model == MODEL_NAME:
            try:
                parse_model_args(model_args)
            except ValueError as exc:
                error = str(exc)
        runs.append(Run(name, lmms_model, model_args, run_tasks, error))
    names = [r.name for r in runs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"config {section.get('name')}: duplicate run names {duplicates}")
    if "runs" in overrides:
        patterns = [p.strip() for p in str(overrides["runs"]).split(",") if p.strip()]
        runs = [r for r in runs if any(fnmatch.fnmatchcase(r.name, p) for p in patterns)]
        if not runs:
            raise ValueError(f"RUNS={overrides['runs']!r} matches none of the runs: {', '.join(names)}")
    kind = (config.get("smoke") or {}).get("model_kind", "onevision") if smoke else "onevision"
    paper_table = str(config.get("paper_table", "auto"))
    from holitom.paper import RESULT_TABLES

    if paper_table not in (*RESULT_TABLES, "auto", "none"):
        raise ValueError(f"config {section.get('name')}: paper_table={paper_table!r}; valid: {', '.join(RESULT_TABLES)}, auto, none")
    return Plan(str(section.get("name")), runs, data_parallel, smoke, kind, paper_table=paper_table)
