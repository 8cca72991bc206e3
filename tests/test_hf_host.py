"""The methods on transformers' own LLaVA-OneVision (`LlavaOnevisionForConditionalGeneration`, llava-hf).

The proof: with identical weights (our llava layout mapped onto transformers'), the same frames and the same
prompt, the transformers host and our `llava` model put the same visual tokens into the LM and give the same
logits and the same generated tokens, method by method; `holitom.remove` gives vanilla transformers back.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
from conftest import load, random_frames, tiny_value, video_prompt_ids

import holitom
from holitom.hosts import hf_onevision_io
from llava.constants import IMAGE_TOKEN_INDEX

FRAMES = 6


@pytest.fixture(scope="module")
def pair(tiny_ov):
    """(tokenizer, our llava model, transformers' model with the same weight tensors, video id)."""
    tokenizer, model, _, _ = load(tiny_ov)
    vocab = model.config.vocab_size
    hf = hf_onevision_io.to_hf_onevision(model, image_token_id=vocab - 2, video_token_id=vocab - 1)
    return tokenizer, model, hf, vocab - 1


@pytest.fixture(autouse=True)
def _vanilla_pair(pair):
    yield
    holitom.remove(pair[1])
    holitom.remove(pair[2])


def _inputs(tokenizer, video_id: int, frames: torch.Tensor):
    """The same prompt for both models: ours with IMAGE_TOKEN_INDEX, transformers' with F·196 + 1 video ids."""
    ids = video_prompt_ids(tokenizer)
    at = int((ids[0] == IMAGE_TOKEN_INDEX).nonzero())
    run = torch.full((1, frames.shape[0] * 196 + 1), video_id)
    return ids, torch.cat([ids[:, :at], run, ids[:, at + 1 :]], dim=1)


SETTINGS = [
    ("holitom", {"retain_ratio": 0.25, "merge_layer": 2, "merge_ratio": 0.5}),
    ("holitom", {"retain_ratio": 0.10, "merge_layer": 2, "merge_ratio": 0.5}),
    ("holitom", {"retain_ratio": 0.10, "merge_layer": 2, "reference_compat": True}),
    ("visionzip", {"retain_ratio": 0.10}),
    ("fastv", {"fastv_layer": 2, "fastv_keep": 0.2}),
    ("pdrop", {"pdrop_layers": (1, 2, 3), "pdrop_lambda": 0.5}),
    ("dycoke", {"dycoke_layer": 2}),
    ("prunevid", {"retain_ratio": 0.25}),
    ("fastvid", {"retain_ratio": 0.25}),  # with the tiny SigLIP's head
]


@pytest.mark.parametrize(("name", "settings"), SETTINGS, ids=lambda v: str(v))
def test_same_tokens_logits_and_generation_as_our_llava_model(pair, name, settings, tiny_siglip):
    tokenizer, model, hf, video_id = pair
    if name == "fastvid":
        settings = {**settings, "fastvid_siglip": tiny_siglip}
    frames = random_frames(FRAMES, seed=5)
    ids, hf_ids = _inputs(tokenizer, video_id, frames)
    holitom.apply_method(model, name, **settings)
    holitom.apply_method(hf, name, **settings)
    with torch.no_grad():
        ours = model(input_ids=ids, images=[frames], modalities=["video"]).logits
        ours_stats = holitom.stats(model)
        theirs = hf(input_ids=hf_ids, pixel_values_videos=frames[None]).logits
        theirs_stats = holitom.stats(hf)
    assert theirs_stats.as_dict() == ours_stats.as_dict()
    if name != "fastv" and name != "pdrop":
        assert theirs_stats.visual_tokens < FRAMES * 196  # the video was reduced before the LM
    assert ours.shape == theirs.shape
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)

    with torch.no_grad():
        ours_new = model.generate(ids, images=[frames], modalities=["video"], max_new_tokens=6, do_sample=False)
        out = hf.generate(input_ids=hf_ids, pixel_values_videos=frames[None], max_new_tokens=6, do_sample=False)
    assert torch.equal(out[:, : hf_ids.shape[1]], hf_ids)  # the caller's prompt, not the shortened one
    assert out[:, hf_ids.shape[1] :].tolist() == ours_new.tolist()
    assert holitom.stats(hf).as_dict() == holitom.stats(model).as_dict()


def test_remove_gives_vanilla_transformers_back_bit_exactly(pair, tiny_siglip):
    tokenizer, _, hf, video_id = pair
    frames = random_frames(FRAMES, seed=6)
    _, hf_ids = _inputs(tokenizer, video_id, frames)
    modules = [hf, *hf.model.language_model.layers, *hf.model.vision_tower.encoder.layers]

    def hooks():  # transformers keeps hooks of its own on some modules
        return [(dict(m._forward_pre_hooks), dict(m._forward_hooks)) for m in modules]

    before = hooks()
    with torch.no_grad():
        vanilla = hf(input_ids=hf_ids, pixel_values_videos=frames[None]).logits
        vanilla_new = hf.generate(input_ids=hf_ids, pixel_values_videos=frames[None], max_new_tokens=4, do_sample=False)
        for name, settings in SETTINGS:
            holitom.apply_method(hf, name, **settings, **({"fastvid_siglip": tiny_siglip} if name == "fastvid" else {}))
            assert "generate" in hf.__dict__ and hooks() != before
            holitom.remove(hf)
            assert "generate" not in hf.__dict__ and hooks() == before
            assert torch.equal(hf(input_ids=hf_ids, pixel_values_videos=frames[None]).logits, vanilla), name
        holitom.apply_method(hf, "vanilla")  # tracking only: the counts, nothing changed
        assert torch.equal(hf(input_ids=hf_ids, pixel_values_videos=frames[None]).logits, vanilla)
        assert holitom.stats(hf).visual_tokens == FRAMES * 196 + 1
        assert torch.equal(
            hf.generate(input_ids=hf_ids, pixel_values_videos=frames[None], max_new_tokens=4, do_sample=False),
            vanilla_new,
        )


def test_identity_settings_give_vanilla_logits(pair, tiny_siglip):
    from holitom import methods

    tokenizer, _, hf, video_id = pair
    frames = random_frames(FRAMES, seed=7)
    _, hf_ids = _inputs(tokenizer, video_id, frames)
    with torch.no_grad():
        vanilla = hf(input_ids=hf_ids, pixel_values_videos=frames[None]).logits
        for method in methods.all_methods():
            if not method.identity_settings or "one_token" not in method.layouts:
                continue
            settings = {s.name: tiny_value(s, s.default, tiny_siglip) for s in method.settings}
            holitom.apply_method(hf, method.name, **settings | method.identity_settings)
            logits = hf(input_ids=hf_ids, pixel_values_videos=frames[None]).logits
            assert torch.equal(logits, vanilla), method.name


def test_loss_scores_the_same_tokens_as_our_llava_model(pair):
    tokenizer, model, hf, video_id = pair
    frames = random_frames(FRAMES, seed=8)
    ids, hf_ids = _inputs(tokenizer, video_id, frames)
    labels, hf_labels = ids.clone(), hf_ids.clone()
    labels[ids == IMAGE_TOKEN_INDEX] = -100
    hf_labels[hf_ids == video_id] = -100
    for name, settings in [("holitom", SETTINGS[0][1]), ("fastv", SETTINGS[4][1])]:
        holitom.apply_method(model, name, **settings)
        holitom.apply_method(hf, name, **settings)
        with torch.no_grad():
            ours = model(input_ids=ids, images=[frames], modalities=["video"], labels=labels).loss
            theirs = hf(input_ids=hf_ids, pixel_values_videos=frames[None], labels=hf_labels).loss
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


def test_a_batch_of_videos_is_compressed_row_by_row(pair):
    tokenizer, _, hf, video_id = pair
    videos = [random_frames(FRAMES, seed=9), random_frames(FRAMES, seed=10)]
    _, hf_ids = _inputs(tokenizer, video_id, videos[0])
    holitom.apply_method(hf, "visionzip", retain_ratio=0.25)
    with torch.no_grad():
        rows = [hf(input_ids=hf_ids, pixel_values_videos=v[None]).logits for v in videos]
        batch = hf(input_ids=hf_ids.repeat(2, 1), pixel_values_videos=torch.stack(videos)).logits
    torch.testing.assert_close(batch, torch.cat(rows), atol=1e-5, rtol=0)


def test_bad_inputs_get_clear_errors(pair):
    tokenizer, _, hf, video_id = pair
    frames = random_frames(2, seed=11)
    _, hf_ids = _inputs(tokenizer, video_id, frames)
    holitom.apply_method(hf, "holitom", retain_ratio=0.25, merge_layer=2)
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"needs 393 <video> placeholders for its 2-frame video .* found \[392\]"):
            hf(input_ids=hf_ids[:, 1:].clone().fill_(video_id)[:, :392], pixel_values_videos=frames[None])
        with pytest.raises(ValueError, match="one video per prompt row"):
            hf(input_ids=hf_ids, pixel_values_videos=frames)
        with pytest.raises(ValueError, match="needs input_ids"):
            hf(inputs_embeds=hf.get_input_embeddings()(hf_ids), pixel_values_videos=frames[None])
        with pytest.raises(ValueError, match="by keyword"):
            hf(hf_ids, None)
    holitom.remove(hf)
    strategy = hf.config.vision_feature_select_strategy
    hf.config.vision_feature_select_strategy = "default"
    try:
        with pytest.raises(ValueError, match="vision_feature_select_strategy='default'"):
            holitom.apply_method(hf, "visionzip")
    finally:
        hf.config.vision_feature_select_strategy = strategy
    with pytest.raises(ValueError, match=r"merge_layer=18 \(the default\) is beyond this 4-layer LM"):
        holitom.apply_method(hf, "holitom", retain_ratio=0.5)


# ---------------------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> str:
    from holitom.tools.tiny import make_tiny

    return make_tiny(str(tmp_path_factory.mktemp("tiny_hf")), kind="onevision-hf")


def test_make_tiny_writes_the_llava_hf_layout_with_the_onevision_weights(tiny_hf, tiny_ov):
    from safetensors import safe_open

    files = set(p.name for p in Path(tiny_hf).iterdir())
    assert {
        "config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
        "tokenizer_config.json", "vocab.json", "merges.txt", "preprocessor_config.json",
        "video_preprocessor_config.json", "processor_config.json", "chat_template.json",
    } <= files  # fmt: skip
    config = json.loads((Path(tiny_hf) / "config.json").read_text())
    assert config["model_type"] == "llava_onevision"
    assert config["architectures"] == ["LlavaOnevisionForConditionalGeneration"]
    assert (config["vision_feature_layer"], config["vision_feature_select_strategy"]) == (-1, "full")
    assert config["vision_config"]["num_hidden_layers"] == 2  # only the kept SigLIP layers
    names = set(json.loads((Path(tiny_hf) / "model.safetensors.index.json").read_text())["weight_map"])
    assert {"image_newline", "language_model.lm_head.weight", "language_model.model.norm.weight",
            "multi_modal_projector.linear_1.weight", "vision_tower.vision_model.encoder.layers.1.mlp.fc2.weight",
            } <= names  # fmt: skip
    assert not any(n.startswith("model.") for n in names)

    tokenizer, hf = hf_onevision_io.load_model(tiny_hf, torch_dtype="float32")
    assert tokenizer.convert_tokens_to_ids(["<image>", "<video>"]) == [hf.config.image_token_id, hf.config.video_token_id]
    _, ours, _, _ = load(tiny_ov)
    theirs = hf_onevision_io.hf_state_dict(ours.state_dict())
    for name, value in hf.state_dict().items():
        if not name.endswith("position_ids"):
            assert torch.equal(value, theirs[name]), name
    shard = sorted(Path(tiny_hf).glob("model-*.safetensors"))[0]
    with safe_open(str(shard), "pt") as fh:
        assert all(not k.startswith("model.") for k in fh.keys())


def test_checkpoints_are_told_apart_by_model_type(tiny_hf, tiny_ov):
    config = hf_onevision_io.read_hf_config(tiny_hf)
    assert config.model_type == "llava_onevision" and hf_onevision_io.tokens_per_frame(config) == 196
    assert hf_onevision_io.read_hf_config(tiny_ov) is None  # lmms-lab's layout: the llava host
    with pytest.raises(ValueError, match="is not a transformers LLaVA-OneVision checkpoint"):
        hf_onevision_io.load_model(tiny_ov, torch_dtype="float32")


def test_chat_template_renders_the_prompt_we_build(tiny_hf):
    import jinja2

    from llava.conversation import conv_templates

    template = json.loads((Path(tiny_hf) / "chat_template.json").read_text())["chat_template"]
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]},
    ]
    conv = conv_templates["qwen_1_5"].copy()
    conv.append_message(conv.roles[0], "<video>\nWhat happens?")
    conv.append_message(conv.roles[1], None)
    assert jinja2.Template(template).render(messages=messages, add_generation_prompt=True) == conv.get_prompt()


def test_video_inputs_lay_out_the_prompt_like_transformers_processor(tiny_hf):
    tokenizer, hf = hf_onevision_io.load_model(tiny_hf, torch_dtype="float32")
    frames = random_frames(3)
    inputs = hf_onevision_io.video_inputs(tokenizer, hf.config, "<|im_start|>user\n<video>\nHi<|im_end|>\n", [frames])
    ids = inputs["input_ids"][0]
    assert int((ids == hf.config.video_token_id).sum()) == 3 * 196 + 1
    at = (ids == hf.config.video_token_id).nonzero()[:, 0]
    assert at.max() - at.min() + 1 == at.numel()  # one run
    assert inputs["pixel_values_videos"].shape == (1, 3, 3, 384, 384)
    with pytest.raises(ValueError, match=r"the prompt has 0 <video> token\(s\) but 1 video"):
        hf_onevision_io.video_inputs(tokenizer, hf.config, "no video here", [frames])


def test_checkpoint_from_disk_matches_our_checkpoint_with_holitom(tiny_hf, tiny_ov):
    tokenizer, hf = hf_onevision_io.load_model(tiny_hf, torch_dtype="float32")
    ours_tokenizer, ours, _, _ = load(tiny_ov)
    frames = random_frames(4, seed=12)
    inputs = hf_onevision_io.video_inputs(tokenizer, hf.config, _prompt("<video>"), [frames])
    ids = video_prompt_ids(ours_tokenizer, "What happens?")
    settings = {"retain_ratio": 0.25, "merge_layer": 2}
    holitom.apply_method(hf, "holitom", **settings)
    holitom.apply_method(ours, "holitom", **settings)
    with torch.no_grad():
        theirs = hf(**inputs).logits
        mine = ours(input_ids=ids, images=[frames], modalities=["video"]).logits
    torch.testing.assert_close(theirs, mine, atol=1e-4, rtol=0)


def _prompt(placeholder: str) -> str:
    from llava.conversation import conv_templates

    conv = conv_templates["qwen_1_5"].copy()
    conv.append_message(conv.roles[0], f"{placeholder}\nWhat happens?")
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


def test_generate_command_routes_llava_hf_checkpoints_and_prints_counts(tiny_hf, tiny_ov, tmp_path, capsys):
    from holitom.cli import main
    from holitom.tools.synthetic import write_synthetic_video

    video = tmp_path / "clip.mp4"
    write_synthetic_video(video, num_frames=8, size=(96, 64), seed=1)

    def generate(model: str, method: str, *extra: str) -> list[str]:
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            code = main(["generate", "--model", model, "--video", str(video), "--frames", "4", "--method", method,
                         "--max-new-tokens", "3", *extra])  # fmt: skip
        assert code == 0
        return buffer.getvalue().splitlines()

    vanilla = generate(tiny_hf, "vanilla")
    assert "transformers LlavaOnevisionForConditionalGeneration" in vanilla[1]
    assert "visual tokens: pooled 784 → entering the LLM 785" in vanilla
    settings = ("--retain-ratio", "0.25", "--merge-layer", "2")
    theirs, ours = generate(tiny_hf, "holitom", *settings), generate(tiny_ov, "holitom", *settings)
    assert any(line.startswith("visual tokens: pooled 784 → entering the LLM ") and "surviving layer 2" in line
               for line in theirs)  # fmt: skip
    # the same checkpoint in both layouts: the same counts, prompt length and answer (timings aside)
    same = [i for i, line in enumerate(ours) if not line.startswith(("model:", "timings:"))]
    assert [theirs[i] for i in same] == [ours[i] for i in same]
    capsys.readouterr()
    assert main(["generate", "--model", tiny_hf, "--video", str(video), "--pool-mode", "average"]) != 0
    assert "--pool-mode: transformers' LLaVA-OneVision always pools bilinearly" in capsys.readouterr().err


def test_eval_plugin_routes_llava_hf_checkpoints(tiny_hf, tmp_path):
    from holitom_eval.models.holitom_llava import HoliTomLlava
    from holitom_eval.settings import format_model_args
    from lmms_eval.api.instance import Instance

    from holitom.tools.synthetic import write_synthetic_video

    video = tmp_path / "clip.mp4"
    write_synthetic_video(video, num_frames=8, size=(96, 64), seed=1)
    args = {"pretrained": tiny_hf, "device": "cpu", "max_frames_num": 4, "method": "holitom", "retain_ratio": 0.25,
            "merge_layer": 2, "stats_dir": str(tmp_path / "stats")}  # fmt: skip
    lm = HoliTomLlava.create_from_arg_string(format_model_args(args), {"batch_size": 1, "device": None})
    lm.task_dict = {"t": {"test": [{"video": str(video)}]}}
    request = Instance(
        request_type="generate_until",
        arguments=("Describe it.", {"max_new_tokens": 3}, lambda d: [d["video"]], 0, "t", "test"),
        idx=0,
        metadata={"task": "t", "doc_id": 0, "repeats": 1},
    )
    (out,) = lm.generate_until([request])
    assert 1 <= out.token_counts.output_tokens <= 3
    (record,) = [json.loads(line) for line in (tmp_path / "stats" / "holitom_samples_rank0.jsonl").read_text().splitlines()]
    stats = holitom.stats(lm.model)
    assert record["pooled_tokens"] == 784 and record["visual_tokens"] == stats.visual_tokens < 784
    assert record["visual_kept"] == stats.visual_after < record["visual_tokens"]
    assert lm.shape.tokens_per_frame == 196 and lm.shape.num_layers == 4
    loglik = Instance(
        request_type="loglikelihood",
        arguments=("Which option?", " B", lambda d: [d["video"]], 0, "t", "test"),
        idx=0,
        metadata={"task": "t", "doc_id": 0, "repeats": 1},
    )
    ((logprob, _),) = lm.loglikelihood([loglik])
    assert logprob < 0
    with pytest.raises(ValueError, match="fixed layout"):
        HoliTomLlava.create_from_arg_string(
            format_model_args({**args, "mm_spatial_pool_mode": "average"}), {"batch_size": 1, "device": None}
        )
