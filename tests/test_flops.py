"""FLOPs accounting: every TFLOPs cell of the paper, the formulas by hand, config parsing, the CLI."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from holitom import paper
from holitom.counts import outer_tokens as outer_visual_tokens
from holitom.flops import (
    add_flops_arguments,
    layer_flops,
    method_flops,
    paper_cells,
    paper_method,
    prefill_flops,
    run_flops,
    schedule_flops,
)
from holitom.shapes import SHAPES as MODEL_SHAPES
from holitom.shapes import ModelShape, shape_from_config

OV7 = MODEL_SHAPES["ov-7b"]
IMPLEMENTED = [c for c in paper_cells() if c["tflops"] is not None]


def ov7_layer(n: int) -> int:
    return 4 * n * 3584**2 + 2 * n * n * 3584 + 2 * n * 3584 * 18944


# --------------------------------------------------------------------------------------- paper cells


@pytest.mark.parametrize("cell", IMPLEMENTED, ids=lambda c: f"{c['table']}-{c['method']}-{c['budget']}")
def test_every_paper_cell_is_reproduced(cell):
    assert cell["tflops"] == cell["paper_tflops"]


def test_paper_cells_cover_every_tflops_cell_of_the_paper_data():
    cells = paper_cells()
    expected = [r for r in paper.result_rows() if r["values"].get("TFLOPs") is not None]
    assert len(cells) == len(expected) == 36
    assert [(c["table"], c["method"], c["budget"], c["paper_tflops"]) for c in cells] == [
        (r["table"], r["method"], r["budget"], r["values"]["TFLOPs"]) for r in expected
    ]
    for cell in cells:
        assert set(cell) == {"table", "model", "method", "budget", "tflops", "paper_tflops", "settings"}
        assert (cell["tflops"] is None) == (cell["settings"] is None)
    by_key = {(c["model"], c["method"], c["budget"]): c["tflops"] for c in cells}
    assert by_key[("ov-7b", "Vanilla", 1.0)] == 40.8
    assert [by_key[("ov-7b", "HoliTom (w/o M)", b)] for b in (0.25, 0.2, 0.15, 0.1)] == [8.7, 7.0, 5.2, 3.4]
    assert [by_key[("ov-7b", "HoliTom", b)] for b in (0.25, 0.2, 0.15, 0.1)] == [7.1, 5.8, 4.3, 2.8]
    assert [by_key[("ov-7b", "VisionZip", b)] for b in (0.25, 0.2, 0.15, 0.1)] == [8.7, 7.0, 5.2, 3.4]
    assert by_key[("ov-7b", "FastV", 0.25)] == 9.3 and by_key[("ov-72b", "FastV", 0.15)] == 86.4
    assert by_key[("vid-7b", "FastV", 0.15)] == 17.1
    assert (by_key[("vid-7b", "Vanilla", 1.0)], by_key[("vid-7b", "HoliTom", 0.15)]) == (80.2, 7.6)
    assert (by_key[("ov-72b", "Vanilla", 1.0)], by_key[("ov-72b", "HoliTom", 0.15)]) == (429.3, 51.6)


def test_fastv_paper_preset_is_the_only_grid_setting_for_all_three_cells():
    """(K, R) on a 1 % grid of R, K in 1..8: only K=2, R=0.2 rounds to 9.3 / 86.4 / 17.1 TFLOPs."""
    fits = [
        (k, r / 100)
        for k in range(1, 9)
        for r in range(1, 101)
        if all(
            round(method_flops(model, method="fastv", fastv_layer=k, fastv_keep=r / 100).tflops, 1) == cell
            for model, cell in (("ov-7b", 9.3), ("ov-72b", 86.4), ("vid-7b", 17.1))
        )
    ]
    assert fits == [(2, 0.2)]


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


def test_prefill_flops_no_reduction_cases_equal_plain_and_layers_beyond_the_depth_are_errors():
    plain = prefill_flops(28, 3584, 18944, 640)
    assert prefill_flops(28, 3584, 18944, 640, merge_layer=18, merge_ratio=0.0) == plain
    assert prefill_flops(28, 3584, 18944, 640, merge_layer=18, merge_ratio=0.5) < plain
    for layer in (28, 40):
        with pytest.raises(ValueError, match=rf"merge_layer={layer}: must be in \[1, 27\]"):
            prefill_flops(28, 3584, 18944, 640, merge_layer=layer, merge_ratio=0.5)


def test_outer_visual_tokens_ceil_per_frame():
    assert outer_visual_tokens(32, 196, 0.15) == 960  # ceil(29.4) = 30 per frame
    assert outer_visual_tokens(32, 196, 0.25) == 32 * 49
    assert outer_visual_tokens(32, 196, 0.10) == 32 * 20  # ceil(19.6)
    assert outer_visual_tokens(64, 169, 0.10) == 64 * 17  # ceil(16.9)
    assert outer_visual_tokens(3, 196, 1.0) == 588
    assert outer_visual_tokens(1, 196, 0.001) == 1


def test_outer_visual_tokens_ceil_the_float_product_as_the_reference_does():
    # Binary error lands these products just above an integer; the reference's bare ceil adds a token.
    assert math.ceil(100 * 0.07) == 8 and math.ceil(200 * 0.55) == 111
    assert outer_visual_tokens(1, 100, 0.07) == 8
    assert outer_visual_tokens(2, 200, 0.55) == 222


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"frames": 0, "tokens_per_frame": 196, "retain_ratio": 0.1}, "frames=0"),
        ({"frames": 2.0, "tokens_per_frame": 196, "retain_ratio": 0.1}, "frames=2.0"),
        ({"frames": 2, "tokens_per_frame": -1, "retain_ratio": 0.1}, "n=-1"),
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
    with pytest.raises(ValueError, match=r"merge_ratio=1.0: must be in \[0, 1\)"):
        prefill_flops(28, 3584, 18944, 640, merge_layer=18, merge_ratio=1.0)
    with pytest.raises(ValueError, match="n_visual=-1"):
        prefill_flops(28, 3584, 18944, -1)
    with pytest.raises(ValueError, match="num_layers=0"):
        prefill_flops(0, 3584, 18944, 640)


# --------------------------------------------------------------------------------------- methods


def test_visionzip_counts_like_holitom_without_inner_merge():
    vz = method_flops("ov-7b", method="visionzip", retain_ratio=0.15)
    ht = method_flops("ov-7b", method="holitom", retain_ratio=0.15, merge_layer=None)
    assert vz.flops == ht.flops and vz.n_visual_in == vz.n_visual_after == 960
    assert vz.reduction_layer is None


def test_fastv_presets_on_a_published_shape_and_its_own_defaults_elsewhere():
    res = method_flops("ov-7b", method="fastv")  # the paper's K = 2, keep 20 %: 6272 − round(6272·0.8)
    assert (res.n_visual_in, res.n_visual_after, res.reduction_layer) == (6272, 1254, 2)
    assert res.flops == float(2 * ov7_layer(6272) + 26 * ov7_layer(1254)) and round(res.tflops, 1) == 9.3
    own = method_flops("ov-7b", method="fastv", fastv_keep=0.5)  # FastV's own default, given
    assert own.n_visual_after == 3136 and round(own.tflops, 1) == 20.0
    custom = ModelShape("custom", 28, 3584, 18944, 196, 32)  # not a model of the paper: the config's defaults
    assert method_flops(custom, method="fastv").n_visual_after == 3136
    assert method_flops("ov-0.5b", method="fastv").n_visual_after == 3136  # published, but not in the paper
    keep_all = method_flops("ov-7b", method="fastv", fastv_keep=1.0)
    assert keep_all.flops == method_flops("ov-7b", method="vanilla").flops


def test_every_method_without_settings_gives_a_paper_cell_of_its_model():
    """The rule of `holitom flops --help`: a setting not given takes the paper's value for a published
    model. So every method with a cell on a model, run with no settings at all, lands on one of its cells:
    FastV (K = 2, keep 20 %) 9.3 / 86.4 / 17.1, the ρ methods at 0.10 (0.15 for PruneVid) on OV-7B and at
    the 72B / LLaVA-Video tables' only budget 0.15."""
    cells: dict[tuple[str, str], set[float]] = {}
    for cell in paper_cells():
        cells.setdefault((cell["model"], cell["method"]), set()).add(cell["paper_tflops"])
    checked = {}
    for (model, label), published in cells.items():
        method = paper_method(label)
        if label == "HoliTom (w/o M)":  # the same method with merge_layer none: its defaults are the other row
            continue
        tflops = round(method_flops(model, method=method.name).tflops, 1)
        assert tflops in published, (model, label, tflops, published)
        checked[(model, method.name)] = tflops
    assert checked[("ov-7b", "fastv")] == 9.3 and checked[("ov-72b", "fastv")] == 86.4
    assert checked[("vid-7b", "visionzip")] == 9.3 and checked[("ov-72b", "holitom")] == 51.6
    assert checked[("ov-7b", "holitom")] == 2.8 and checked[("ov-7b", "prunevid")] == 5.2
    assert len(checked) == len(cells) - 3  # one w/o M row per model


def test_fastv_custom_layer_and_keep():
    res = method_flops("ov-0.5b", frames=1, method="fastv", fastv_layer=3, fastv_keep=0.25)
    assert res.n_visual_after == 196 - round(196 * 0.75)  # 49
    assert res.flops == float(3 * layer_flops(196, 896, 4864) + 21 * layer_flops(49, 896, 4864))


def test_holitom_defaults_are_the_papers_and_frames_override():
    res = method_flops("ov-7b", frames=8, method="holitom")
    assert res.frames == 8 and res.n_visual_in == 8 * 20  # ρ defaults to 0.10
    assert (res.reduction_layer, res.n_visual_after) == (18, 80)  # the paper's K=18 and r=0.5 for OV-7B
    assert res.settings["tau"] == 0.65  # the paper's τ for OV-7B at ρ=0.10
    assert method_flops("ov-72b", method="holitom").reduction_layer == 60
    assert method_flops("ov-7b", method="holitom", merge_layer=None).reduction_layer is None  # w/o M


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "tome"}, "unknown method 'tome'"),
        ({"method": "vanilla", "retain_ratio": 0.1}, r"unknown vanilla settings \['retain_ratio'\]"),
        ({"method": "visionzip", "merge_layer": 18}, r"unknown visionzip settings \['merge_layer'\]"),
        ({"method": "holitom", "fastv_keep": 0.5}, "fastv_keep"),
        ({"method": "fastv", "retain_ratio": 0.5}, "retain_ratio"),
        ({"method": "fastv", "fastv_keep": 0.0}, r"fastv_keep=0.0: must be in \(0, 1\]"),
        ({"method": "fastv", "fastv_layer": 0}, "fastv_layer=0"),
        ({"method": "fastv", "fastv_layer": 28}, r"fastv_layer=28 is beyond this 28-layer LM: layers must be in \[1, 27\]"),
        ({"method": "holitom", "retain_ratio": 0.0}, "retain_ratio=0.0"),
        ({"method": "holitom", "merge_layer": 18, "merge_ratio": 1.0}, "merge_ratio=1.0"),
        ({"method": "holitom", "merge_layer": 0}, "merge_layer=0"),
        ({"method": "holitom", "merge_layer": 40}, r"merge_layer=40 is beyond this 28-layer LM.*merge_layer none"),
        ({"method": "vanilla", "frames": 0}, "frames=0"),
    ],
)
def test_method_flops_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        method_flops("ov-7b", **kwargs)


def test_unknown_shape_names_itself():
    with pytest.raises(ValueError, match="model='ov-13b': unknown shape"):
        method_flops("ov-13b", method="vanilla")


def test_schedule_flops_matches_the_accounting():
    res = method_flops("ov-7b", method="holitom", retain_ratio=0.10, merge_layer=18)
    assert res.schedule == ((0, 640), (18, 320))
    assert schedule_flops(OV7, res.schedule) == res.flops
    assert schedule_flops(OV7, ((0, 641),)) == float(28 * ov7_layer(641))  # e.g. with the trailing newline
    assert schedule_flops(OV7, ((0, 641), (18, 321))) == float(18 * ov7_layer(641) + 10 * ov7_layer(321))
    assert schedule_flops(OV7, ((0, 100), (2, 50), (7, 25))) == float(
        2 * ov7_layer(100) + 5 * ov7_layer(50) + 21 * ov7_layer(25)
    )
    with pytest.raises(ValueError, match="must start at layer 0"):
        schedule_flops(OV7, ((2, 641),))
    with pytest.raises(ValueError, match="layers must increase"):
        schedule_flops(OV7, ((0, 641), (30, 2)))


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
    assert len(lines) == 37  # header + 36 cells
    assert "HoliTom" in lines[-1] and lines[-1].split()[4:6] == ["7.6", "7.6"]
    assert run_flops(parse("--paper", "--json")) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(paper_cells()))


def test_cli_bad_value_raises():
    with pytest.raises(ValueError, match="retain_ratio=2.0"):
        run_flops(parse("--retain-ratio", "2"))
    with pytest.raises(ValueError, match="unknown shape"):
        run_flops(parse("--model", "nope"))
    with pytest.raises(ValueError, match="--merge-layer: merge_layer='x': must be an integer or none"):
        run_flops(parse("--merge-layer", "x"))
    with pytest.raises(ValueError, match="--fastv-keep: not a setting of method holitom"):
        run_flops(parse("--fastv-keep", "0.5"))


def test_cli_tiny_model_prints_a_unit_that_shows_the_number(tmp_path, capsys):
    from holitom.tools.tiny import tiny_config

    (tmp_path / "config.json").write_text(json.dumps(tiny_config("onevision")))
    assert run_flops(parse("--model", str(tmp_path), "--method", "vanilla", "--frames", "8")) == 0
    out = capsys.readouterr().out
    assert "0.0 TFLOPs" not in out and "prefill 1.5 GFLOPs" in out


def test_model_shape_passthrough():
    shape = ModelShape("toy", num_layers=2, hidden=3, ffn=5, tokens_per_frame=4, frames=2)
    res = method_flops(shape, method="vanilla")
    assert res.flops == float(2 * layer_flops(8, 3, 5)) and res.model == "toy"


def test_paper_flops_need_no_torch():
    """`holitom flops --paper` (every method's FLOPs schedule, the registry, the CLI) runs with torch blocked."""
    import subprocess
    import sys

    code = "import sys; sys.modules['torch'] = None; from holitom.cli import main; raise SystemExit(main(['flops', '--paper']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "FastVID" in done.stdout and "PruneVid" in done.stdout and "DyCoke" in done.stdout and "PDrop" in done.stdout


def test_layer_flops_with_the_real_attention_width():
    from holitom.flops import layer_flops, schedule_flops
    from holitom.shapes import ModelShape

    # n=1, d=2, m=3: q 1·2·4 + k, v 2·(1·2·1) + o 1·4·2 = 20; scores + values 2·1²·4 = 8; FFN 2·1·2·3 = 12
    assert layer_flops(1, 2, 3, q_width=4, kv_width=1) == 40
    assert layer_flops(1, 2, 3, q_width=4) == 2 * 1 * 2 * 8 + 8 + 12 == 52  # k/v as wide as q (the paper's count)
    assert layer_flops(7, 5, 11) == layer_flops(7, 5, 11, 5, 5) == 4 * 7 * 25 + 2 * 49 * 5 + 2 * 7 * 5 * 11
    # head_dim only counts where it is set and not d/heads: the paper's shapes are unchanged
    plain = ModelShape("x", 2, 8, 16, 1, 1, heads=2, kv_heads=1)
    wide = ModelShape("x", 2, 8, 16, 1, 1, heads=2, kv_heads=1, head_dim=8)
    assert plain.attention_width() == 8 and wide.attention_width() == 16
    assert schedule_flops(plain, ((0, 3),)) == 2 * layer_flops(3, 8, 16)
    assert schedule_flops(wide, ((0, 3),)) == 2 * (4 * 3 * 8 * 16 + 2 * 9 * 16 + 2 * 3 * 8 * 16)
