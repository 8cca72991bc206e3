"""llava.video: uniform frame sampling with decord and PyAV, on synthetic mp4s written by helpers_video."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers_video import (
    SQUARE,
    available_encoders,
    synthetic_frames,
    write_corrupt_video,
    write_empty_video,
    write_synthetic_video,
)

from llava.model.multimodal_encoder.image_processor import SigLipImageProcessor
from llava.video import VideoLoadError, load_video, sample_frame_indices

HAS_DECORD = importlib.util.find_spec("decord") is not None
BACKENDS = [
    "pyav",
    pytest.param("decord", marks=pytest.mark.skipif(not HAS_DECORD, reason="decord not installed")),
]


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def video16(video_dir) -> tuple[Path, np.ndarray]:
    path = video_dir / "moving16.mp4"
    return path, write_synthetic_video(path, num_frames=16, size=(64, 48), fps=8)


@pytest.fixture(scope="module")
def video5(video_dir) -> tuple[Path, np.ndarray]:
    path = video_dir / "short5.mp4"
    return path, write_synthetic_video(path, num_frames=5, fps=5, seed=3)


# ------------------------------------------------------------------------------------ sample_frame_indices


def test_sample_frame_indices_hand_worked():
    assert sample_frame_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert sample_frame_indices(16, 8).tolist() == [0, 2, 4, 6, 8, 10, 12, 15]
    assert sample_frame_indices(100, 1).tolist() == [0]
    assert sample_frame_indices(7, 7).tolist() == list(range(7))
    assert sample_frame_indices(5, 8).tolist() == [0, 1, 2, 3, 4]  # short video: every frame once
    assert sample_frame_indices(10, 4).dtype == np.int64


def test_sample_frame_indices_match_lmms_eval_sampling():
    # lmms-eval's llava_onevision: np.linspace(0, total - 1, n, dtype=int); identical whenever total >= n.
    for total in range(1, 80):
        for n in range(1, total + 1):
            assert np.array_equal(sample_frame_indices(total, n), np.linspace(0, total - 1, n, dtype=int))


@pytest.mark.parametrize("total, n, name", [(0, 4, "total"), (10, 0, "n"), (10, 2.5, "n"), (-3, 1, "total")])
def test_sample_frame_indices_bad_arguments(total, n, name):
    with pytest.raises(ValueError, match=name):
        sample_frame_indices(total, n)


# -------------------------------------------------------------------------------------------- load_video


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_video_samples_uniformly(video16, backend):
    path, source = video16
    frames, info = load_video(path, 8, backend=backend)
    assert frames.shape == (8, 48, 64, 3) and frames.dtype == np.uint8
    assert info == {
        "total_frames": 16,
        "fps": 8.0,
        "duration": 2.0,
        "indices": [0, 2, 4, 6, 8, 10, 12, 15],
        "backend": backend,
        "num_frames": 8,
        "requested_frames": 8,
        "fewer_than_requested": False,
    }
    # Lossy codec: decoded frames are close to the frames written at those indices, not to others.
    err = np.abs(frames.astype(np.int16) - source[info["indices"]]).mean(axis=(1, 2, 3))
    assert (err < 4).all(), err
    shifted = np.abs(frames.astype(np.int16) - source[[i + 1 for i in info["indices"][:-1]] + [0]]).mean()
    assert shifted > 2 * err.max()


@pytest.mark.skipif(not HAS_DECORD, reason="decord not installed")
def test_backends_agree_and_auto_prefers_decord(video16):
    path, _ = video16
    via_decord, _ = load_video(path, 16, backend="decord")
    via_pyav, _ = load_video(path, 16, backend="pyav")
    assert np.abs(via_decord.astype(np.int16) - via_pyav).mean() < 1.0
    assert load_video(str(path), 4)[1]["backend"] == "decord"


def test_auto_falls_back_to_pyav_when_decord_cannot_open(video16, monkeypatch):
    import llava.video as video

    def broken(path, n):
        raise RuntimeError("decord could not open it\nwith a second line")

    monkeypatch.setattr(video, "_decord_available", lambda: True)
    monkeypatch.setitem(video._READERS, "decord", broken)
    frames, info = load_video(video16[0], 4)
    assert info["backend"] == "pyav" and frames.shape[0] == 4


@pytest.mark.parametrize("declared", [0, 40])
def test_pyav_counts_frames_when_the_container_count_is_missing_or_wrong(video16, monkeypatch, declared):
    import llava.video as video

    monkeypatch.setattr(video, "_declared_frames", lambda path: (declared, 8.0))
    frames, info = load_video(video16[0], 8, backend="pyav")
    assert info["total_frames"] == 16 and info["indices"] == [0, 2, 4, 6, 8, 10, 12, 15]
    assert np.abs(frames.astype(np.int16) - video16[1][info["indices"]]).mean() < 4


def test_fps_sampling_is_lmms_evals_llava_vid_rule():
    from llava.video import sample_frame_indices_fps

    assert sample_frame_indices_fps(300, 30.0, 64, 1).tolist() == list(range(0, 300, 30))  # 10 s at 30 fps
    assert sample_frame_indices_fps(300, 29.97, 64, 1).tolist() == list(range(0, 300, 30))  # round(29.97) = 30
    many = sample_frame_indices_fps(3000, 30.0, 64, 1)  # 100 frames at 1 fps > 64: uniform 64 instead
    assert many.tolist() == np.linspace(0, 2999, 64, dtype=int).tolist()
    assert sample_frame_indices_fps(5, 0.4, 8, 1).tolist() == [0, 1, 2, 3, 4]  # step at least 1
    with pytest.raises(ValueError, match="fps must be a positive number, got 0"):
        sample_frame_indices_fps(5, 8.0, 8, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_video_at_one_frame_per_second(video16, backend):
    frames, info = load_video(video16[0], 64, backend=backend, fps=1)  # 16 frames at 8 fps: 2 s
    assert info["indices"] == [0, 8] and frames.shape[0] == 2 and info["fewer_than_requested"] is False
    with pytest.raises(ValueError, match="fps must be a positive number"):
        load_video(video16[0], 64, backend=backend, fps=-1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_video_returns_every_frame_and_warns(video5, backend):
    path, source = video5
    with pytest.warns(UserWarning, match=r"has 5 frames, fewer than the 8 requested; returning all 5"):
        frames, info = load_video(path, 8, backend=backend)
    assert frames.shape == (5, 48, 64, 3)
    assert info["indices"] == [0, 1, 2, 3, 4] and info["fewer_than_requested"] is True
    assert info["num_frames"] == 5 and info["requested_frames"] == 8 and info["total_frames"] == 5
    assert np.abs(frames.astype(np.int16) - source).mean() < 4


def test_exact_count_does_not_warn(video5):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frames, info = load_video([str(video5[0])], 5, backend="pyav")  # lmms-eval passes [path]
    assert frames.shape[0] == 5 and info["fewer_than_requested"] is False


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_missing_file_is_named(tmp_path, backend):
    path = tmp_path / "nope.mp4"
    with pytest.raises(VideoLoadError, match=r"video file not found: .*nope\.mp4$"):
        load_video(path, 4, backend=backend)


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_corrupt_file_is_named_in_one_line(tmp_path, kind, backend):
    path = tmp_path / f"broken_{kind}.mp4"
    write_corrupt_video(path, kind=kind)
    with pytest.raises(VideoLoadError) as err:
        load_video(path, 4, backend=backend)
    message = str(err.value)
    assert isinstance(err.value, ValueError)
    assert str(path) in message and "not a video or corrupt" in message and "\n" not in message


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_video_without_frames(tmp_path, backend):
    path = tmp_path / "empty.avi"
    write_empty_video(path)
    with pytest.raises(VideoLoadError, match=r"empty\.avi has no frames"):
        load_video(path, 4, backend=backend)


def test_file_without_video_stream(tmp_path):
    import av

    path = tmp_path / "silence.wav"
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(VideoLoadError, match=r"silence\.wav has no video stream"):
        load_video(path, 4, backend="pyav")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_max_frames_num(video5, bad):
    with pytest.raises(ValueError, match="max_frames_num"):
        load_video(video5[0], bad)


def test_bad_backend_and_path(video5):
    with pytest.raises(ValueError, match="backend"):
        load_video(video5[0], 4, backend="opencv")
    with pytest.raises(ValueError, match="path"):
        load_video(42, 4)


def test_decord_requested_without_decord(video5, monkeypatch):
    import llava.video as video

    monkeypatch.setattr(video, "_decord_available", lambda: False)
    with pytest.raises(VideoLoadError, match="decord is not installed"):
        load_video(video5[0], 4, backend="decord")
    assert load_video(video5[0], 2, backend="auto")[1]["backend"] == "pyav"


def test_loaded_frames_feed_the_processor(video16):
    frames, _ = load_video(video16[0], 4, backend="pyav")
    pixels = SigLipImageProcessor(image_size=32).preprocess(frames, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (4, 3, 32, 32) and pixels.min() >= -1 and pixels.max() <= 1


# ------------------------------------------------------------------------------------ synthetic videos


def _square_x(frame: np.ndarray) -> float:
    """Mean column of the pure-white pixels (the moving square)."""
    cols = np.nonzero((frame >= 250).all(axis=-1))[1]
    return float(cols.mean())


def test_synthetic_frames_are_deterministic_and_mostly_static():
    a = synthetic_frames(16, (64, 48), seed=0)
    assert a.shape == (16, 48, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, synthetic_frames(16, (64, 48), seed=0))
    assert not np.array_equal(a, synthetic_frames(16, (64, 48), seed=1))
    xs = [_square_x(f) for f in a]
    assert all(later > earlier for earlier, later in zip(xs, xs[1:]))  # the square moves right
    assert xs[0] == (SQUARE - 1) / 2 and xs[-1] == 64 - (SQUARE + 1) / 2  # edge to edge
    changed = (a[1:] != a[:-1]).any(axis=-1).mean(axis=(1, 2))
    assert (changed > 0).all() and (changed < 0.15).all()  # something moves, most pixels don't


def test_synthetic_kinds():
    static = synthetic_frames(6, kind="static")
    assert all(np.array_equal(static[0], f) for f in static)
    cut = synthetic_frames(8, kind="scene_change")
    changed = (cut[1:] != cut[:-1]).any(axis=-1).mean(axis=(1, 2))
    assert changed[3] > 0.8 and (np.delete(changed, 3) < 0.15).all()  # the cut is between frames 3 and 4
    with pytest.raises(ValueError, match="kind"):
        synthetic_frames(4, kind="zoom")


@pytest.mark.parametrize("codec", available_encoders())
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_fallback_encoder_gives_faithful_frames(tmp_path, codec, backend):
    path = tmp_path / f"{codec}.mp4"
    source = write_synthetic_video(path, num_frames=6, codec=codec)
    frames, info = load_video(path, 6, backend=backend)
    assert info["total_frames"] == 6 and info["indices"] == list(range(6))
    assert np.abs(frames.astype(np.int16) - source).mean() < 4


def test_synthetic_video_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_synthetic_video(tmp_path / "odd.mp4", size=(63, 48))
    with pytest.raises(ValueError, match="num_frames"):
        write_synthetic_video(tmp_path / "none.mp4", num_frames=0)
    with pytest.raises(ValueError, match="codec"):
        write_synthetic_video(tmp_path / "vp9.mp4", codec="libvpx-vp9")
    with pytest.raises(ValueError, match="kind"):
        write_corrupt_video(tmp_path / "x.mp4", kind="nonsense")
