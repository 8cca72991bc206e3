"""`holitom bench`: method parsing, real-shape configs, the random model, and an end-to-end run on the tiny
shape whose JSON is checked against independent counts and its own vanilla row."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import statistics

import pytest
import torch

import holitom
from holitom.counts import drop_keep_count, merge_keep_count
from holitom.flops import schedule_flops
from holitom.methods import apply_method, installed, remove
from holitom.shapes import SHAPES, get_shape
from holitom.tools.bench import DEFAULT_METHODS, add_bench_arguments, parse_methods, run_bench, scaled_layer
from holitom.tools.random_model import build_random_model, shape_config
from holitom.tools.synthetic import synthetic_pixels as synthetic_frames
from holitom.tools.synthetic import synthetic_prompt
from holitom.tools.timing import bench_methods

MODEL_SHAPES = SHAPES

FRAMES = 2
REPEATS = 2
DECODE = 3
METHODS = "vanilla,holitom@0.10:K=2:r=0.5,holitom@0.10:K=none,visionzip@0.10,fastv:K=2:R=0.5"


def _args(**overrides) -> argparse.Namespace:
    """Parsed defaults of `holitom bench`, as the CLI would pass them, with overrides."""
    args = add_bench_arguments(argparse.ArgumentParser()).parse_args([])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


# ---------------------------------------------------------------------------------------------- --methods


def test_scaled_layer_keeps_the_relative_depth():
    assert scaled_layer(18, 28, 28) == 18
    assert scaled_layer(60, 80, 80) == 60
    assert scaled_layer(18, 8, 28) == 5  # round(18·8/28 = 5.14)
    assert scaled_layer(15, 6, 24) == 4  # round(15·6/24 = 3.75)
    assert scaled_layer(18, 4, 28) == 3  # round(18·4/28 = 2.57)
    assert scaled_layer(18, 2, 28) == 1  # clamped to [1, layers − 1]
    with pytest.raises(ValueError, match="num_layers=1"):
        scaled_layer(18, 1, 28)


def test_parse_methods_holitom_k_is_the_papers_or_its_relative_depth():
    k = {
        (shape, layers): parse_methods("holitom", layers, shape, full)[1].settings["merge_layer"]
        for shape, layers, full in (("ov-7b", 28, 28), ("ov-72b", 80, 80), ("ov-0.5b", 24, 24), ("ov-7b", 8, 28))
    }
    assert k == {("ov-7b", 28): 18, ("ov-72b", 80): 60, ("ov-0.5b", 24): 15, ("ov-7b", 8): 5}
    assert parse_methods("holitom", 4)[1].settings["merge_layer"] == 3  # no published shape: 18 of 28 moved


def full(method: str, **given):
    """The full settings of a method's config with these values (what the bench installs)."""
    return holitom.methods.get(method).config_dict(holitom.methods.get(method).make_config(given))


def test_parse_methods_settings_and_labels():
    specs = parse_methods(
        "vanilla,holitom@0.10:K=18:r=0.5,holitom@0.15:K=none,visionzip@0.10,fastv:K=3:R=0.25,holitom@0.2:tau=0.9:W=4",
        28,
        "ov-7b",
        28,
    )
    got = [(s.label, s.method, s.settings) for s in specs]
    assert got == [
        ("vanilla", "vanilla", {}),
        (
            "holitom ρ=0.10 K=18 r=0.5",
            "holitom",
            full("holitom", retain_ratio=0.10, merge_layer=18, merge_ratio=0.5, tau=0.65),  # paper τ, OV-7B ρ=0.10
        ),
        ("holitom w/o M ρ=0.15", "holitom", full("holitom", retain_ratio=0.15, merge_layer=None, tau=0.80)),
        ("visionzip ρ=0.10", "visionzip", full("visionzip", retain_ratio=0.10)),
        ("fastv K=3 R=0.25", "fastv", full("fastv", fastv_layer=3, fastv_keep=0.25)),
        (
            "holitom ρ=0.20 K=18 r=0.5 max_window_size=4 tau=0.9",
            "holitom",
            full("holitom", retain_ratio=0.2, tau=0.9, max_window_size=4, merge_layer=18, merge_ratio=0.5),
        ),
    ]


def test_parse_methods_defaults_and_vanilla_first():
    specs = parse_methods("fastv,holitom", 8, "ov-0.5b", 24)
    assert [s.label for s in specs] == ["vanilla", "fastv K=2 R=0.5", "holitom ρ=0.10 K=5 r=0.5"]
    assert specs[2].settings == full("holitom", retain_ratio=0.10, merge_layer=5, merge_ratio=0.5, tau=0.80)
    assert [s.method for s in parse_methods(DEFAULT_METHODS, 4)] == [
        "vanilla",
        "holitom",
        "holitom",
        "visionzip",
        "fastv",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vanilla,tome", "unknown method 'tome'"),
        ("holitom:k=3", "bad setting 'k=3' for holitom"),
        ("fastv@0.1", "@ρ applies to methods with a retain_ratio, not fastv"),
        ("holitom:K=4", r"merge_layer=4 is beyond this 4-layer LM: layers must be in \[1, 3\]"),
        ("fastv:K=0", "fastv_layer=0: must be an integer ≥ 1"),
        ("fastv:K=4", r"fastv_layer=4 is beyond this 4-layer LM: layers must be in \[1, 3\]"),
        ("fastv:R=1.5", r"fastv_keep=1.5: must be in \(0, 1\]"),
        ("holitom@1.5", "retain_ratio=1.5"),
        ("holitom:r=1", "merge_ratio=1.0"),
        ("holitom@abc", "retain_ratio='abc': must be a number"),
        ("holitom:K=two", "merge_layer='two': must be an integer or none"),
        ("visionzip@0", "retain_ratio"),
        ("holitom,holitom@0.10", "listed twice"),
        ("vanilla,,fastv", "empty item"),
        ("", "--methods"),
    ],
)
def test_parse_methods_errors_name_the_bad_part(text, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_methods(text, 4)
    assert "--methods" in str(err.value)


def test_a_method_is_refused_on_a_layout_it_lacks():
    with pytest.raises(ValueError, match="dycoke supports the one_token layout, not 'grid'"):
        parse_methods("dycoke", 28, "vid-7b", 28, newline_position="grid")
    assert parse_methods("visionzip@0.1", 28, "vid-7b", 28, newline_position="grid")


# ---------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shape_configs_have_the_published_sizes(name):
    config = shape_config(name)
    published = MODEL_SHAPES[name]
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (
        published.num_layers,
        published.hidden,
        published.ffn,
    )
    assert get_shape(config.to_dict()).tokens_per_frame == published.tokens_per_frame
    assert config.mm_vision_tower == "google/siglip-so400m-patch14-384"
    tower = config.mm_vision_tower_config
    assert (tower["hidden_size"], tower["num_hidden_layers"], tower["intermediate_size"]) == (1152, 27, 4304)
    assert config.mm_hidden_size == 1152 and config.mm_projector_type == "mlp2x_gelu"
    assert config.mm_newline_position == ("grid" if name == "vid-7b" else "one_token")
    assert config.tie_word_embeddings == (name == "ov-0.5b")


def test_shape_config_truncation_and_errors():
    config = shape_config("ov-7b", layers=3, vision_layers=2)
    assert config.num_hidden_layers == 3 and len(config.layer_types) == 3
    assert config.mm_vision_tower_config["num_hidden_layers"] == 3  # 2 kept + the dropped last layer
    with pytest.raises(ValueError, match=r"--layers=29: must be an integer in \[1, 28\]"):
        shape_config("ov-7b", layers=29)
    with pytest.raises(ValueError, match=r"--vision-layers=0: must be an integer in \[1, 26\]"):
        shape_config("ov-7b", vision_layers=0)
    with pytest.raises(ValueError, match="--shape='ov-13b'"):
        shape_config("ov-13b")


def test_random_model_at_real_width_is_built_fast_and_filled():
    model = build_random_model("ov-0.5b", layers=1, vision_layers=1, seed=3)
    lm = model.get_model()
    assert len(lm.layers) == 1 and len(model.get_vision_tower().encoder_layers) == 1
    assert lm.layers[0].mlp.gate_proj.weight.shape == (4864, 896)
    assert lm.layers[0].self_attn.k_proj.weight.shape == (128, 896)  # 2 KV heads × 64
    assert model.get_vision_tower().encoder_layers[0].mlp.fc1.weight.shape == (4304, 1152)
    assert model.lm_head.weight is lm.embed_tokens.weight  # tied, as published for 0.5B
    assert torch.equal(lm.layers[0].input_layernorm.weight, torch.ones(896))
    assert torch.equal(lm.layers[0].self_attn.q_proj.bias, torch.zeros(896))
    weight = lm.layers[0].mlp.down_proj.weight
    assert abs(weight.std().item() - 0.02) < 1e-3 and weight.abs().max().item() <= 0.02 * math.sqrt(3) + 1e-6
    assert lm.image_newline.abs().max().item() > 0.5  # unit scale, not left at zero
    assert torch.isfinite(lm.rotary_emb.inv_freq).all() and lm.rotary_emb.inv_freq[0].item() == 1.0
    again = build_random_model("ov-0.5b", layers=1, vision_layers=1, seed=3)
    assert torch.equal(again.get_model().layers[0].mlp.down_proj.weight, weight)  # seeded


# ---------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = run_bench(
            _args(
                shape="tiny",
                device="cpu",
                frames=FRAMES,
                repeats=REPEATS,
                warmup=1,
                decode_tokens=DECODE,
                methods=METHODS,
                json=str(out),
            )
        )
    assert code == 0
    with open(out) as fh:
        data = json.load(fh)
    data["_printed"] = printed.getvalue()
    return data


def _by_label(report):
    return {res["label"]: res for res in report["results"]}


def test_report_has_every_field(report):
    assert report["tool"] == "holitom bench"
    assert report["versions"]["torch"] == torch.__version__ and "transformers" in report["versions"]
    assert report["device"]["type"] == "cpu" and report["dtype"] == "float32"
    assert report["model"] | {"build_s": 0} == {
        "source": "random weights, shape tiny",
        "shape": "tiny",
        "layers": 4,
        "layers_full": 4,
        "vision_layers": 2,
        "vision_layers_full": 2,
        "hidden": 64,
        "ffn": 128,
        "vocab": 640,
        "frames": FRAMES,
        "tokens_per_frame": 196,
        "prompt_text_tokens": 38,
        "build_s": 0,
    }
    assert report["settings"] == {
        "repeats": REPEATS,
        "warmup": 1,
        "decode_tokens": DECODE,
        "seed": 0,
        "methods": METHODS,
    }
    assert list(_by_label(report)) == [
        "vanilla",
        "holitom ρ=0.10 K=2 r=0.5",
        "holitom w/o M ρ=0.10",
        "visionzip ρ=0.10",
        "fastv K=2 R=0.5",
    ]
    for res in report["results"]:
        assert set(res) == {
            "label",
            "method",
            "settings",
            "spec",
            "tokens",
            "token_counts_stable",
            "timings_ms",
            "decode_tokens_per_s",
            "peak_memory_mib",
            "runs_ms",
            "flops",
            "compression_overhead_ms",
            "speedup",
        }
        assert res["token_counts_stable"] and res["peak_memory_mib"] is None  # no CUDA here
        assert set(res["speedup"]) == {"ttft", "prefill", "decode", "flops"}
        assert res["label"] in report["_printed"]
    assert (
        report["targets"]["label"] == "holitom ρ=0.10 K=2 r=0.5"
        and report["targets"]["paper_setting"] is False
    )


def test_token_counts_match_hand_counts(report):
    res = _by_label(report)
    n = FRAMES * 196 + 1  # frames × 14×14 pooled + one newline (OneVision layout)
    assert res["vanilla"]["tokens"] == {
        "pooled": FRAMES * 196,
        "llm_input": n,
        "after_inner": n,
        "inner_layer": None,
        "schedule": [[0, n]],
        "sequence": n + 38,
    }
    assert res["visionzip ρ=0.10"]["tokens"]["llm_input"] == FRAMES * math.ceil(196 * 0.10) + 1
    fastv = res["fastv K=2 R=0.5"]["tokens"]
    assert (fastv["llm_input"], fastv["after_inner"], fastv["inner_layer"]) == (
        n,
        drop_keep_count(n, 0.5),
        2,
    )
    merged, plain = res["holitom ρ=0.10 K=2 r=0.5"]["tokens"], res["holitom w/o M ρ=0.10"]["tokens"]
    assert merged["llm_input"] == plain["llm_input"] < n // 5  # same outer merge, ~ρ of the tokens
    assert merged["after_inner"] == merge_keep_count(merged["llm_input"], 0.5) and merged["inner_layer"] == 2
    assert merged["schedule"] == [[0, merged["llm_input"]], [2, merged["after_inner"]]]
    assert plain["after_inner"] == plain["llm_input"] and plain["inner_layer"] is None


def test_token_counts_match_an_uninstrumented_run_of_each_method(report):
    """The bench's timing wrappers do not change what the methods produce."""
    model = build_random_model("tiny", seed=0)
    ids, frames = synthetic_prompt(model.config.vocab_size, seed=0), synthetic_frames(FRAMES, seed=0)
    for res in report["results"]:
        apply_method(model, res["method"], **res["settings"])
        with torch.no_grad():
            model(input_ids=ids, images=[frames], modalities=["video"])
        stats = holitom.stats(model)
        assert stats.visual_tokens == res["tokens"]["llm_input"], res["label"]
        assert stats.visual_after == res["tokens"]["after_inner"], res["label"]
        remove(model)


def test_ratios_and_flops_come_from_the_same_run(report):
    vanilla = report["results"][0]
    assert vanilla["method"] == "vanilla" and vanilla["speedup"] == {
        "ttft": 1.0,
        "prefill": 1.0,
        "decode": 1.0,
        "flops": 1.0,
    }
    shape = get_shape(shape_config("tiny").to_dict())
    for res in report["results"]:
        t, base = res["timings_ms"], vanilla["timings_ms"]
        assert res["speedup"]["ttft"] == pytest.approx(base["ttft_ms"] / t["ttft_ms"], rel=1e-12)
        assert res["speedup"]["prefill"] == pytest.approx(base["prefill_ms"] / t["prefill_ms"], rel=1e-12)
        assert res["speedup"]["decode"] == pytest.approx(
            res["decode_tokens_per_s"] / vanilla["decode_tokens_per_s"], rel=1e-12
        )
        assert res["compression_overhead_ms"] == pytest.approx(t["compression_ms"] - base["compression_ms"])
        tok = res["tokens"]
        inner = tok["inner_layer"]
        steps = ((0, tok["llm_input"]),) + (((inner, tok["after_inner"]),) if inner else ())
        flops = schedule_flops(shape, steps)
        assert res["flops"]["actual_tflops"] == pytest.approx(flops / 1e12, rel=1e-12)
        assert res["speedup"]["flops"] == pytest.approx(vanilla["flops"]["actual_tflops"] / (flops / 1e12))
        assert res["flops"]["actual_percent_of_vanilla"] == pytest.approx(100 / res["speedup"]["flops"])
    # the paper accounting for the settings: F·ceil(N·ρ) in, n − round(n·r) after K
    assert _by_label(report)["holitom ρ=0.10 K=2 r=0.5"]["flops"]["paper_visual_tokens"] == [
        FRAMES * 20,  # ceil(196 · 0.10) per frame
        FRAMES * 10,
    ]
    assert _by_label(report)["fastv K=2 R=0.5"]["flops"]["paper_visual_tokens"] == [FRAMES * 196, FRAMES * 98]


def test_timings_add_up_and_are_medians_of_the_runs(report):
    for res in report["results"]:
        t, runs = res["timings_ms"], res["runs_ms"]
        assert all(len(values) == REPEATS for values in runs.values())
        for key, value in t.items():
            assert value == pytest.approx(statistics.median(runs[key]))
        for i in range(REPEATS):
            parts = runs["vision_ms"][i] + runs["compression_ms"][i] + runs["prefill_ms"][i]
            assert runs["ttft_ms"][i] == pytest.approx(parts)
            assert runs["compression_ms"][i] == pytest.approx(runs["compressor_ms"][i] + runs["probe_ms"][i])
            assert runs["vision_ms"][i] > 0 and runs["prefill_ms"][i] > 0 and runs["decode_ms"][i] > 0
            # the SigLIP attention probe exists only for the methods that score tokens before the LLM
            assert (runs["probe_ms"][i] > 0) == (res["method"] in ("holitom", "visionzip"))
        assert res["decode_tokens_per_s"] == pytest.approx(DECODE / (t["decode_ms"] / 1e3))


def test_bench_leaves_the_model_vanilla():
    model = build_random_model("tiny", seed=1)
    ids, frames = synthetic_prompt(model.config.vocab_size, seed=1), synthetic_frames(2, seed=1)
    with torch.no_grad():
        before = model(input_ids=ids, images=[frames], modalities=["video"]).logits
    specs = parse_methods("holitom@0.2:K=2,visionzip@0.2,fastv", 4)
    results = bench_methods(model, ids, frames, specs, repeats=1, warmup=0, decode_tokens=0)
    assert [r["label"] for r in results] == [s.label for s in specs]
    assert all(r["decode_tokens_per_s"] is None for r in results)  # prefill only
    assert installed(model) is None and "video_token_compressor" not in model.__dict__
    assert not model.get_vision_tower().encoder_layers[-1]._forward_pre_hooks
    assert not any(layer._forward_pre_hooks for layer in model.get_model().layers)
    with torch.no_grad():
        after = model(input_ids=ids, images=[frames], modalities=["video"]).logits
    assert torch.equal(before, after)


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"repeats": 0}, "--repeats=0: must be an integer ≥ 1"),
        ({"warmup": -1}, "--warmup=-1"),
        ({"decode_tokens": -2}, "--decode-tokens=-2"),
        ({"frames": 0}, "--frames=0"),
        ({"threads": 0}, "--threads=0"),
        ({"layers": 5}, r"--layers=5: must be an integer in \[1, 4\] for --shape tiny"),
        ({"vision_layers": 3}, r"--vision-layers=3: must be an integer in \[1, 2\]"),
        ({"model": "/nowhere/ckpt"}, "--model='/nowhere/ckpt' and --shape='tiny': give one of them"),
        ({"device": "tpu"}, "--device='tpu'"),
        ({"dtype": "int8"}, "--dtype='int8'"),
        ({"json": "/nowhere/at/all/out.json"}, "--json='/nowhere/at/all/out.json'"),
        ({"methods": "holitom:K=4"}, "--methods item 'holitom:K=4'"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(overrides, message):
    with pytest.raises(ValueError, match=message):
        run_bench(_args(**({"shape": "tiny", "device": "cpu"} | overrides)))


def test_layers_do_not_apply_to_a_checkpoint():
    with pytest.raises(ValueError, match="--layers/--vision-layers"):
        run_bench(_args(model="/nowhere/ckpt", device="cpu", layers=2))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="--device='cuda': CUDA is not available"):
        run_bench(_args(shape="tiny", device="cuda"))


def test_cli_routes_bench_and_reports_errors(capsys):
    from holitom.cli import main

    code = main(["bench", "--shape", "tiny", "--device", "cpu", "--methods", "holitom@2"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("holitom bench: error: --methods item 'holitom@2'") and "retain_ratio=2.0" in err
