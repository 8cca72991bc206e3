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


def test_the_qwen3_vl_config_runs_fit_qwen3_vl_8b():
    """configs/qwen3_vl_8b.yaml: no paper table; every run's settings resolve on a Qwen3-VL-8B config (36 layers,
    deepstack after 3) to the method's defaults where not given, and its smoke section uses the tiny Qwen3-VL."""
    from transformers import Qwen3VLConfig

    from holitom import methods

    config = load_config(REPO / "configs" / "qwen3_vl_8b.yaml")
    assert config.get("paper_table") is None
    runs = build_plan(config).runs
    assert [run.name for run in runs][:1] == ["vanilla"] and len(runs) == 7
    text = {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128}  # fmt: skip
    qwen3 = Qwen3VLConfig(text_config=text, vision_config={"depth": 2, "deepstack_visual_indexes": [0]})
    for run in runs:
        assert run.error is None and run.model_args["pretrained"] == "Qwen/Qwen3-VL-8B-Instruct"
        args = {k: v for k, v in run.model_args.items() if k in ("retain_ratio", "merge_layer", "merge_ratio")}
        settings = methods.config_for(run.model_args["method"], args, qwen3)
        if run.name.startswith("holitom_rho"):
            assert (settings.merge_layer, settings.merge_ratio, settings.tau) == (18, 0.5, 0.8)
        elif run.name.startswith("holitom_wo_m"):
            assert settings.merge_layer is None
    smoke = build_plan(config, smoke=True)
    assert smoke.model_kind == "qwen3-vl" and [run.name for run in smoke.runs] == [
        "vanilla", "holitom_wo_m_rho0.25", "holitom_rho0.25"]
