"""The `holitom_llava` lmms-eval model: model-arg validation, registration, and its requests run directly on a
tiny checkpoint (no lmms-eval CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "eval"))  # holitom_eval from the source tree (also fine when installed)

from holitom_eval.settings import (  # noqa: E402
    METHODS,
    VALID_ARGS,
    format_model_args,
    parse_model_args,
)

# ---------------------------------------------------------------------------------------------- settings


def test_unknown_model_arg_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        parse_model_args({"pretrained": "x", "method": "holitom", "retain_ration": 0.1})
    msg = str(err.value)
    assert "unknown model_args ['retain_ration']" in msg
    for name in (
        "retain_ratio",
        "tau",
        "merge_layer",
        "merge_ratio",
        "max_frames_num",
        "conv_template",
        "fastv_keep",
    ):
        assert name in msg


def test_unknown_method_lists_the_methods():
    with pytest.raises(
        ValueError,
        match=r"method='holitm': unknown method; valid methods: vanilla, holitom, visionzip, fastv, pdrop",
    ):
        parse_model_args({"method": "holitm"})
    from holitom import methods

    assert METHODS == methods.METHODS  # the registry's, in registration order


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (
            {"method": "vanilla", "retain_ratio": 0.1},
            r"\['retain_ratio'\] do not apply to method 'vanilla' \(it takes: no settings\)",
        ),
        (
            {"method": "visionzip", "tau": 0.8},
            r"\['tau'\] do not apply to method 'visionzip' \(it takes: retain_ratio, contextual_share\)",
        ),
        ({"method": "fastv", "merge_layer": 2}, r"\['merge_layer'\] do not apply to method 'fastv'"),
        ({"method": "holitom", "retain_ratio": 1.5}, r"retain_ratio=1.5: must be in \(0, 1\]"),
        ({"method": "holitom", "merge_ratio": 1.0}, r"merge_ratio=1.0: must be in \[0, 1\)"),
        ({"method": "holitom", "merge_layer": "deep"}, r"merge_layer='deep': must be an integer"),
        (
            {"method": "holitom", "inner_update": "max"},
            r"inner_update='max': valid values are sequential, mean",
        ),
        ({"method": "visionzip", "retain_ratio": 0.0}, r"retain_ratio=0.0: must be in \(0, 1\]"),
        ({"method": "fastv", "fastv_keep": 1.2}, r"fastv_keep=1.2: must be in \(0, 1\]"),
        ({"method": "fastv", "fastv_layer": 0}, r"fastv_layer=0: must be an integer ≥ 1"),
        ({"batch_size": 4}, r"batch_size=4: holitom_llava evaluates one sample at a time"),
        ({"batch_size": "auto"}, r"batch_size='auto'"),
        ({"max_frames_num": 0}, r"max_frames_num=0: must be an integer ≥ 1"),
        (
            {"mm_spatial_pool_mode": "mean"},
            r"mm_spatial_pool_mode='mean': valid values are bilinear, average, max",
        ),
        (
            {"mm_newline_position": "row"},
            r"mm_newline_position='row': valid values are one_token, grid, frame, no_token",
        ),
        ({"torch_dtype": "fp16"}, r"torch_dtype='fp16': valid values are float16, bfloat16, float32, auto"),
        ({"video_backend": "pyav", "video_decode_backend": "decord"}, r"disagree"),
    ],
)
def test_bad_values_name_the_argument(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_model_args(args)


def test_values_are_typed_like_the_method_expects():
    s = parse_model_args(
        {
            "pretrained": "/ckpt",
            "method": "holitom",
            "retain_ratio": 1,
            "tau": "0.65",
            "merge_layer": "none",
            "knn": 5.0,
            "max_frames_num": "16",
            "mm_spatial_pool_mode": "average",
            "mm_spatial_pool_stride": 2,
            "batch_size": "1",
            "max_batch_size": None,
            "device": "cpu",
            "video_decode_backend": "pyav",
        }
    )
    assert s.method_settings == {"retain_ratio": 1.0, "tau": 0.65, "merge_layer": None, "knn": 5}
    assert isinstance(s.method_settings["knn"], int) and s.max_frames_num == 16
    assert s.overwrite_config == {"mm_spatial_pool_mode": "average", "mm_spatial_pool_stride": 2}
    assert (s.pretrained, s.device, s.video_backend, s.conv_template) == ("/ckpt", "cpu", "pyav", "qwen_1_5")
    assert s.method_config().merge_layer is None and s.method_config().beta == 0.6  # defaults filled in
    assert parse_model_args({"method": "holitom", "merge_layer": 18.0}).method_settings == {"merge_layer": 18}
    assert parse_model_args({}).method == "vanilla" and parse_model_args({}).method_config() is None


def test_format_model_args_round_trips_through_lmms_evals_parser():
    from lmms_eval.utils import simple_parse_args_string

    args = {
        "pretrained": "/a/b",
        "method": "holitom",
        "retain_ratio": 0.15,
        "tau": 0.8,
        "merge_layer": None,
        "max_frames_num": 32,
        "stats_dir": "/out/run",
    }
    text = format_model_args(args)
    assert (
        text
        == "pretrained=/a/b,method=holitom,retain_ratio=0.15,tau=0.8,merge_layer=none,max_frames_num=32,stats_dir=/out/run"
    )
    assert parse_model_args(simple_parse_args_string(text)) == parse_model_args(args)
    with pytest.raises(ValueError, match="cannot contain"):
        format_model_args({"pretrained": "a,b"})


# ---------------------------------------------------------------------------------------------- registration


def test_entry_point_manifest_resolves_to_the_model_class():
    import holitom_eval
    from lmms_eval.models.registry_v2 import ModelRegistryV2

    manifest = holitom_eval.manifest()
    assert (manifest.model_id, manifest.simple_class_path) == (
        "holitom_llava",
        "holitom_eval.models.holitom_llava.HoliTomLlava",
    )
    registry = ModelRegistryV2()
    registry.register_manifest(manifest)
    cls = registry.get_model_class("holitom_llava")
    assert cls.__name__ == "HoliTomLlava" and cls.is_simple


@pytest.mark.slow
def test_lmms_eval_finds_the_model_through_the_plugin_variable():
    # How the runner registers the model from a source checkout (no pip install): LMMS_EVAL_PLUGINS.
    env = dict(
        os.environ,
        LMMS_EVAL_PLUGINS="holitom_eval",
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "eval")]),
    )
    code = "from lmms_eval.models import get_model; c = get_model('holitom_llava'); print(c.__module__, c.__name__)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "holitom_eval.models.holitom_llava HoliTomLlava"


def test_every_valid_arg_is_documented():
    from holitom_eval.settings import GENERAL_ARGS, METHOD_ARG_NAMES

    assert set(VALID_ARGS) == set(GENERAL_ARGS) | set(METHOD_ARG_NAMES)


# ---------------------------------------------------------------------------------------------- the model


def _video(tmp_path: Path, name: str = "clip.mp4") -> str:
    from holitom.tools.synthetic import write_synthetic_video

    path = tmp_path / name
    write_synthetic_video(path, num_frames=12, size=(96, 64), seed=3)
    return str(path)


def _model(tiny_ov: str, **args):
    from holitom_eval.models.holitom_llava import HoliTomLlava

    args = {"pretrained": tiny_ov, "device": "cpu", "max_frames_num": 4, **args}
    return HoliTomLlava.create_from_arg_string(format_model_args(args), {"batch_size": 1, "device": None})


def _request(kind: str, args: tuple):
    from lmms_eval.api.instance import Instance

    task, doc_id = args[4], args[3]
    return Instance(
        request_type=kind, arguments=args, idx=0, metadata={"task": task, "doc_id": doc_id, "repeats": 1}
    )


def test_generate_records_tokens_and_flops(tiny_ov, tmp_path):
    import holitom
    from holitom.flops import schedule_flops

    video = _video(tmp_path)
    stats = tmp_path / "stats"
    lm = _model(
        tiny_ov, method="holitom", retain_ratio=0.25, merge_layer=2, merge_ratio=0.5, stats_dir=str(stats)
    )
    assert (lm.rank, lm.world_size, lm.batch_size) == (0, 1, 1)
    lm.task_dict = {"t": {"test": [{"video": video}]}}
    gen = {"max_new_tokens": 5, "temperature": 0, "do_sample": False, "until": ["\n\n"]}
    (out,) = lm.generate_until(
        [_request("generate_until", ("Describe it.", gen, lambda d: [d["video"]], 0, "t", "test"))]
    )
    assert isinstance(out.text, str)
    assert 1 <= out.token_counts.output_tokens <= 5

    (record,) = [
        json.loads(line) for line in (stats / "holitom_samples_rank0.jsonl").read_text().splitlines()
    ]
    stats_now = holitom.stats(lm.model)
    assert record["visual_tokens"] == stats_now.visual_tokens and record["pooled_tokens"] == 4 * 196
    assert record["visual_tokens"] < 4 * 196  # outer merging ran
    assert record["inner_layer"] == 2 and record["visual_kept"] == stats_now.visual_after
    assert record["stages"] == [{"layer": 2, "visual_in": record["visual_tokens"], "visual_kept": record["visual_kept"]}]
    assert record["visual_kept"] < record["visual_tokens"]
    assert record["prompt_tokens"] == out.token_counts.input_tokens == lm.model.sequence_state.prompt_lengths[0]
    schedule = ((0, record["visual_tokens"]), (2, record["visual_kept"]))
    assert record["tflops"] == pytest.approx(schedule_flops(lm.shape, schedule) / 1e12)

    run = json.loads((stats / "holitom_run.json").read_text())
    assert run["method"] == "holitom" and run["method_config"]["merge_layer"] == 2
    # Paper-style count for the tiny model: 4 frames × ceil(196·0.25) = 196 tokens, halved from layer 2 on.
    assert run["paper_flops"]["n_visual_in"] == 196 and run["paper_flops"]["n_visual_after"] == 98


def test_vanilla_records_the_full_layout_and_no_inner_reduction(tiny_ov, tmp_path):
    video = _video(tmp_path)
    lm = _model(tiny_ov, stats_dir=str(tmp_path / "s"))
    lm.task_dict = {"t": {"test": [{"video": video}]}}
    lm.generate_until(
        [_request("generate_until", ("Q?", {"max_new_tokens": 2}, lambda d: [d["video"]], 0, "t", "test"))]
    )
    (record,) = [
        json.loads(line) for line in (tmp_path / "s" / "holitom_samples_rank0.jsonl").read_text().splitlines()
    ]
    assert (record["visual_tokens"], record["visual_kept"], record["inner_layer"]) == (
        4 * 196 + 1,
        None,
        None,
    )


def test_loglikelihood_is_the_sum_of_continuation_logprobs(tiny_ov, tmp_path):
    video = _video(tmp_path)
    lm = _model(tiny_ov)
    lm.task_dict = {"t": {"test": [{"video": video}]}}
    visual = lambda d: [d["video"]]  # noqa: E731
    pixels, _ = lm._visual_inputs([video], "t", 0)
    prompt = lm._inputs("Which option?", pixels, ["video"])["input_ids"]
    with torch.no_grad():
        next_id = int(lm.model(input_ids=prompt, images=pixels, modalities=["video"]).logits[0, -1].argmax())
    greedy_text = lm.tokenizer.decode([next_id])
    assert lm.tokenizer.encode(greedy_text, add_special_tokens=False) == [next_id]

    continuation = " The answer is B"
    (logprob, greedy), (logprob_g, greedy_g) = lm.loglikelihood(
        [
            _request("loglikelihood", ("Which option?", continuation, visual, 0, "t", "test")),
            _request("loglikelihood", ("Which option?", greedy_text, visual, 0, "t", "test")),
        ]
    )
    cont = torch.tensor([lm.tokenizer.encode(continuation, add_special_tokens=False)])
    with torch.no_grad():
        logits = lm.model(input_ids=torch.cat([prompt, cont], 1), images=pixels, modalities=["video"]).logits[
            0
        ]
    n = cont.shape[1]
    expected = torch.log_softmax(logits[-n - 1 : -1].float(), -1).gather(-1, cont[0][:, None]).sum()
    assert logprob == pytest.approx(float(expected), rel=1e-4) and logprob < 0
    assert greedy_g is True and logprob_g < 0


def test_missing_video_names_the_path_lmms_eval_built(tiny_ov, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    lm = _model(tiny_ov)
    missing = str(tmp_path / "hf" / "mvbench_video" / "star" / "Charades_segment" / "nope.mp4")
    lm.task_dict = {"mvbench_action_sequence": {"train": [{"video": "nope.mp4"}]}}
    req = _request(
        "generate_until",
        ("Q", {"max_new_tokens": 2}, lambda d: [missing], 0, "mvbench_action_sequence", "train"),
    )
    from holitom_eval.models.holitom_llava import MissingVideo

    with pytest.raises(MissingVideo) as err:  # a SystemExit: lmms-eval cannot swallow it and exit 0
        lm.generate_until([req])
    text = str(err.value.code)
    assert missing in text and f"HF_HOME={tmp_path / 'hf'}" in text and "'mvbench_action_sequence', doc 0" in text


def test_task_utils_that_exit_on_a_missing_video_become_an_error(tiny_ov):
    lm = _model(tiny_ov)
    lm.task_dict = {"egoschema": {"test": [{}]}}

    def exits(doc):
        sys.exit("video path:/data/egoschema/videos/x.mp4 does not exist, please check")

    from holitom_eval.models.holitom_llava import MissingVideo

    with pytest.raises(MissingVideo) as err:
        lm.generate_until([_request("generate_until", ("Q", {}, exits, 0, "egoschema", "test"))])
    assert "'egoschema', doc 0: video path:/data/egoschema/videos/x.mp4 does not exist" in str(err.value.code)


def test_model_level_errors(tiny_ov):
    from holitom_eval.models.holitom_llava import HoliTomLlava

    with pytest.raises(ValueError, match=r"conv_template='qwen2': valid templates are \[.*'qwen_1_5'"):
        _model(tiny_ov, conv_template="qwen2")
    with pytest.raises(ValueError, match=r"batch_size=4"):
        HoliTomLlava.create_from_arg_string(f"pretrained={tiny_ov},device=cpu", {"batch_size": 4})
    with pytest.raises(ValueError, match=r"unknown model_args \['frames'\]"):
        HoliTomLlava.create_from_arg_string(f"pretrained={tiny_ov},frames=8", {})


def test_generation_kwargs_and_stop_strings():
    from holitom_eval.models.holitom_llava import _cut_at_stop, _generation_kwargs

    kwargs, until = _generation_kwargs(
        {"max_new_tokens": 16, "temperature": 0, "top_p": 1.0, "until": ["\n\n", ""]}
    )
    assert kwargs == {"max_new_tokens": 16, "do_sample": False, "num_beams": 1} and until == ["\n\n"]
    kwargs, until = _generation_kwargs({"do_sample": True, "temperature": 0.2, "until": "END"})
    assert kwargs["temperature"] == 0.2 and kwargs["max_new_tokens"] == 1024 and until == ["END"]
    assert _cut_at_stop("A. yes\n\nmore END x", ["END", "\n\n"]) == "A. yes"
    assert _cut_at_stop("no stop", ["END"]) == "no stop"
