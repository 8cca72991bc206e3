"""The method registry: every registered method and every one of its settings is accepted by every
consumer (holitom generate / flops / bench, the lmms-eval plugin's model_args, sweep configs), and every
method installs on both host layouts, keeps everything under its identity settings, and removes cleanly."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch
from conftest import random_frames, tiny_value, video_prompt_ids

import holitom
from holitom import methods, paper
from holitom.flops import add_flops_arguments, method_flops, paper_method
from holitom.methods.arguments import method_settings_from_args, parse_method_item
from holitom.tools.generate import add_generate_arguments

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
from holitom_eval.plan import build_plan  # noqa: E402
from holitom_eval.settings import format_model_args, parse_model_args  # noqa: E402

ALL = methods.all_methods()
IDS = [m.name for m in ALL]


def test_registry_names_and_modules():
    assert methods.METHODS[0] == "vanilla" and set(methods.METHODS) >= {"vanilla", "holitom", "visionzip", "fastv"}
    for method in ALL:
        assert methods.get(method.name) is method and method.summary and method.acts
        assert method.layouts and set(method.layouts) <= {"one_token", "grid", "frame", "no_token"}
    with pytest.raises(ValueError, match="unknown method 'tome'; valid methods: vanilla"):
        methods.get("tome")


def test_a_setting_name_means_one_thing_everywhere():
    for name, owners in methods.all_settings().items():
        kinds = {(s.type, s.optional, s.sequence, s.choices) for _, s in owners}
        assert len(kinds) == 1, (name, owners)
        assert all(s.help for _, s in owners), name


@pytest.mark.parametrize("method", ALL, ids=IDS)
def test_every_consumer_takes_every_setting(method, tmp_path):
    defaults = {s.name: s.default for s in method.settings}
    # holitom generate and holitom flops: one flag per setting, parsed back to the typed default
    for add in (add_generate_arguments, add_flops_arguments):
        parser = argparse.ArgumentParser()
        add(parser)
        argv = ["--method", method.name] + [x for s in method.settings for x in (s.flag, s.format(s.default))]
        if add is add_generate_arguments:
            argv += ["--model", "m", "--video", "v"]
        assert method_settings_from_args(parser.parse_args(argv)) == defaults
    # holitom bench: NAME:KEY=VALUE items, by name and by short key
    for key_of in (lambda s: s.name, lambda s: s.short or s.name):
        item = ":".join([method.name] + [f"{key_of(s)}={s.format(s.default)}" for s in method.settings])
        spec, given = parse_method_item(item)
        assert spec is method and given == defaults
    # lmms-eval model_args, as lmms-eval's own parser hands them over (text values)
    text = format_model_args({"method": method.name, **defaults})
    parsed = parse_model_args(dict(part.split("=", 1) for part in text.split(",")))
    assert parsed.method == method.name and parsed.method_settings == defaults
    # sweep configs: a run with every setting in YAML form
    plan = build_plan({"name": "x", "model": "m", "tasks": ["t"], "runs": [{"name": "r", "method": method.name, **defaults}]})
    assert plan.runs[0].error is None
    # FLOPs accounting at the defaults (the paper's values for OV-7B) on a published shape
    result = method_flops("ov-7b", method=method.name)
    assert result.schedule[0] == (0, result.n_visual_in) and 0 < result.tflops <= result.vanilla_tflops + 1e-9


@pytest.mark.parametrize("method", [m for m in ALL if m.name != "vanilla"], ids=IDS[1:])
@pytest.mark.parametrize("fixture", ["ov_model", "video_model"])
def test_every_method_keeps_everything_under_its_identity_settings_and_removes_cleanly(method, fixture, request):
    tokenizer, model, _, _ = request.getfixturevalue(fixture)
    layout = model.config.mm_newline_position
    if layout not in method.layouts:
        with pytest.raises(ValueError, match=f"{method.name} supports the .* layout, not '{layout}'"):
            holitom.apply_method(model, method.name)
        return
    ids, frames = video_prompt_ids(tokenizer), random_frames(4, seed=2)
    with torch.no_grad():
        vanilla = model(input_ids=ids, images=[frames], modalities=["video"]).logits
    siglip = request.getfixturevalue("tiny_siglip")
    settings = {s.name: tiny_value(s, s.default, siglip) for s in method.settings} | method.identity_settings
    holitom.apply_method(model, method.name, **settings)
    assert methods.installed(model).name == method.name
    with torch.no_grad():
        same = model(input_ids=ids, images=[frames], modalities=["video"]).logits
    assert torch.equal(same, vanilla)
    stats = holitom.stats(model)
    assert stats.method == method.name and stats.visual_after == stats.visual_tokens
    reduced = {s.name: tiny_value(s, s.default, siglip) for s in method.settings}
    holitom.apply_method(model, method.name, **reduced)
    with torch.no_grad():
        model(input_ids=ids, images=[frames], modalities=["video"])
    assert holitom.stats(model).visual_after < holitom.stats(model).pooled_tokens
    holitom.remove(model)
    assert methods.installed(model) is None and "video_token_compressor" not in model.__dict__
    assert not any(layer._forward_pre_hooks for layer in model.get_model().layers)
    assert not model.get_vision_tower().encoder_layers[-1]._forward_pre_hooks
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, images=[frames], modalities=["video"]).logits, vanilla)


def test_every_paper_row_label_has_a_method_or_is_listed_as_missing():
    labels = {row["method"] for row in paper.result_rows()}
    missing = {label for label in labels if paper_method(label) is None}
    assert not missing  # every Table 1 row has its method


def test_apply_takes_any_registered_config():
    from holitom.methods.fastv import FastVConfig

    assert methods.method_of_config(FastVConfig()).name == "fastv"
    assert methods.method_of_config(holitom.HoliTomConfig()).name == "holitom"
    with pytest.raises(TypeError, match="registered method config"):
        methods.method_of_config({"retain_ratio": 0.1})
