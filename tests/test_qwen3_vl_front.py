"""The front ends on dense Qwen3-VL: `holitom generate` and the lmms-eval plugin route a checkpoint by its model_type
"qwen3_vl" to transformers' model with the Qwen3-VL host, with the prompt Qwen3-VL's processor writes (per temporal
patch `<t seconds><|vision_start|>` + its placeholders + `<|vision_end|>`, written by hand here); the MoE variant and
methods the host refuses give one line; `holitom flops` counts Qwen3-VL videos with the bounds on the whole video
and the real attention width.

The tiny checkpoint (`holitom make-tiny --kind qwen3-vl`) gets a video_preprocessor_config.json bounding a video to
[64², 8·64·96] px, so 8 frames of 64×96 keep their size: a grid of 4×6 16-px patches, 2×3 = 6 LM tokens per temporal
patch, 4 temporal patches."""

from __future__ import annotations

import io
import json
import shutil
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

import holitom

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))

BOUNDS = (64 * 64, 8 * 64 * 96)


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory) -> str:
    from holitom.tools.tiny import make_tiny

    path = make_tiny(str(tmp_path_factory.mktemp("tiny_qwen3_front")), kind="qwen3-vl")
    size = {"shortest_edge": BOUNDS[0], "longest_edge": BOUNDS[1]}
    (Path(path) / "video_preprocessor_config.json").write_text(json.dumps({"size": size, "patch_size": 16}))
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    from holitom.tools.synthetic import write_synthetic_video

    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_synthetic_video(path, num_frames=16, size=(96, 64), seed=1, kind="scene_change")  # 8 fps
    return str(path)


def generate(model: str, video: str, *extra: str) -> list[str]:
    from holitom.cli import main

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(["generate", "--model", model, "--video", video, "--frames", "8", "--max-new-tokens", "3", *extra])
    assert code == 0
    return buffer.getvalue().splitlines()


# ---------------------------------------------------------------------------------------------- inputs


def test_the_resize_rule_bounds_the_whole_video_as_transformers_does():
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

    from holitom.shapes import qwen3_smart_resize

    # by hand: 8·64·96 = 49152 > 128² → β = √3, sides ⌊64/√3/32⌋·32 → 32 (at least one factor), ⌊96/√3/32⌋·32 = 32
    assert qwen3_smart_resize(8, 64, 96, 32, 2, 64 * 64, 128 * 128) == (32, 32)
    # 32 frames of 448² within the published [4096, 768·32²·32]: unchanged; within the class default
    # [128·32², 768·32²]: β = √(32·448²/786432) ≈ 2.858, ⌊448/2.858/32⌋ = 4 → 128
    assert qwen3_smart_resize(32, 448, 448) == (448, 448)
    assert qwen3_smart_resize(32, 448, 448, 32, 2, 128 * 32 * 32, 768 * 32 * 32) == (128, 128)
    for frames, height, width, low, high in [
        (3, 64, 96, 4096, 2 * 64 * 96), (5, 480, 640, 4096, 25165824), (32, 720, 1280, 4096, 25165824),
        (64, 720, 1280, 4096, 25165824), (2, 20, 50, 4096, 25165824), (7, 360, 200, 131072, 786432),
    ]:  # fmt: skip
        assert qwen3_smart_resize(frames, height, width, 32, 2, low, high) == smart_resize(frames, height, width, 2, 32, low, high)
    with pytest.raises(ValueError, match="shorter than one temporal patch"):
        qwen3_smart_resize(1, 64, 96)


def test_pixel_bounds_are_read_as_the_video_processor_reads_them(tiny_qwen3, tmp_path):
    from holitom.hosts import qwen_vl_io

    assert qwen_vl_io.pixel_bounds(tiny_qwen3, qwen_vl_io.QWEN3_VL) == BOUNDS  # video_preprocessor_config.json
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 10, "longest_edge": 20},
                                                                   "min_pixels": 1, "max_pixels": 2}))  # fmt: skip
    assert qwen_vl_io.pixel_bounds(str(tmp_path), qwen_vl_io.QWEN3_VL) == (10, 20)  # Qwen3-VL reads `size` only
    assert qwen_vl_io.pixel_bounds(str(tmp_path), qwen_vl_io.QWEN2_5_VL) == (1, 2)
    (tmp_path / "preprocessor_config.json").unlink()
    assert qwen_vl_io.pixel_bounds(str(tmp_path), qwen_vl_io.QWEN3_VL) == (4096, 768 * 32 * 32 * 32)


def test_the_inputs_are_the_timestamped_prompt_written_by_hand(tiny_qwen3, video):
    from transformers import AutoConfig, AutoTokenizer

    from holitom.hosts import qwen_vl_io
    from holitom.hosts.qwen_vision import patchify_video
    from llava.video import load_video

    config = AutoConfig.from_pretrained(tiny_qwen3)
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3)
    frames, info = load_video(video, 8)
    assert list(info["indices"]) == [0, 2, 4, 6, 8, 10, 12, 15] and info["fps"] == 8
    prompt = qwen_vl_io.video_prompt(tokenizer, qwen_vl_io.chat_template(tiny_qwen3, tokenizer), "Why?")
    seconds = qwen_vl_io.frame_seconds(info)
    inputs = qwen_vl_io.video_inputs(tokenizer, config, prompt, frames, BOUNDS, None, seconds)
    # temporal patches' times: (0+2)/16 = 0.125, (4+6)/16 = 0.625, (8+10)/16 = 1.125, (12+15)/16 = 1.6875 s
    run = "<|vision_start|>" + "<|video_pad|>" * 6 + "<|vision_end|>"
    stamps = ["<0.1 seconds>", "<0.6 seconds>", "<1.1 seconds>", "<1.7 seconds>"]
    expected = prompt.replace("<|vision_start|><|video_pad|><|vision_end|>", "".join(s + run for s in stamps))
    assert expected.count("<|vision_start|>") == 4
    assert tokenizer.decode(inputs["input_ids"][0]) == expected
    assert torch.equal(inputs["input_ids"], tokenizer(expected, return_tensors="pt", add_special_tokens=False)["input_ids"])
    assert inputs["video_grid_thw"].tolist() == [[4, 4, 6]] and "second_per_grid_ts" not in inputs
    assert int((inputs["mm_token_type_ids"] == 2).sum()) == 24
    # mean = std = 0.5, no resize (64×96 is within the bounds)
    normalised = (torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    pixels, grid = patchify_video(normalised, patch=16)
    assert grid == [4, 4, 6] and torch.allclose(inputs["pixel_values_videos"], pixels, atol=1e-6)
    # bounds that shrink the video: the frames are resized to the per-video size first (32×32: one token a patch)
    small = qwen_vl_io.video_inputs(tokenizer, config, prompt, frames, (64 * 64, 128 * 128), None, seconds)
    assert small["video_grid_thw"].tolist() == [[4, 2, 2]] and small["pixel_values_videos"].shape[0] == 16


# ---------------------------------------------------------------------------------------------- generate


def test_generate_routes_qwen3_checkpoints_and_prints_counts(tiny_qwen3, video):
    vanilla = generate(tiny_qwen3, video)
    assert vanilla[1].endswith("(transformers Qwen3VLForConditionalGeneration)")
    assert "visual tokens: pooled 24 → entering the LLM 24" in vanilla  # 4 temporal patches × 6 tokens
    reduced = generate(tiny_qwen3, video, "--method", "holitom", "--retain-ratio", "0.5", "--merge-layer", "none")
    counts = next(line for line in reduced if line.startswith("visual tokens"))
    assert counts.startswith("visual tokens: pooled 24 → entering the LLM ") and not counts.endswith(" 24")
    assert any(line.startswith("holitom outer: ") for line in reduced)
    merged = generate(tiny_qwen3, video, "--method", "holitom", "--retain-ratio", "0.5", "--merge-layer", "2")
    assert any(line.startswith("visual tokens: pooled 24 → ") and "→ surviving layer 2: " in line for line in merged)


def test_generate_refusals_are_one_line(tiny_qwen3, video, tmp_path, capsys):
    from holitom.cli import main

    assert main(["generate", "--model", tiny_qwen3, "--video", video, "--pool-mode", "average"]) != 0
    assert capsys.readouterr().err.strip() == "holitom generate: error: --pool-mode: Qwen3-VL merges 2×2 patches"
    assert main(["generate", "--model", tiny_qwen3, "--video", video, "--frames", "8", "--method", "dycoke"]) != 0
    err = capsys.readouterr().err.strip()
    assert err == "holitom generate: error: dycoke supports the one_token layout, not 'no_token'"  # before loading
    # refused by the host at the first forward: VisionZip records no merge weights for the deepstack rows
    assert main(["generate", "--model", tiny_qwen3, "--video", video, "--frames", "8", "--method", "visionzip"]) != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # after the loading bar
    assert len(errors) == 1 and errors[0].startswith("holitom generate: error: the installed method records no merge")
    moe = tmp_path / "moe"
    shutil.copytree(tiny_qwen3, moe)
    config = json.loads((moe / "config.json").read_text())
    (moe / "config.json").write_text(json.dumps({**config, "model_type": "qwen3_vl_moe"}))
    assert main(["generate", "--model", str(moe), "--video", video]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a Qwen3-VL-MoE checkpoint; only the dense Qwen3-VL models" in err


# ---------------------------------------------------------------------------------------------- plugin


def test_eval_plugin_routes_qwen3_checkpoints(tiny_qwen3, video, tmp_path):
    from holitom_eval.models.holitom_llava import HoliTomLlava
    from holitom_eval.settings import format_model_args
    from lmms_eval.api.instance import Instance

    args = {"pretrained": tiny_qwen3, "device": "cpu", "max_frames_num": 8, "method": "holitom", "retain_ratio": 0.5,
            "merge_layer": None, "stats_dir": str(tmp_path / "stats")}  # fmt: skip
    lm = HoliTomLlava.create_from_arg_string(format_model_args(args), {"batch_size": 1, "device": None})
    assert type(lm.model).__name__ == "Qwen3VLForConditionalGeneration"
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
    assert record["pooled_tokens"] == 24 and 0 < record["visual_tokens"] < 24 and record["inner_layer"] is None
    assert (lm.shape.frames, lm.shape.tokens_per_frame, lm.shape.num_layers) == (4, 6, 4)  # from the first video
    run = json.loads((tmp_path / "stats" / "holitom_run.json").read_text())
    assert run["paper_flops"]["video"].startswith("8 frames of 64×96 px (the first video) → 4 temporal patches of 2×3")
    loglik = Instance(
        request_type="loglikelihood",
        arguments=("Which option?", " B", lambda d: [d["video"]], 0, "t", "test"),
        idx=0,
        metadata={"task": "t", "doc_id": 0, "repeats": 1},
    )
    ((logprob, _),) = lm.loglikelihood([loglik])
    assert logprob < 0 and holitom.stats(lm.model).visual_tokens == record["visual_tokens"]


# ---------------------------------------------------------------------------------------------- FLOPs


def layer(n: int, d: int, m: int, width: int) -> int:
    """One layer by hand with q/k/v/o counted `width` wide (the paper's 4nd² when width = d)."""
    return 4 * n * d * width + 2 * n * n * width + 2 * n * d * m


def test_flops_count_qwen3_videos_with_the_real_attention_width():
    from holitom.flops import method_flops

    # 8B (head_dim 128 · 32 heads = 4096 = d: the paper's formula); 32 frames of 448²: 16 × 14·14 = 3136 tokens
    eight = method_flops("qwen3-vl-8b", frames=32, method="vanilla")
    assert eight.n_visual_in == 3136 and eight.flops == 36 * layer(3136, 4096, 12288, 4096) == 36 * (
        4 * 3136 * 4096**2 + 2 * 3136**2 * 4096 + 2 * 3136 * 4096 * 12288
    )
    # 4B: d 2560 but q/o 32·128 = 4096 wide; HoliTom ρ 0.10 without M: 16·⌈19.6⌉ = 320 tokens
    four = method_flops("qwen3-vl-4b", frames=32, method="holitom", retain_ratio=0.10, merge_layer=None)
    assert four.schedule == ((0, 320),)
    assert four.flops == 36 * (4 * 320 * 2560 * 4096 + 2 * 320**2 * 4096 + 2 * 320 * 2560 * 9728) == 1_087_163_596_800
    # 32B: d 5120, q/o 64·128 = 8192; 32 frames of 720×1280: 32·704·1280 px > 25165824, β = √(32·720·1280/25165824)
    # ≈ 1.0825 → ⌊720/β/32⌋·32 = 640, ⌊1280/β/32⌋·32 = 1152: 20×36 = 720 tokens per temporal patch
    big = method_flops("qwen3-vl-32b", frames=32, method="vanilla", height=720, width=1280)
    assert (big.frames, big.tokens_per_frame) == (16, 720)
    assert big.flops == 64 * layer(16 * 720, 5120, 25600, 8192)
    two = method_flops("qwen3-vl-2b", frames=2, method="vanilla", height=64, width=64)
    assert two.n_visual_in == 4 and two.flops == 28 * layer(4, 2048, 6144, 2048)  # 2·64² ≥ 4096: 64² stays
    with pytest.raises(ValueError, match="shorter than one temporal patch"):
        method_flops("qwen3-vl-8b", frames=1, method="vanilla")


def test_flops_cli_on_qwen3(capsys):
    from holitom.cli import main

    assert main(["flops", "--model", "qwen3-vl-8b", "--frames", "32", "--method", "holitom", "--retain-ratio", "0.1",
                 "--merge-layer", "none"]) == 0  # fmt: skip
    out = capsys.readouterr().out.strip()
    assert out.startswith("qwen3-vl-8b holitom, 32 frames of 448×448 px → 16 temporal patches of 14×14 tokens")
    assert "visual tokens 3136 → 320" in out
