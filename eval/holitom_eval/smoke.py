"""Data for the smoke tasks: a tiny checkpoint and synthetic videos where lmms-eval's own task code looks.

The smoke tasks (`tasks/smoke/`) keep the records of the four real benchmarks in their formats and call the
real tasks' `doc_to_visual` functions, which build video paths under `$HF_HOME`. `prepare_smoke_data(root)`
writes one small synthetic mp4 per record at exactly those paths under `root/hf_home`, and a smoke run
sets `HF_HOME` to that folder. Nothing here downloads anything.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path

import numpy as np

from holitom_eval import TASKS_DIR

SMOKE_DIR = os.path.join(TASKS_DIR, "smoke")
SMOKE_TASKS = ("smoke_mvbench", "smoke_egoschema", "smoke_videomme", "smoke_longvideobench_val_v")

# lmms-eval's mvbench utils.DATA_LIST for the two sub-tasks the smoke group uses.
MVBENCH_FOLDERS = {"action_sequence": "star/Charades_segment", "moving_count": "clevrer/video_validation"}


def _records(relpath: str) -> list[dict]:
    with open(os.path.join(SMOKE_DIR, relpath)) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def video_relpaths() -> list[str]:
    """Every smoke record's video, relative to HF_HOME, as the real tasks' doc_to_visual builds it."""
    paths = []
    for sub_task, folder in MVBENCH_FOLDERS.items():
        paths += [
            f"mvbench_video/{folder}/{r['video']}" for r in _records(f"mvbench/mvbench_{sub_task}.jsonl")
        ]
    paths += [f"egoschema/videos/{r['video_idx']}.mp4" for r in _records("egoschema/egoschema.jsonl")]
    paths += [f"videomme/data/{r['videoID']}.mp4" for r in _records("videomme/videomme.jsonl")]
    lvb = _records("longvideobench/longvideobench_val_v.jsonl")
    paths += [f"datasets/longvideobench/videos/{r['video_path']}" for r in lvb]
    return paths


def synthetic_frames(num_frames: int, width: int, height: int, seed: int) -> np.ndarray:
    """(T, H, W, 3) uint8: a gradient background with a white square crossing it; the background changes
    halfway for odd seeds (a scene cut, so temporal merging sees both stable and changing stretches)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    backgrounds = []
    for _ in range(2):
        base = rng.uniform(30, 200, size=3)
        ramp = ((ys / max(height - 1, 1) + xs / max(width - 1, 1)) / 2)[..., None]
        backgrounds.append(np.clip(base + 50 * ramp * rng.uniform(-1, 1, size=3), 0, 255).astype(np.uint8))
    cut = num_frames // 2 if seed % 2 else num_frames
    side = max(4, height // 4) // 2 * 2
    y = (height - side) // 2 // 2 * 2
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        frames[t] = backgrounds[0] if t < cut else backgrounds[1]
        x = 2 * round(t * ((width - side) // 2) / max(num_frames - 1, 1))
        frames[t, y : y + side, x : x + side] = 255
    return frames


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 8) -> None:
    """Encode (T, H, W, 3) uint8 frames as an mp4 (H.264 if PyAV has it, else MPEG-4 Part 2)."""
    import av

    codec = next((c for c in ("libx264", "libopenh264", "mpeg4") if c in av.codecs_available), None)
    if codec is None:
        raise RuntimeError("PyAV has no H.264 or MPEG-4 encoder to write the smoke videos")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.part"
    with av.open(tmp, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if codec != "libx264":
            stream.bit_rate = 4_000_000
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    os.replace(tmp, path)  # a half-written file never looks like a finished video


def prepare_smoke_data(root: str | os.PathLike) -> str:
    """Write the smoke videos under `root/hf_home` (existing files are kept); returns that HF_HOME."""
    hf_home = os.path.join(os.fspath(root), "hf_home")
    for relpath in video_relpaths():
        path = os.path.join(hf_home, relpath)
        if os.path.isfile(path):
            continue
        seed = zlib.crc32(relpath.encode())
        write_video(path, synthetic_frames(16 + seed % 3 * 4, 96, 64, seed))
    return hf_home


def prepare_tiny_checkpoint(root: str | os.PathLike, kind: str = "onevision") -> str:
    """`holitom make-tiny` into `root/tiny_<kind>` unless it is already there; returns the path."""
    path = os.path.join(os.fspath(root), f"tiny_{kind}")
    if not os.path.isfile(os.path.join(path, "config.json")):
        from holitom.tiny import make_tiny

        make_tiny(path + ".part", kind=kind)
        shutil.rmtree(path, ignore_errors=True)  # a leftover without config.json is unfinished
        os.replace(path + ".part", path)
    return path
