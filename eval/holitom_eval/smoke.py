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

from holitom.tools.synthetic import write_synthetic_video
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


def prepare_smoke_data(root: str | os.PathLike) -> str:
    """Write the smoke videos under `root/hf_home` (existing files are kept); returns that HF_HOME."""
    hf_home = os.path.join(os.fspath(root), "hf_home")
    for relpath in video_relpaths():
        path = os.path.join(hf_home, relpath)
        if os.path.isfile(path):
            continue
        seed = zlib.crc32(relpath.encode())
        # odd seeds cut to another background halfway, so temporal merging sees stable and changing stretches
        kind = "scene_change" if seed % 2 else "moving_square"
        write_synthetic_video(path, num_frames=16 + seed % 3 * 4, size=(96, 64), seed=seed, kind=kind)
    return hf_home


def prepare_tiny_checkpoint(root: str | os.PathLike, kind: str = "onevision") -> str:
    """`holitom make-tiny` into `root/tiny_<kind>` unless it is already there; returns the path."""
    path = os.path.join(os.fspath(root), f"tiny_{kind}")
    if not os.path.isfile(os.path.join(path, "config.json")):
        from holitom.tools.tiny import make_tiny

        make_tiny(path + ".part", kind=kind)
        shutil.rmtree(path, ignore_errors=True)  # a leftover without config.json is unfinished
        os.replace(path + ".part", path)
    return path


def prepare_tiny_siglip(root: str | os.PathLike) -> str:
    """A tiny SigLIP with its attention-pooling head in `root/tiny_siglip` (FastVID's `fastvid_siglip` in
    smoke runs), unless it is already there; returns the path."""
    path = os.path.join(os.fspath(root), "tiny_siglip")
    if not os.path.isfile(os.path.join(path, "config.json")):
        from holitom.tools.tiny import make_tiny_siglip

        make_tiny_siglip(path + ".part")
        shutil.rmtree(path, ignore_errors=True)
        os.replace(path + ".part", path)
    return path


# ---------------------------------------------------------------------------------------------- CLI


def smoke_command(root: str, kind: str = "onevision", frames: int = 8) -> str:
    """The lmms-eval command line that runs the smoke tasks on what `holitom smoke-setup ROOT` wrote."""
    import shlex

    root = os.path.abspath(root)
    env = f"HF_HOME={shlex.quote(os.path.join(root, 'hf_home'))} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1"
    args = f"pretrained={os.path.join(root, f'tiny_{kind}')},device=cpu,torch_dtype=float32,max_frames_num={frames}"
    return (
        f"{env} python -m lmms_eval --model holitom_llava --model_args {shlex.quote(args)} "
        f"--tasks {','.join(SMOKE_TASKS)} --include_path {shlex.quote(TASKS_DIR)} --batch_size 1 "
        f"--output_path {shlex.quote(os.path.join(root, 'results'))}"
    )


def add_smoke_setup_arguments(parser) -> None:
    parser.add_argument("out_dir", help="folder for the tiny checkpoint (tiny_<kind>) and the videos (hf_home)")
    parser.add_argument("--kind", choices=("onevision", "video", "qwen2.5-vl", "qwen3-vl"), default="onevision", help="default: %(default)s")


def run_smoke_setup(args) -> int:
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise ValueError(f"OUT_DIR={args.out_dir!r} exists and is not a directory")
    checkpoint = prepare_tiny_checkpoint(args.out_dir, args.kind)
    hf_home = prepare_smoke_data(args.out_dir)
    print(f"tiny {args.kind} checkpoint: {checkpoint}\nsmoke videos: {hf_home}\nrun the smoke tasks with:\n")
    print(smoke_command(args.out_dir, args.kind))
    return 0
