"""Synthetic inputs, the one home for tests, smoke tasks, the demo and benchmarks: deterministic frames
written as real mp4 files with PyAV, preprocessed pixel tensors, and prompts shaped like the real one.

`synthetic_frames` makes the frames; `write_synthetic_video` encodes them (H.264 without B-frames when the
PyAV build has an encoder for it, else MPEG-4 Part 2) and returns the frames it wrote, so tests can compare
decoded frames against the source (the codecs are lossy: compare with a tolerance). `synthetic_pixels` and
`synthetic_prompt` are model inputs that skip decoding and tokenising.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

KINDS = ("moving_square", "static", "scene_change")
SQUARE = 12  # side of the moving square, pixels


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth colour gradient plus a few flat rectangles: static and cheap to encode faithfully."""
    ys = np.linspace(0.0, 1.0, height)[:, None]
    xs = np.linspace(0.0, 1.0, width)[None, :]
    base = rng.uniform(40, 200, size=3)
    ramp = (ys + xs) / 2  # (H, W)
    img = base + 60 * ramp[..., None] * np.array([1.0, -1.0, 0.5])
    for _ in range(3):
        h, w = int(rng.integers(4, max(5, height // 3))), int(rng.integers(4, max(5, width // 3)))
        # Even offsets and sizes keep edges on 2×2 chroma blocks (yuv420p), so encoding stays faithful.
        h, w = h - h % 2, w - w % 2
        y, x = 2 * int(rng.integers(0, (height - h) // 2 + 1)), 2 * int(rng.integers(0, (width - w) // 2 + 1))
        img[y : y + h, x : x + w] = rng.uniform(0, 255, size=3)
    return img.clip(0, 255).astype(np.uint8)


def synthetic_frames(
    num_frames: int = 16, size: tuple[int, int] = (64, 48), seed: int = 0, kind: str = "moving_square"
) -> np.ndarray:
    """Deterministic RGB frames (num_frames, height, width, 3) uint8; `size` is (width, height).

    kind: "moving_square" (static background, a white square crossing it left to right),
    "static" (the same frame every time), "scene_change" (moving square over one background for the
    first half, over a different background for the second half).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    width, height = size
    if width < SQUARE + 2 or height < SQUARE + 2:
        raise ValueError(f"size must be at least {SQUARE + 2}×{SQUARE + 2}, got {size}")
    rng = np.random.default_rng(seed)
    first = _background(height, width, rng)
    second = _background(height, width, rng) if kind == "scene_change" else first
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    y = (height - SQUARE) // 4 * 2
    for t in range(num_frames):
        frames[t] = first if t < (num_frames + 1) // 2 else second
        if kind != "static":
            x = 2 * round(t * ((width - SQUARE) // 2) / max(num_frames - 1, 1))
            frames[t, y : y + SQUARE, x : x + SQUARE] = 255
    return frames


# Encoder settings, best first. No B-frames anywhere, so every decoder (decord, PyAV) maps frame i to
# the same picture; explicit bit rates because the defaults are too low for faithful frames.
ENCODERS: dict[str, tuple[dict[str, str], int | None]] = {
    "libx264": ({"crf": "4", "preset": "ultrafast", "bframes": "0"}, None),
    "libopenh264": ({}, 8_000_000),
    "mpeg4": ({}, 8_000_000),
}


def available_encoders() -> list[str]:
    """The ENCODERS this PyAV build has, best first."""
    import av

    return [name for name in ENCODERS if name in av.codecs_available]


def write_synthetic_video(
    path: str | os.PathLike,
    num_frames: int = 16,
    size: tuple[int, int] = (64, 48),
    fps: int = 8,
    seed: int = 0,
    kind: str = "moving_square",
    codec: str | None = None,
) -> np.ndarray:
    """Write `synthetic_frames(...)` to an mp4 at `path`; returns the frames written (T, H, W, 3).

    `size` is (width, height), both even (yuv420p). `codec`: one of ENCODERS; None = the best available
    (H.264 via libx264, else libopenh264, else MPEG-4 Part 2).
    """
    import av

    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"size must have even width and height for yuv420p, got {size}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1 (use write_empty_video for none), got {num_frames}")
    frames = synthetic_frames(num_frames, size, seed, kind)
    available = available_encoders()
    if codec is None:
        codec = available[0]
    elif codec not in available:
        raise ValueError(f"codec must be one of the available encoders {available}, got {codec!r}")
    options, bit_rate = ENCODERS[codec]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    partial = f"{os.fspath(path)}.part"  # a half-written file never looks like a finished video
    with av.open(partial, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if bit_rate:
            stream.bit_rate = bit_rate
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))  # flush the encoder
    os.replace(partial, path)
    return frames


def write_empty_video(path: str | os.PathLike, size: tuple[int, int] = (64, 48)) -> None:
    """Write a well-formed video file whose video stream has no frames (AVI container, whatever the name).

    (An mp4 without samples drops the track altogether, so AVI is used to keep a frameless stream.)
    """
    import av

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(os.fspath(path), mode="w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        container.start_encoding()  # writes the header; no frame is ever muxed


def write_corrupt_video(path: str | os.PathLike, kind: str = "garbage") -> None:
    """Write a file named like a video that no decoder can read.

    kind: "garbage" (an mp4 `ftyp` box followed by random bytes) or "truncated" (the first 100 bytes
    of a real mp4, cut before any picture data or index).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "garbage":
        rng = np.random.default_rng(0)
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + rng.bytes(2048))
    elif kind == "truncated":
        write_synthetic_video(path, num_frames=8)
        path.write_bytes(path.read_bytes()[:100])
    else:
        raise ValueError(f"kind must be 'garbage' or 'truncated', got {kind!r}")


def synthetic_pixels(num_frames: int, size: int = 384, seed: int = 0):
    """Preprocessed frames (F, 3, size, size) float32 in the processor's range [-1, 1]: a shared random
    background with per-frame noise, so neighbouring frames are similar (temporal merging has work to do)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, size, size, generator=gen) * 2 - 1
    drift = torch.rand(num_frames, 3, size, size, generator=gen) * 2 - 1
    return (0.8 * base + 0.2 * drift).clamp(-1, 1)


# qwen_1_5 template tokens before <image> ("<|im_start|>system\nYou are ... user\n") and after it
# ("\n" + a ~18-token question + "<|im_end|>\n<|im_start|>assistant\n").
PROMPT_TEXT_BEFORE, PROMPT_TEXT_AFTER = 14, 24


def synthetic_prompt(vocab_size: int, seed: int = 0):
    """(1, L) ids shaped like the qwen_1_5 video prompt: text, one <image> placeholder, text."""
    import torch

    from llava.constants import IMAGE_TOKEN_INDEX

    gen = torch.Generator().manual_seed(seed)
    text = torch.randint(0, vocab_size, (PROMPT_TEXT_BEFORE + PROMPT_TEXT_AFTER,), generator=gen)
    image = torch.tensor([IMAGE_TOKEN_INDEX])
    return torch.cat([text[:PROMPT_TEXT_BEFORE], image, text[PROMPT_TEXT_BEFORE:]])[None]


def video_prompt(tokenizer, question: str = "Describe what happens in this video in detail."):
    """(1, L) ids of the qwen_1_5 prompt `<image>\\n{question}` for a real tokenizer."""
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.conversation import conv_templates
    from llava.mm_utils import tokenizer_image_token

    conv = conv_templates["qwen_1_5"].copy()
    conv.append_message(conv.roles[0], "<image>\n" + question)
    conv.append_message(conv.roles[1], None)
    return tokenizer_image_token(conv.get_prompt(), tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt")[None]
