"""The shipped sweep configs regenerate the paper's tables: every row of Table 1 and of the 72B / LLaVA-Video
table is a run of a config naming that table, at settings whose paper-style FLOPs are the paper's cell, and
every run of those configs is matched to its paper row (or is a labelled extra, like the causal HoliTom rows)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from holitom import paper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "eval"))
from holitom_eval.plan import build_plan, load_config  # noqa: E402
from holitom_eval.tables import Row, _identity, _paper_flops, paper_row_for  # noqa: E402

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
TABLES = {"table1", "table2_ov72b", "table2_llava_video7b"}


def _paper_runs() -> dict[str, list[tuple[str, str, Row, float | None]]]:
    """table id → [(config file, run name, its row, its paper-style TFLOPs)] over every config naming a table."""
    found: dict[str, list] = {}
    for path in CONFIGS:
        config = load_config(path)
        table = config.get("paper_table")
        if table is None:
            continue
        for run in build_plan(config).runs:
            assert run.error is None, (path.name, run.name, run.error)
            args = run.model_args
            kind, retention, details = _identity("holitom_llava", args, None)
            row = Row(args["pretrained"], args["max_frames_num"], kind, retention, details)
            flops = _paper_flops("holitom_llava", args, kind, retention, details)
            found.setdefault(table, []).append((path.name, run.name, row, None if flops is None else flops.tflops))
    return found


RUNS = _paper_runs()


def test_the_configs_name_every_paper_table():
    assert set(RUNS) == TABLES


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_paper_row_is_a_run_at_the_paper_flops(table):
    matched = {}
    for config, name, row, tflops in RUNS[table]:
        found = paper_row_for(row, table)
        if "causal" in name:  # the paper's rows as the paper describes them, beside the authors' runs
            continue
        assert found is not None, f"{config}: run {name} matches no row of {table}"
        assert math.isclose(round(tflops, 1), found["values"]["TFLOPs"]), (config, name, tflops, found)
        matched[(found["method"], found["budget"])] = name
    rows = {(r["method"], r["budget"]) for r in paper.result_rows() if r["table"] == table}
    assert rows == set(matched), f"{table}: paper rows without a run: {sorted(rows - set(matched))}"


def test_the_ablation_runs_in_table_1s_mode_around_table_1s_point():
    """The paper's ablations came from the authors' code, like its Table 1: every ablation run (and the smoke
    ones) is in reference_compat mode, and the base point is Table 1's holitom_rho0.10 run, setting for setting."""
    from holitom import methods

    spec = methods.get("holitom")
    ablation = load_config(REPO / "configs" / "ablation_onevision_7b.yaml")
    table1 = {run.name: run for run in build_plan(load_config(REPO / "configs" / "onevision_7b.yaml")).runs}
    runs = build_plan(ablation).runs
    assert len(runs) == 26 and all(run.model_args["reference_compat"] is True for run in runs)
    smoke = build_plan(ablation, smoke=True).runs
    assert smoke and all(run.model_args["reference_compat"] is True for run in smoke)

    def config(args: dict) -> dict:
        return spec.config_dict(spec.make_config({k: v for k, v in args.items() if k in {s.name for s in spec.settings}}))

    base = next(run for run in runs if run.name == "holitom_tau0.65")
    assert config(base.model_args) == config(table1["holitom_rho0.10"].model_args)
