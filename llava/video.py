"""Uniform frame sampling from a video file, with decord or PyAV.

`load_video(path, max_frames_num)` returns the sampled frames as a (T, H, W, 3) uint8 array plus an info
dict. Frame indices are `np.linspace(0, total - 1, max_frames_num, dtype=int)` (rounded down), the
sampling lmms-eval's LLaVA-OneVision wrapper uses; a video shorter than `max_frames_num` gives all its
frames once each (as lmms-eval's PyAV reader does) and a warning, instead of repeated frames.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

BACKENDS = ("auto", "decord", "pyav")


class VideoLoadError(ValueError):
    """A video could not be read: missing file, not a video / corrupt, or no frames."""


def sample_frame_indices(total: int, n: int) -> np.ndarray:
    """Indices of `n` frames spread uniformly over `total` frames, first and last included.

    Returns (min(n, total),) int64: `linspace(0, total - 1, n)` rounded down, or every frame when the
    video has fewer than `n`. E.g. total=10, n=4 → [0, 3, 6, 9].
    """
    if int(total) != total or total < 1:
        raise ValueError(f"total must be a positive integer, got {total!r}")
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    total, n = int(total), int(n)
    if total <= n:
        return np.arange(total, dtype=np.int64)
    return np.linspace(0, total - 1, n, dtype=np.int64)


def sample_frame_indices_fps(total: int, avg_fps: float, n: int, fps: float) -> np.ndarray:
    """lmms-eval's `llava_vid` rule: every round(avg_fps / fps)-th frame (at least every frame), and when that
    gives more than `n` frames, `n` uniformly spaced ones instead (`sample_frame_indices`). E.g. a 10 s video
    at 30 fps with fps=1 → frames 0, 30, ..., 270 (10 frames); a 100 s one with n=64 → 64 uniform frames."""
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    step = max(1, round(avg_fps / fps)) if avg_fps > 0 else 1
    indices = np.arange(0, total, step, dtype=np.int64)
    return sample_frame_indices(total, n) if len(indices) > n else indices


def _one_line(exc: BaseException) -> str:
    """First non-empty line of an exception message (decord's carry whole C++ stack traces)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a moment: decord's C++ logger and FFmpeg write their errors straight to
    it (e.g. "moov atom not found"), before our one-line error says the same."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing to silence
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(fd), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _decord_available() -> bool:
    return importlib.util.find_spec("decord") is not None


# pick(total frames, average fps) -> the frame indices to decode
Picker = Callable[[int, float], np.ndarray]


def _read_decord(path: str, pick: Picker) -> tuple[np.ndarray, int, float, np.ndarray]:
    import decord

    with _quiet_native_stderr():
        reader = decord.VideoReader(path, ctx=decord.cpu(0))
        total, fps = len(reader), float(reader.get_avg_fps())
        if total == 0:
            return np.zeros((0, 0, 0, 3), dtype=np.uint8), 0, fps, np.zeros(0, dtype=np.int64)
        indices = pick(total, fps)
        frames = reader.get_batch(indices.tolist()).asnumpy()
    return frames, total, fps, indices


def _decode_pyav(path: str, wanted: np.ndarray | None) -> tuple[list[np.ndarray], int, float]:
    """One decoding pass: the frames at `wanted` (None = none, just count) and the frames decoded."""
    import av

    keep = set() if wanted is None else set(wanted.tolist())
    last = -1 if wanted is None else int(wanted.max())
    with av.open(path) as container:
        if not container.streams.video:
            raise VideoLoadError(f"video file {path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # multi-threaded decoding; frame order is unchanged
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        frames, count = [], 0
        for frame in container.decode(stream):
            if count in keep:
                frames.append(frame.to_ndarray(format="rgb24"))
            count += 1
            if wanted is not None and count > last:
                break
    return frames, count, fps


def _declared_frames(path: str) -> tuple[int, float]:
    """The container's frame count and average fps for the first video stream (0 when it does not say)."""
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise VideoLoadError(f"video file {path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        return int(stream.frames or 0), float(rate) if rate else 0.0


def _read_pyav(path: str, pick: Picker) -> tuple[np.ndarray, int, float, np.ndarray]:
    declared, fps = _declared_frames(path)
    # Trust the container's frame count when it has one; if decoding ends early (count was wrong),
    # recount by decoding and sample again.
    if declared > 0:
        indices = pick(declared, fps)
        frames, _, fps = _decode_pyav(path, indices)
        if len(frames) == len(indices):
            return np.stack(frames), declared, fps, indices
    _, total, fps = _decode_pyav(path, None)
    if total == 0:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8), 0, fps, np.zeros(0, dtype=np.int64)
    indices = pick(total, fps)
    frames, _, fps = _decode_pyav(path, indices)
    return np.stack(frames), total, fps, indices


_READERS = {"decord": _read_decord, "pyav": _read_pyav}


def _resolve_path(path: Any) -> str:
    # lmms-eval passes videos as one-element lists.
    if isinstance(path, (list, tuple)) and len(path) == 1:
        path = path[0]
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a video file path, got {type(path).__name__}")
    return os.fspath(path)


def load_video(
    path: str | os.PathLike | Sequence[str], max_frames_num: int, backend: str = "auto", fps: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode `max_frames_num` uniformly spaced frames of a video.

    Args:
        path: the video file (a one-element list is accepted, as lmms-eval passes it).
        max_frames_num: frames wanted; a shorter video gives all its frames and a warning.
        backend: "decord", "pyav", or "auto" (decord if installed, PyAV if decord is missing or cannot
            open the file).
        fps: sample at this rate instead, at most `max_frames_num` frames (lmms-eval's `llava_vid` rule,
            `sample_frame_indices_fps`): how the authors sampled LLaVA-Video (fps=1); None = uniform.

    Returns:
        frames: (T, H, W, 3) uint8 RGB, T = min(max_frames_num, total_frames).
        info: total_frames, fps, duration (seconds, None if fps unknown), indices (list of int),
            backend (the one that decoded), num_frames (T), requested_frames, fewer_than_requested.

    Raises:
        VideoLoadError (a ValueError): missing file, not a video / corrupt, or a video with no frames.
    """
    path = _resolve_path(path)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(max_frames_num, bool) or int(max_frames_num) != max_frames_num or max_frames_num < 1:
        raise ValueError(f"max_frames_num must be a positive integer, got {max_frames_num!r}")
    max_frames_num = int(max_frames_num)
    if fps is None:
        def pick(total: int, avg_fps: float) -> np.ndarray:
            return sample_frame_indices(total, max_frames_num)
    else:
        sample_frame_indices_fps(1, 1.0, 1, fps)  # checks fps before any decoding

        def pick(total: int, avg_fps: float) -> np.ndarray:
            return sample_frame_indices_fps(total, avg_fps, max_frames_num, fps)
    if not os.path.isfile(path):
        raise VideoLoadError(f"video file not found: {path}")
    if backend == "auto":
        order = ["decord", "pyav"] if _decord_available() else ["pyav"]
    elif backend == "decord" and not _decord_available():
        raise VideoLoadError(
            "backend='decord' was requested but decord is not installed (pip install decord)"
        )
    else:
        order = [backend]

    failures = []
    for name in order:
        try:
            frames, total, avg_fps, indices = _READERS[name](path, pick)
        except VideoLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoders raise many types; reported below, one line
            failures.append(f"{name}: {_one_line(exc)}")
            continue
        if total == 0:
            raise VideoLoadError(f"video file {path} has no frames")
        fewer = total < max_frames_num and fps is None
        if fewer:
            warnings.warn(
                f"video {path} has {total} frames, fewer than the {max_frames_num} requested; "
                f"returning all {total}",
                stacklevel=2,
            )
        info = {
            "total_frames": total,
            "fps": avg_fps,
            "duration": total / avg_fps if avg_fps > 0 else None,
            "indices": indices.tolist(),
            "backend": name,
            "num_frames": int(frames.shape[0]),
            "requested_frames": max_frames_num,
            "fewer_than_requested": fewer,
        }
        return frames, info
    raise VideoLoadError(f"cannot decode {path}: not a video or corrupt ({'; '.join(failures)})")
