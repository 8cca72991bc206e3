"""The front ends on Qwen2.5-VL: `holitom generate` and the lmms-eval plugin route a checkpoint by its model_type
"qwen2_5_vl" to transformers' model with the host, `holitom flops` counts Qwen videos by resolution, and Qwen
models take the methods' own defaults (never OneVision's paper presets, although the 7B LMs have the same sizes).

The tiny checkpoint (`holitom make-tiny --kind qwen2.5-vl`) bounds frames to [56², 112²] px: a 96×64 video is
resized to 84×56, a grid of 6×4 patches, 3×2 = 6 LM tokens per temporal patch (two frames)."""

from __future__ import annotations

import argparse
import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

import holitom

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory) -> str:
    from holitom.tools.tiny import make_tiny

    return make_tiny(str(tmp_path_factory.mktemp("tiny_qwen_front")), kind="qwen2.5-vl")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    from holitom.tools.synthetic import write_synthetic_video

    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_synthetic_video(path, num_frames=16, size=(96, 64), seed=1, kind="scene_change")
    return str(path)


def generate(model: str, video: str, *extra: str) -> list[str]:
    from holitom.cli import main

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(["generate", "--model", model, "--video", video, "--frames", "8", "--max-new-tokens", "3", *extra])
    assert code == 0
    return buffer.getvalue().splitlines()


# ---------------------------------------------------------------------------------------------- generate


def test_generate_routes_qwen_checkpoints_and_prints_counts(tiny_qwen, video):
    vanilla = generate(tiny_qwen, video)
    assert vanilla[1].endswith("(transformers Qwen2_5_VLForConditionalGeneration)")
    # 8 frames → 4 temporal patches × 6 tokens, all entering the LLM
    assert "visual tokens: pooled 24 → entering the LLM 24" in vanilla
    assert not any("vision-attention probe" in line for line in vanilla)  # vanilla installs no probe
    prompt = next(line for line in vanilla if line.startswith("prompt tokens"))
    reduced = generate(tiny_qwen, video, "--method", "holitom", "--retain-ratio", "0.5", "--merge-layer", "2")
    # F·ceil(N·ρ) = 4·3 = 12 enter the LLM; r = 0.5 merges 6 of them away before layer 2
    assert "visual tokens: pooled 24 → entering the LLM 12 → surviving layer 2: 6" in reduced
    short = next(line for line in reduced if line.startswith("prompt tokens"))
    length = int(prompt.split(": ")[1].split(";")[0])
    assert short.startswith(f"prompt tokens (spliced): {length - 12};")  # the 12 removed placeholders
    (timings,) = [line for line in reduced if line.startswith("timings:")]
    assert ", of which vision-attention probe " in timings


def test_generate_gives_the_model_qwens_own_inputs(tiny_qwen, video):
    """The inputs built for the model: the chat template's prompt with t·h·w/4 placeholders, the grid, the
    sampled frames' rate as second_per_grid_ts (16 frames at the synthetic video's rate, 8 sampled)."""
    from transformers import AutoConfig, AutoTokenizer

    from holitom.hosts import qwen2_5_vl_io
    from llava.video import load_video

    config = AutoConfig.from_pretrained(tiny_qwen)
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen)
    assert qwen2_5_vl_io.pixel_bounds(tiny_qwen) == (56 * 56, 112 * 112)
    frames, info = load_video(video, 8)
    prompt = qwen2_5_vl_io.video_prompt(tokenizer, qwen2_5_vl_io.chat_template(tiny_qwen, tokenizer), "Why?")
    assert prompt.count("<|vision_start|><|video_pad|><|vision_end|>") == 1 and prompt.endswith("<|im_start|>assistant\n")
    fps = qwen2_5_vl_io.sampled_fps(info, len(frames))
    inputs = qwen2_5_vl_io.video_inputs(tokenizer, config, prompt, frames, (56 * 56, 112 * 112), fps)
    assert inputs["video_grid_thw"].tolist() == [[4, 4, 6]]
    assert inputs["pixel_values_videos"].shape == (4 * 4 * 6, 3 * 2 * 14 * 14)
    assert int((inputs["input_ids"] == config.video_token_id).sum()) == 24
    assert torch.equal(inputs["mm_token_type_ids"], 2 * (inputs["input_ids"] == config.video_token_id).int())
    assert inputs["second_per_grid_ts"].item() == pytest.approx(2 * info["duration"] / 8)


def test_generate_bad_input_is_one_line(tiny_qwen, video, capsys):
    from holitom.cli import main

    assert main(["generate", "--model", tiny_qwen, "--video", video, "--pool-mode", "average"]) != 0
    err = capsys.readouterr().err
    assert err.strip() == "holitom generate: error: --pool-mode: Qwen2.5-VL merges 2×2 patches"
    assert main(["generate", "--model", tiny_qwen, "--video", video, "--method", "holitom", "--merge-layer", "9"]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "merge_layer=9 is beyond this 4-layer LM" in err


# ---------------------------------------------------------------------------------------------- plugin


def test_eval_plugin_routes_qwen_checkpoints(tiny_qwen, video, tmp_path):
    from holitom_eval.models.holitom_llava import HoliTomLlava
    from holitom_eval.settings import format_model_args
    from lmms_eval.api.instance import Instance

    args = {"pretrained": tiny_qwen, "device": "cpu", "max_frames_num": 8, "method": "holitom", "retain_ratio": 0.5,
            "merge_layer": 2, "stats_dir": str(tmp_path / "stats")}  # fmt: skip
    lm = HoliTomLlava.create_from_arg_string(format_model_args(args), {"batch_size": 1, "device": None})
    lm.task_dict = {"t": {"test": [{"video": video}]}}
    request = Instance(
        request_type="generate_until",
        arguments=("<image>\nDescribe it.", {"max_new_tokens": 3}, lambda d: [d["video"]], 0, "t", "test"),
        idx=0,
        metadata={"task": "t", "doc_id": 0, "repeats": 1},
    )
    (out,) = lm.generate_until([request])
    assert 1 <= out.token_counts.output_tokens <= 3
    (record,) = [json.loads(line) for line in (tmp_path / "stats" / "holitom_samples_rank0.jsonl").read_text().splitlines()]
    assert (record["pooled_tokens"], record["visual_tokens"], record["visual_kept"]) == (24, 12, 6)
    assert record["inner_layer"] == 2
    assert (lm.shape.frames, lm.shape.tokens_per_frame, lm.shape.num_layers) == (4, 6, 4)  # from the first video
    run = json.loads((tmp_path / "stats" / "holitom_run.json").read_text())
    assert run["shape"]["tokens_per_frame"] == 6 and run["paper_flops"]["schedule"] == [[0, 12], [2, 6]]
    assert run["paper_flops"]["video"].startswith("8 frames of 64×96 px (the first video) → 4 temporal patches of 2×3")
    loglik = Instance(
        request_type="loglikelihood",
        arguments=("Which option?", " B", lambda d: [d["video"]], 0, "t", "test"),
        idx=0,
        metadata={"task": "t", "doc_id": 0, "repeats": 1},
    )
    ((logprob, _),) = lm.loglikelihood([loglik])
    assert logprob < 0 and holitom.stats(lm.model).visual_tokens == 12
    with pytest.raises(ValueError, match="fixed layout"):
        HoliTomLlava.create_from_arg_string(
            format_model_args({**args, "mm_spatial_pool_mode": "average"}), {"batch_size": 1, "device": None}
        )


# ---------------------------------------------------------------------------------------------- presets


def qwen_7b_config():
    from transformers import Qwen2_5_VLConfig

    text = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
            "num_key_value_heads": 4, "vocab_size": 152064}  # fmt: skip
    return Qwen2_5_VLConfig(text_config=text, vision_config={"depth": 2, "fullatt_block_indexes": [1]})


def test_qwen_models_match_their_own_shapes_not_onevision():
    from holitom.shapes import SHAPES, match_shape, newline_layout

    config = qwen_7b_config()
    assert (SHAPES["ov-7b"].hidden, SHAPES["ov-7b"].ffn, SHAPES["ov-7b"].num_layers) == (3584, 18944, 28)  # same LM
    assert newline_layout(config) == "no_token"
    assert match_shape(config) == match_shape(config.text_config, "no_token") == "qwen2.5-vl-7b"
    llava_7b = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28}
    assert match_shape(argparse.Namespace(**llava_7b)) == "ov-7b"  # the LLaVA config still matches OneVision


def test_qwen_models_take_the_methods_defaults_not_the_papers_presets():
    from holitom import methods

    config = qwen_7b_config()
    fastv = methods.config_for("fastv", {}, config)
    assert (fastv.fastv_layer, fastv.fastv_keep) == (2, 0.5)  # the paper's OV preset would be keep 0.2
    ov = methods.get("fastv").make_config({}, shape="ov-7b")
    assert ov.fastv_keep == 0.2
    holi = methods.config_for("holitom", {"retain_ratio": 0.1}, config)
    assert holi.tau == 0.8 and holi.merge_layer == 18  # OV-7B's paper preset at ρ 0.10 is τ 0.65


def test_apply_method_on_a_qwen_7b_model_uses_no_onevision_preset():
    from transformers import Qwen2_5_VLForConditionalGeneration

    from holitom.methods import model_context

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(qwen_7b_config())
    assert model_context(model)["shape"] == "qwen2.5-vl-7b"
    holitom.apply_method(model, "fastv")
    assert holitom.stats(model).settings == {"fastv_layer": 2, "fastv_keep": 0.5}
    holitom.remove(model)


# ---------------------------------------------------------------------------------------------- FLOPs


def layer(n: int, d: int = 3584, m: int = 18944) -> int:
    return 4 * n * d * d + 2 * n * n * d + 2 * n * d * m


def test_flops_count_temporal_patches_by_resolution():
    from holitom.flops import method_flops

    # 32 frames of 448×448: 16 temporal patches of (448/28)² = 256 tokens; 28 layers of 4096 tokens
    vanilla = method_flops("qwen2.5-vl-7b", frames=32, method="vanilla")
    assert vanilla.flops == 28 * layer(4096) == 24833500905472
    # HoliTom ρ 0.10: 16·ceil(25.6) = 416 tokens in layers 0..17, 416 − round(208) = 208 from K=18
    held = method_flops("qwen2.5-vl-7b", frames=32, method="holitom", retain_ratio=0.10)
    assert held.schedule == ((0, 416), (18, 208))
    assert held.flops == 18 * layer(416) + 10 * layer(208) == 1816279908352
    # 360×640 → smart_resize 364×644 (13×23 tokens); 31 frames → 16 temporal patches (the last frame repeated)
    wide = method_flops("qwen2.5-vl-7b", frames=31, method="vanilla", height=360, width=640)
    assert (wide.frames, wide.tokens_per_frame, wide.n_visual_in) == (16, 299, 4784)
    assert wide.video == "31 frames of 360×640 px → 16 temporal patches of 13×23 tokens (resized to 364×644)"
    # the 3B: 36 layers, d 2048, m 11008; 2 frames of 56×56 (below the 128·28² px minimum: resized up to 336×336)
    small = method_flops("qwen2.5-vl-3b", frames=2, method="vanilla", height=56, width=56)
    assert small.n_visual_in == 144 and small.flops == 36 * layer(144, 2048, 11008)


def test_flops_cli_on_qwen_and_bad_values(capsys):
    from holitom.cli import main

    assert main(["flops", "--model", "qwen2.5-vl-72b", "--frames", "32", "--method", "holitom", "--retain-ratio", "0.1",
                 "--merge-layer", "60"]) == 0  # fmt: skip
    out = capsys.readouterr().out.strip()
    assert out.startswith("qwen2.5-vl-72b holitom, 32 frames of 448×448 px → 16 temporal patches of 16×16 tokens")
    assert "visual tokens 4096 → 416 (→ 208 from layer 60)" in out
    assert main(["flops", "--model", "ov-7b", "--height", "300"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("holitom flops: error: height/width apply to the Qwen-VL shapes (qwen2.5-vl-3b, ")
    assert err.endswith(") only, not 'ov-7b'") and len(err.splitlines()) == 1
    assert main(["flops", "--model", "qwen2.5-vl-7b", "--width", "0"]) != 0
    assert capsys.readouterr().err.strip() == "holitom flops: error: width=0: must be an integer ≥ 1"
