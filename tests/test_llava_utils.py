"""llava.constants / conversation / mm_utils and the SigLIP image processor (no model, no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, StoppingCriteria, StoppingCriteriaList

from llava import constants
from llava.conversation import Conversation, SeparatorStyle, conv_templates, default_conversation
from llava.mm_utils import (
    KeywordsStoppingCriteria,
    expand2square,
    get_model_name_from_path,
    process_anyres_image,
    process_images,
    tokenizer_image_token,
)
from llava.model.multimodal_encoder.image_processor import SigLipImageProcessor

QUESTION = "What is the man doing?"
QWEN_PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    f"<|im_start|>user\n<image>\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
)
CORPUS = [
    "You are a helpful assistant.",
    "What is the man doing? He is riding a bike. ASSISTANT: USER: ###",
    "system user assistant video frames the a an is are",
] * 20


# ---------------------------------------------------------------------------------------------- fixtures


def _byte_bpe(bos: bool) -> PreTrainedTokenizerFast:
    """A tiny byte-level BPE (like Qwen2's), trained in-process; `bos` adds a "<s>" to every encoding."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    kwargs = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
        kwargs["bos_token"] = "<s>"
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return _byte_bpe(bos=False)


@pytest.fixture(scope="module")
def bos_tokenizer() -> PreTrainedTokenizerFast:
    return _byte_bpe(bos=True)


def _qwen_conv(answer: str | None = None) -> Conversation:
    conv = conv_templates["qwen_1_5"].copy()
    conv.append_message(conv.roles[0], f"<image>\n{QUESTION}")
    conv.append_message(conv.roles[1], answer)
    return conv


# ------------------------------------------------------------------------------------------- constants


def test_constants_values():
    assert constants.IGNORE_INDEX == -100
    assert constants.IMAGE_TOKEN_INDEX == -200
    assert constants.DEFAULT_IMAGE_TOKEN == "<image>"
    assert constants.DEFAULT_IM_START_TOKEN == "<im_start>"
    assert constants.DEFAULT_IM_END_TOKEN == "<im_end>"
    assert constants.DEFAULT_IMAGE_PATCH_TOKEN == "<im_patch>"


# ---------------------------------------------------------------------------------------- conversation


@pytest.mark.parametrize("name", ["qwen_1_5", "qwen_2"])
def test_qwen_prompt_exact(name):
    conv = conv_templates[name].copy()
    conv.append_message(conv.roles[0], f"<image>\n{QUESTION}")
    conv.append_message(conv.roles[1], None)
    assert conv.get_prompt() == QWEN_PROMPT
    assert conv.sep_style == SeparatorStyle.CHATML and conv.sep == "<|im_end|>"


def test_qwen_prompt_with_answer():
    assert _qwen_conv("He is riding a bike.").get_prompt() == (
        QWEN_PROMPT + "He is riding a bike.<|im_end|>\n"
    )


def test_copy_is_independent_and_messages_are_editable():
    template = conv_templates["qwen_1_5"]
    conv = _qwen_conv()
    assert template.messages == []
    # lmms-eval's loglikelihood fills the open turn in place.
    conv.messages[-1][1] = "Riding."
    assert conv.get_prompt() == QWEN_PROMPT + "Riding.<|im_end|>\n"
    other = conv.copy()
    other.messages[-1][1] = "Walking."
    assert conv.messages[-1][1] == "Riding."


def test_vicuna_v1_prompt_and_stop_string():
    conv = conv_templates["vicuna_v1"].copy()
    conv.append_message(conv.roles[0], "<image>\nQ?")
    conv.append_message(conv.roles[1], None)
    system = (
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    )
    assert conv.get_prompt() == f"{system} USER: <image>\nQ? ASSISTANT:"
    conv.messages[-1][1] = "A."
    assert conv.get_prompt() == f"{system} USER: <image>\nQ? ASSISTANT: A.</s>"
    # lmms-eval's stop-string rule: sep2 for TWO-style templates, sep otherwise.
    stop = conv.sep if conv.sep_style != SeparatorStyle.TWO else conv.sep2
    assert stop == "</s>"
    qwen = conv_templates["qwen_1_5"]
    assert (qwen.sep if qwen.sep_style != SeparatorStyle.TWO else qwen.sep2) == "<|im_end|>"


def test_llava_v1_plain_chatml_direct():
    conv = conv_templates["llava_v1"].copy()
    conv.append_message(conv.roles[0], "hi")
    conv.append_message(conv.roles[1], None)
    assert conv.get_prompt().endswith("to the human's questions. USER: hi ASSISTANT:")

    plain = conv_templates["plain"].copy()
    plain.append_message(plain.roles[0], "<image>")
    plain.append_message(plain.roles[1], "a cat")
    assert plain.get_prompt() == "<image>\na cat\n"

    direct = conv_templates["chatml_direct"].copy()
    direct.append_message(direct.roles[0], "hi")
    direct.append_message(direct.roles[1], None)
    assert direct.get_prompt() == (
        "<|im_start|>system\nAnswer the questions.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_llama_and_gemma_layouts():
    llama2 = conv_templates["llava_llama_2"].copy()
    llama2.append_message(llama2.roles[0], "hi")
    llama2.append_message(llama2.roles[1], "hello")
    assert llama2.get_prompt() == f"[INST] <<SYS>>\n{llama2.system}\n<</SYS>>\n\nhi [/INST] hello </s>"

    llama3 = conv_templates["llava_llama_3"].copy()
    llama3.append_message(llama3.roles[0], "hi")
    llama3.append_message(llama3.roles[1], None)
    assert llama3.get_prompt() == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        f"{llama3.system}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )

    gemma = conv_templates["gemma_instruct"].copy()
    gemma.append_message(gemma.roles[0], "hi")
    gemma.append_message(gemma.roles[1], None)
    assert gemma.get_prompt() == "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"


@pytest.mark.parametrize("name", sorted(conv_templates))
def test_every_template_renders_the_question_once(name):
    conv = conv_templates[name].copy()
    conv.append_message(conv.roles[0], f"<image>\n{QUESTION}")
    conv.append_message(conv.roles[1], None)
    prompt = conv.get_prompt()
    assert prompt.count(QUESTION) == 1 and prompt.count("<image>") == 1


def test_default_conversation_and_tuple_messages():
    assert isinstance(default_conversation, Conversation)
    assert default_conversation.sep_style == SeparatorStyle.TWO
    conv = conv_templates["qwen_2"].copy()
    conv.append_message(conv.roles[0], ("<image>\nQ", Image.new("RGB", (4, 4)), "Default"))
    conv.append_message(conv.roles[1], None)
    assert "<|im_start|>user\n<image>\nQ<|im_end|>\n" in conv.get_prompt()
    assert conv.dict()["messages"][0][1] == "<image>\nQ"


# ------------------------------------------------------------------------------- tokenizer_image_token


def test_tokenizer_image_token_splices_the_image_index(tokenizer):
    ids = tokenizer_image_token(QWEN_PROMPT, tokenizer, constants.IMAGE_TOKEN_INDEX, return_tensors="pt")
    assert ids.dtype == torch.long and ids.dim() == 1
    positions = (ids == -200).nonzero().flatten().tolist()
    assert len(positions) == 1
    head, tail = ids[: positions[0]].tolist(), ids[positions[0] + 1 :].tolist()
    before, after = QWEN_PROMPT.split("<image>")
    assert head == tokenizer(before)["input_ids"] and tail == tokenizer(after)["input_ids"]
    assert tokenizer.decode(head) == before and tokenizer.decode(tail) == after
    assert tokenizer_image_token(QWEN_PROMPT, tokenizer) == ids.tolist()


def test_tokenizer_image_token_several_images_and_custom_index(tokenizer):
    x = tokenizer("x")["input_ids"]
    assert tokenizer_image_token("<image>x<image>", tokenizer) == [-200, *x, -200]
    assert tokenizer_image_token("<image><image>", tokenizer, image_token_index=-7) == [-7, -7]
    assert tokenizer_image_token("no image", tokenizer) == tokenizer("no image")["input_ids"]


def test_tokenizer_image_token_keeps_one_leading_bos(bos_tokenizer):
    bos = bos_tokenizer.bos_token_id
    a = bos_tokenizer("a ")["input_ids"]
    b = bos_tokenizer(" b")["input_ids"]
    assert a[0] == bos and b[0] == bos  # the tokenizer adds BOS to every chunk...
    ids = tokenizer_image_token("a <image> b", bos_tokenizer)
    assert ids == [bos, *a[1:], -200, *b[1:]]  # ...the result has it once, first
    assert tokenizer_image_token("<image> b", bos_tokenizer) == [bos, -200, *b[1:]]
    assert ids.count(bos) == 1


def test_tokenizer_image_token_bad_arguments(tokenizer):
    with pytest.raises(ValueError, match="return_tensors"):
        tokenizer_image_token("<image>", tokenizer, return_tensors="tf")
    with pytest.raises(ValueError, match="prompt"):
        tokenizer_image_token(["<image>"], tokenizer)


# --------------------------------------------------------------------------- KeywordsStoppingCriteria


def _ids(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]])


def test_keywords_stopping_on_generated_keyword(tokenizer):
    prompt = _ids(tokenizer, QWEN_PROMPT)
    criteria = KeywordsStoppingCriteria(["<|im_end|>"], tokenizer, prompt)
    assert isinstance(criteria, StoppingCriteria)
    partial = torch.cat([prompt, _ids(tokenizer, "He is")], dim=1)
    finished = torch.cat([prompt, _ids(tokenizer, "He is<|im_end|>")], dim=1)
    out = criteria(partial, None)
    assert out.dtype == torch.bool and out.shape == (1,) and not out.item()
    assert criteria(finished, None).tolist() == [True]
    # The prompt itself contains "<|im_end|>" twice: only generated tokens count.
    assert criteria(prompt, None).tolist() == [False]
    assert StoppingCriteriaList([criteria])(finished, None).tolist() == [True]


def test_keywords_stopping_is_per_row(tokenizer):
    prompt = _ids(tokenizer, QWEN_PROMPT)
    criteria = KeywordsStoppingCriteria("<|im_end|>", tokenizer, prompt)
    end, a = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer("a")["input_ids"][0]
    batch = torch.cat([prompt.expand(3, -1), torch.tensor([[a, end], [a, a], [end, a]])], dim=1)
    # Row 2 generated the keyword one step earlier: the text check still sees it in the tail.
    assert criteria(batch, None).tolist() == [True, False, True]


def test_keywords_stopping_matches_text_when_ids_differ(tokenizer):
    # In context the keyword follows a space, so byte-level BPE tokenizes it differently from alone:
    # only the decoded-text check can find it.
    prompt = _ids(tokenizer, "USER: hi")
    generated = tokenizer(" ok ASSISTANT:")["input_ids"]
    alone = tokenizer("ASSISTANT:")["input_ids"]
    assert generated[-len(alone) :] != alone
    criteria = KeywordsStoppingCriteria(["ASSISTANT:"], tokenizer, prompt)
    assert criteria(torch.cat([prompt, torch.tensor([generated])], dim=1), None).tolist() == [True]
    assert criteria(torch.cat([prompt, _ids(tokenizer, " ok ASSIST")], dim=1), None).tolist() == [False]


def test_keywords_stopping_bad_keywords(tokenizer):
    with pytest.raises(ValueError, match="keywords"):
        KeywordsStoppingCriteria([], tokenizer, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="keywords"):
        KeywordsStoppingCriteria([""], tokenizer, torch.zeros(1, 3, dtype=torch.long))


# ---------------------------------------------------------------------------- get_model_name_from_path


@pytest.mark.parametrize(
    "path, name",
    [
        ("lmms-lab/llava-onevision-qwen2-7b-ov", "llava-onevision-qwen2-7b-ov"),
        ("lmms-lab/LLaVA-Video-7B-Qwen2/", "LLaVA-Video-7B-Qwen2"),
        ("/ckpt/llava-qwen-run3/checkpoint-1200", "llava-qwen-run3_checkpoint-1200"),
        ("tiny-ov", "tiny-ov"),
    ],
)
def test_get_model_name_from_path(path, name):
    assert get_model_name_from_path(path) == name


def test_get_model_name_from_empty_path():
    with pytest.raises(ValueError, match="model_path"):
        get_model_name_from_path("/")


# ------------------------------------------------------------------------------------- image processor


def _normalised(value: int) -> float:
    return float((np.float32(value) * np.float32(1 / 255) - np.float32(0.5)) / np.float32(0.5))


def test_processor_defaults():
    proc = SigLipImageProcessor()
    assert proc.size == {"height": 384, "width": 384} and proc.crop_size == {"height": 384, "width": 384}
    assert proc.image_mean == (0.5, 0.5, 0.5) and proc.image_std == (0.5, 0.5, 0.5)
    assert proc.resample == Image.BICUBIC and proc.rescale_factor == pytest.approx(1 / 255)
    small = SigLipImageProcessor(image_size=28)
    assert small.size == {"height": 28, "width": 28} and small.crop_size == {"height": 28, "width": 28}


def test_processor_constant_frames_give_exact_values():
    # Per-channel constants (different per channel, so a layout mix-up shows) over 2 frames.
    frames = np.empty((2, 30, 50, 3), dtype=np.uint8)
    frames[0] = (0, 37, 255)
    frames[1] = (200, 128, 1)
    pixels = SigLipImageProcessor().preprocess(frames, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (2, 3, 384, 384) and pixels.dtype == torch.float32
    for t in range(2):
        for c in range(3):
            expected = torch.full((384, 384), _normalised(int(frames[t, 0, 0, c])))
            torch.testing.assert_close(pixels[t, c], expected, atol=1e-6, rtol=0)
    assert pixels[0, 0, 0, 0].item() == -1.0 and pixels[0, 2, 0, 0].item() == 1.0


def test_processor_matches_pil_bicubic_reference():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(21, 37, 3), dtype=np.uint8)
    pixels = SigLipImageProcessor(image_size=16)(img)["pixel_values"]
    resized = np.asarray(Image.fromarray(img).resize((16, 16), Image.BICUBIC)).astype(np.float32)
    expected = torch.from_numpy((resized / 255 - 0.5) / 0.5).permute(2, 0, 1)[None]
    torch.testing.assert_close(pixels, expected, atol=1e-6, rtol=0)
    nearest = np.asarray(Image.fromarray(img).resize((16, 16), Image.NEAREST)).astype(np.float32)
    assert not np.allclose(resized, nearest)  # the reference really is a bicubic resize


def test_processor_input_forms_agree():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(3, 20, 24, 3), dtype=np.uint8)
    proc = SigLipImageProcessor(image_size=12)
    ref = proc.preprocess(frames)["pixel_values"]
    assert ref.shape == (3, 3, 12, 12)
    pil = [Image.fromarray(f) for f in frames]
    torch.testing.assert_close(proc.preprocess(pil)["pixel_values"], ref, atol=0, rtol=0)
    torch.testing.assert_close(proc.preprocess(list(frames))["pixel_values"], ref, atol=0, rtol=0)
    torch.testing.assert_close(proc.preprocess(torch.from_numpy(frames))["pixel_values"], ref, atol=0, rtol=0)
    torch.testing.assert_close(proc.preprocess(pil[1])["pixel_values"], ref[1:2], atol=0, rtol=0)
    torch.testing.assert_close(proc.preprocess(frames[2])["pixel_values"], ref[2:3], atol=0, rtol=0)
    # Grey/RGBA PIL images are converted to RGB.
    grey = proc.preprocess(Image.fromarray(frames[0, :, :, 0], mode="L"))["pixel_values"]
    assert grey.shape == (1, 3, 12, 12) and torch.equal(grey[0, 0], grey[0, 2])
    as_np = proc.preprocess(frames, return_tensors="np")["pixel_values"]
    assert isinstance(as_np, np.ndarray) and np.array_equal(as_np, ref.numpy())


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((2, 8, 8, 3), dtype=np.float32), "uint8"),
        (np.zeros((2, 8, 8, 4), dtype=np.uint8), r"\(H, W, 3\)"),
        (np.zeros((2, 3, 8, 8), dtype=np.uint8), r"channels last"),
        (np.zeros((8, 8), dtype=np.uint8), "shape"),
        (np.zeros((1, 2, 8, 8, 3), dtype=np.uint8), "shape"),
        ([], "empty"),
        ("frame.png", "images"),
        ([np.zeros((8, 8, 3), np.uint8), 3], r"images\[1\]"),
    ],
)
def test_processor_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        SigLipImageProcessor(image_size=8).preprocess(bad)


def test_processor_bad_settings():
    with pytest.raises(ValueError, match="return_tensors"):
        SigLipImageProcessor(image_size=8).preprocess(np.zeros((8, 8, 3), np.uint8), return_tensors="tf")
    with pytest.raises(ValueError, match="size"):
        SigLipImageProcessor(image_size=0)
    with pytest.raises(ValueError, match="image_std"):
        SigLipImageProcessor(image_std=(0.5, 0.0, 0.5))


# ------------------------------------------------------------------------------ process_images & friends


class _Cfg:
    def __init__(self, image_aspect_ratio):
        self.image_aspect_ratio = image_aspect_ratio


def test_expand2square_centres_the_image():
    img = Image.new("RGB", (20, 10), (255, 0, 0))
    square = expand2square(img, (1, 2, 3))
    assert square.size == (20, 20)
    arr = np.asarray(square)
    assert (arr[:5] == (1, 2, 3)).all() and (arr[15:] == (1, 2, 3)).all() and (arr[5:15] == (255, 0, 0)).all()
    assert expand2square(Image.new("RGB", (7, 7)), (0, 0, 0)).size == (7, 7)
    tall = np.asarray(expand2square(Image.new("RGB", (4, 9), (9, 9, 9)), (0, 0, 0)))
    assert tall.shape == (9, 9, 3) and (tall[:, :2] == 0).all() and (tall[:, 2:6] == 9).all()


def test_process_images_pad_uses_the_mean_colour():
    proc = SigLipImageProcessor(image_size=16)
    red = Image.new("RGB", (20, 10), (255, 0, 0))
    out = process_images([red, red], proc, _Cfg("pad"))
    assert out.shape == (2, 3, 16, 16)
    pad = _normalised(127)  # int(0.5 * 255)
    # Output row 0 only sees padding rows, row 8 only image rows (bicubic support is 2 source pixels).
    torch.testing.assert_close(out[0, :, 0, :], torch.full((3, 16), pad), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[0, :, 8, :], torch.tensor([1.0, -1.0, -1.0])[:, None].expand(3, 16))
    plain = process_images([red], proc, _Cfg(None))
    torch.testing.assert_close(plain[0], torch.tensor([1.0, -1.0, -1.0])[:, None, None].expand(3, 16, 16))
    torch.testing.assert_close(process_images(red, proc, _Cfg("square")), plain)


def test_process_images_anyres_is_refused_with_the_fallback():
    proc = SigLipImageProcessor(image_size=8)
    img = Image.new("RGB", (10, 10))
    with pytest.raises(
        ValueError, match=r"anyres image tiling is not supported yet.*image_aspect_ratio.*pad"
    ):
        process_images([img], proc, _Cfg("anyres_max_9"))
    with pytest.raises(ValueError, match="anyres"):
        process_anyres_image(img, proc, [[384, 384]])
    with pytest.raises(ValueError, match="image_aspect_ratio"):
        process_images([img], proc, _Cfg("crop_split"))
    with pytest.raises(ValueError, match=r"images\[0\]"):
        process_images(["img.png"], proc, _Cfg("pad"))


def test_process_images_video_frames_skip_padding_and_tiling():
    proc = SigLipImageProcessor(image_size=8)
    frames = np.random.default_rng(2).integers(0, 256, size=(1, 6, 10, 3), dtype=np.uint8)
    expected = proc.preprocess(frames)["pixel_values"]
    for cfg in (_Cfg("anyres_max_9"), _Cfg("pad"), _Cfg(None)):
        torch.testing.assert_close(process_images(frames, proc, cfg), expected, atol=0, rtol=0)
        torch.testing.assert_close(process_images(list(frames), proc, cfg), expected, atol=0, rtol=0)
