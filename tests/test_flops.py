"""FLOPs accounting: every TFLOPs cell of the paper, the formulas by hand, config parsing, the CLI."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from holitom.flops import (
    MODEL_SHAPES,
    ModelShape,
    actual_prefill_flops,
    add_flops_arguments,
    layer_flops,
    method_flops,
    outer_visual_tokens,
    paper_table,
    prefill_flops,
    run_flops,
    shape_from_config,
)

OV7 = MODEL_SHAPES["ov-7b"]


def ov7_layer(n: int) -> int:
    return 4 * n * 3584**2 + 2 * n * n * 3584 + 2 * n * 3584 * 18944


# --------------------------------------------------------------------------------------- paper cells


@pytest.mark.parametrize("row", paper_table(), ids=lambda r: f"{r['model']}-{r['label']}-{r['retain_ratio']}")
def test_every_paper_cell_is_reproduced(row):
    assert row["tflops"] == row["paper_tflops"]


def test_paper_table_covers_all_cells():
    rows = paper_table()
    cells = {(r["model"], r["retain_ratio"], r["merge_layer"]): r["tflops"] for r in rows}
    assert len(rows) == 14
    assert cells[("ov-7b", None, None)] == 40.8
    assert [cells[("ov-7b", rho, None)] for rho in (0.25, 0.20, 0.15, 0.10)] == [8.7, 7.0, 5.2, 3.4]
    assert [cells[("ov-7b", rho, 18)] for rho in (0.25, 0.20, 0.15, 0.10)] == [7.1, 5.8, 4.3, 2.8]
    assert cells[("vid-7b", None, None)] == 80.2
    assert cells[("vid-7b", 0.15, None)] == 9.3
    assert cells[("vid-7b", 0.15, 18)] == 7.6
    assert cells[("ov-72b", None, None)] == 429.3
    assert cells[("ov-72b", 0.15, 60)] == 51.6


def test_headline_cell_is_6_9_percent_of_vanilla():
    res = method_flops("ov-7b", method="holitom", retain_ratio=0.10, merge_layer=18, merge_ratio=0.5)
    assert (res.n_visual_in, res.n_visual_after) == (640, 320)
    assert round(res.tflops, 1) == 2.8
    assert round(res.percent_of_vanilla, 1) == 6.9
    assert round(res.vanilla_tflops, 1) == 40.8


def test_vanilla_ov7b_exact_integer_count():
    res = method_flops("ov-7b", method="vanilla")
    assert res.n_visual_in == res.n_visual_after == 6272
    assert res.flops == float(28 * ov7_layer(6272))
    assert res.percent_of_vanilla == 100.0


def test_vid7b_counts_169_tokens_per_frame():
    res = method_flops("vid-7b", method="holitom", retain_ratio=0.15)
    assert res.frames == 64 and res.tokens_per_frame == 169
    assert res.n_visual_in == 64 * 26  # ceil(169·0.15) = ceil(25.35) = 26


# --------------------------------------------------------------------------------------- formulas


def test_layer_flops_by_hand():
    assert layer_flops(1, 1, 1) == 8
    assert layer_flops(2, 3, 5) == 4 * 2 * 9 + 2 * 4 * 3 + 2 * 2 * 3 * 5  # 72 + 24 + 60
    assert layer_flops(0, 3584, 18944) == 0


def test_prefill_flops_split_at_merge_layer():
    assert prefill_flops(4, 3, 5, 2) == 4 * 156.0
    # n = 10, r = 0.5 → layers 0..1 see 10, layers 2..3 see 5.
    assert prefill_flops(4, 3, 5, 10, merge_layer=2, merge_ratio=0.5) == 2 * layer_flops(
        10, 3, 5
    ) + 2 * layer_flops(5, 3, 5)
    # Reduced count is n − round(n·r) with Python rounding: 5 − round(2.5) = 3.
    assert prefill_flops(4, 3, 5, 5, merge_layer=1, merge_ratio=0.5) == layer_flops(
        5, 3, 5
    ) + 3 * layer_flops(3, 3, 5)


def test_prefill_flops_no_reduction_cases_equal_plain():
    plain = prefill_flops(28, 3584, 18944, 640)
    assert prefill_flops(28, 3584, 18944, 640, merge_layer=18, merge_ratio=0.0) == plain
    assert prefill_flops(28, 3584, 18944, 640, merge_layer=28, merge_ratio=0.5) == plain
    assert prefill_flops(28, 3584, 18944, 640, merge_layer=40, merge_ratio=0.5) == plain
    assert prefill_flops(28, 3584, 18944, 640, merge_layer=18, merge_ratio=0.5) < plain


def test_outer_visual_tokens_ceil_per_frame():
    assert outer_visual_tokens(32, 196, 0.15) == 960  # ceil(29.4) = 30 per frame
    assert outer_visual_tokens(32, 196, 0.25) == 32 * 49
    assert outer_visual_tokens(32, 196, 0.10) == 32 * 20  # ceil(19.6)
    assert outer_visual_tokens(64, 169, 0.10) == 64 * 17  # ceil(16.9)
    assert outer_visual_tokens(3, 196, 1.0) == 588
    assert outer_visual_tokens(1, 196, 0.001) == 1


def test_outer_visual_tokens_sheds_float_error():
    # Binary error makes these products land just above an integer; a bare ceil would add a token.
    assert math.ceil(100 * 0.07) == 8 and math.ceil(200 * 0.55) == 111
    assert outer_visual_tokens(1, 100, 0.07) == 7
    assert outer_visual_tokens(2, 200, 0.55) == 220
    assert outer_visual_tokens(1, 100, 0.28) == 28


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"frames": 0, "tokens_per_frame": 196, "retain_ratio": 0.1}, "frames=0"),
        ({"frames": 2.0, "tokens_per_frame": 196, "retain_ratio": 0.1}, "frames=2.0"),
        ({"frames": 2, "tokens_per_frame": 0, "retain_ratio": 0.1}, "tokens_per_frame=0"),
        (
            {"frames": 2, "tokens_per_frame": 196, "retain_ratio": 0.0},
            r"retain_ratio=0.0: must be in \(0, 1\]",
        ),
        ({"frames": 2, "tokens_per_frame": 196, "retain_ratio": 1.5}, "retain_ratio=1.5"),
        ({"frames": 2, "tokens_per_frame": 196, "retain_ratio": float("nan")}, "retain_ratio=nan"),
    ],
)
def test_outer_visual_tokens_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        outer_visual_tokens(**kwargs)


def test_prefill_flops_bad_args():
    with pytest.raises(ValueError, match=r"merge_ratio=1.0: must be in \[0, 1\)"):
        prefill_flops(28, 3584, 18944, 640, merge_layer=18, merge_ratio=1.0)
    with pytest.raises(ValueError, match="merge_layer=0"):
        prefill_flops(28, 3584, 18944, 640, merge_layer=0, merge_ratio=0.5)
    with pytest.raises(ValueError, match="n_visual=-1"):
        prefill_flops(28, 3584, 18944, -1)
    with pytest.raises(ValueError, match="num_layers=0"):
        prefill_flops(0, 3584, 18944, 640)


# --------------------------------------------------------------------------------------- methods


def test_visionzip_counts_like_holitom_without_inner_merge():
    vz = method_flops("ov-7b", method="visionzip", retain_ratio=0.15)
    ht = method_flops("ov-7b", method="holitom", retain_ratio=0.15)
    assert vz.flops == ht.flops and vz.n_visual_in == vz.n_visual_after == 960
    assert vz.reduction_layer is None


def test_fastv_defaults_k2_keep_half():
    res = method_flops("ov-7b", method="fastv")
    assert (res.n_visual_in, res.n_visual_after, res.reduction_layer) == (6272, 3136, 2)
    assert res.flops == float(2 * ov7_layer(6272) + 26 * ov7_layer(3136))
    keep_all = method_flops("ov-7b", method="fastv", fastv_keep=1.0)
    assert keep_all.flops == method_flops("ov-7b", method="vanilla").flops


def test_fastv_custom_layer_and_keep():
    res = method_flops("ov-0.5b", frames=1, method="fastv", fastv_layer=3, fastv_keep=0.25)
    assert res.n_visual_after == 196 - round(196 * 0.75)  # 49
    assert res.flops == float(3 * layer_flops(196, 896, 4864) + 21 * layer_flops(49, 896, 4864))


def test_holitom_default_ratio_and_frames_override():
    res = method_flops("ov-7b", frames=8, method="holitom")
    assert res.frames == 8 and res.n_visual_in == 8 * 20  # ρ defaults to 0.10
    assert method_flops("ov-7b", method="holitom", merge_layer=18).n_visual_after == 320  # r defaults to 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "tome"}, "method='tome'"),
        ({"method": "vanilla", "retain_ratio": 0.1}, "retain_ratio=0.1: does not apply to method 'vanilla'"),
        ({"method": "visionzip", "merge_layer": 18}, "merge_layer=18: does not apply"),
        ({"method": "holitom", "merge_ratio": 0.5}, "merge_ratio=0.5: needs merge_layer"),
        ({"method": "holitom", "fastv_keep": 0.5}, "fastv_keep=0.5"),
        ({"method": "fastv", "retain_ratio": 0.5}, "retain_ratio=0.5"),
        ({"method": "fastv", "fastv_keep": 0.0}, r"keep_ratio=0.0: must be in \(0, 1\]"),
        ({"method": "fastv", "fastv_layer": 0}, "fastv_layer=0"),
        ({"method": "holitom", "retain_ratio": 0.0}, "retain_ratio=0.0"),
        ({"method": "holitom", "merge_layer": 18, "merge_ratio": 1.0}, "merge_ratio=1.0"),
        ({"method": "holitom", "merge_layer": 0}, "merge_layer=0"),
        ({"method": "vanilla", "frames": 0}, "frames=0"),
    ],
)
def test_method_flops_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        method_flops("ov-7b", **kwargs)


def test_unknown_preset_names_itself():
    with pytest.raises(ValueError, match="model='ov-13b': unknown preset"):
        method_flops("ov-13b", method="vanilla")


def test_actual_prefill_flops_matches_accounting():
    res = method_flops("ov-7b", method="holitom", retain_ratio=0.10, merge_layer=18)
    assert actual_prefill_flops("ov-7b", 640, 320, 18) == res.flops
    assert actual_prefill_flops(OV7, 641) == float(28 * ov7_layer(641))  # e.g. with the trailing newline
    assert actual_prefill_flops(OV7, 641, 321, 18) == float(18 * ov7_layer(641) + 10 * ov7_layer(321))
    with pytest.raises(ValueError, match="give both or neither"):
        actual_prefill_flops(OV7, 641, 321)
    with pytest.raises(ValueError, match="n_visual_after_inner=700: more than n_visual_in=641"):
        actual_prefill_flops(OV7, 641, 700, 18)


# --------------------------------------------------------------------------------------- config.json


def qwen_cfg(**extra):
    cfg = {"num_hidden_layers": 28, "hidden_size": 3584, "intermediate_size": 18944}
    cfg.update(extra)
    return cfg


def test_presets_have_the_papers_shapes():
    assert (OV7.num_layers, OV7.hidden, OV7.ffn, OV7.tokens_per_frame, OV7.frames) == (
        28,
        3584,
        18944,
        196,
        32,
    )
    s = MODEL_SHAPES["ov-72b"]
    assert (s.num_layers, s.hidden, s.ffn, s.tokens_per_frame) == (80, 8192, 29568, 196)
    s = MODEL_SHAPES["ov-0.5b"]
    assert (s.num_layers, s.hidden, s.ffn, s.tokens_per_frame, s.frames) == (24, 896, 4864, 196, 32)
    s = MODEL_SHAPES["vid-7b"]
    assert (s.tokens_per_frame, s.frames) == (169, 64)


@pytest.mark.parametrize(
    "mode, stride, tokens",
    [
        ("bilinear", None, 196),
        ("bilinear", 2, 196),
        ("average", None, 169),
        ("max", 2, 169),
        ("bilinear", 3, 81),
    ],
)
def test_shape_from_config_pool_modes(mode, stride, tokens):
    shape = shape_from_config(qwen_cfg(mm_spatial_pool_mode=mode, mm_spatial_pool_stride=stride))
    assert shape.tokens_per_frame == tokens
    assert (shape.num_layers, shape.hidden, shape.ffn, shape.frames) == (28, 3584, 18944, 32)


def test_shape_from_config_grid_model_defaults_to_64_frames_and_vision_override():
    shape = shape_from_config(qwen_cfg(mm_spatial_pool_mode="average", mm_newline_position="grid"))
    assert (shape.tokens_per_frame, shape.frames) == (169, 64)
    tiny = {"image_size": 70, "patch_size": 14}  # 5×5 grid
    assert (
        shape_from_config(qwen_cfg(mm_spatial_pool_mode="bilinear", vision_config=tiny)).tokens_per_frame == 9
    )
    assert (
        shape_from_config(qwen_cfg(mm_spatial_pool_mode="average", vision_config=tiny)).tokens_per_frame == 4
    )


def test_shape_from_config_file_and_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(qwen_cfg(mm_spatial_pool_mode="bilinear")))
    by_dir = shape_from_config(tmp_path)
    by_file = shape_from_config(tmp_path / "config.json")
    assert by_dir.tokens_per_frame == by_file.tokens_per_frame == 196
    res = method_flops(str(tmp_path), method="vanilla")
    assert round(res.tflops, 1) == 40.8


def test_shape_from_config_bad(tmp_path):
    with pytest.raises(ValueError, match="mm_spatial_pool_mode=None"):
        shape_from_config(qwen_cfg())
    with pytest.raises(ValueError, match="mm_spatial_pool_mode='nearest'"):
        shape_from_config(qwen_cfg(mm_spatial_pool_mode="nearest"))
    with pytest.raises(ValueError, match="lacks \\['intermediate_size'\\]"):
        shape_from_config({"num_hidden_layers": 2, "hidden_size": 8, "mm_spatial_pool_mode": "bilinear"})
    with pytest.raises(ValueError, match="no config.json"):
        shape_from_config(tmp_path / "missing")


# --------------------------------------------------------------------------------------- CLI


def parse(*argv: str) -> argparse.Namespace:
    return add_flops_arguments(argparse.ArgumentParser()).parse_args(list(argv))


def test_cli_summary_line(capsys):
    assert run_flops(parse("--model", "ov-7b", "--retain-ratio", "0.1", "--merge-layer", "18")) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    assert "2.8 TFLOPs" in out and "6.9% of vanilla 40.8" in out and "6272 → 640 (→ 320 from layer 18)" in out


def test_cli_json(capsys):
    assert run_flops(parse("--model", "vid-7b", "--method", "vanilla", "--json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "vanilla" and data["n_visual_in"] == 10816 and round(data["tflops"], 1) == 80.2


def test_cli_paper(capsys):
    assert run_flops(parse("--paper")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 14 and "51.6 TFLOPs" in lines[-1]
    assert run_flops(parse("--paper", "--json")) == 0
    assert json.loads(capsys.readouterr().out) == paper_table()


def test_cli_bad_value_raises():
    with pytest.raises(ValueError, match="retain_ratio=2.0"):
        run_flops(parse("--retain-ratio", "2"))
    with pytest.raises(ValueError, match="unknown preset"):
        run_flops(parse("--model", "nope"))


def test_model_shape_passthrough():
    shape = ModelShape("toy", num_layers=2, hidden=3, ffn=5, tokens_per_frame=4, frames=2)
    res = method_flops(shape, method="vanilla")
    assert res.flops == float(2 * layer_flops(8, 3, 5)) and res.model == "toy"
