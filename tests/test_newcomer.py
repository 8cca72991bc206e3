"""What a newcomer hits, item by item: each is a command with its exit status and message (or a document
checked for what it must say)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from holitom.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    from holitom.tools.synthetic import write_synthetic_video

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_synthetic_video(path, num_frames=16, size=(64, 48))
    return str(path)


def _generate(tiny, clip, *extra):
    return ["generate", "--model", tiny, "--video", clip, "--frames", "4", "--max-new-tokens", "2", "--device", "cpu", *extra]


# 1. a layer beyond the model's depth is an error, never a silent "w/o M"
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "holitom", "--merge-layer", "99"], r"merge_layer=99 is beyond this 4-layer LM: layers must be in \[1, 3\]"),
        (["--method", "holitom", "--merge-layer", "4"], r"merge_layer=4 is beyond this 4-layer LM"),
        (["--method", "holitom"], r"merge_layer=18 \(the default\) is beyond this 4-layer LM.*merge_layer none"),
        (["--method", "fastv", "--fastv-layer", "9"], r"fastv_layer=9 is beyond this 4-layer LM"),
    ],
)
def test_layers_beyond_the_depth_are_errors(tiny_ov, clip, capsys, extra, message):
    assert main(_generate(tiny_ov, clip, *extra)) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and len(err.strip().splitlines()) == 1


def test_flops_and_the_plugin_refuse_a_layer_beyond_the_depth(tiny_ov, capsys):
    assert main(["flops", "--model", "ov-7b", "--merge-layer", "40"]) == 2
    assert "merge_layer=40 is beyond this 28-layer LM" in capsys.readouterr().err
    assert main(["flops", "--model", "ov-0.5b"]) == 0  # 0.5B: the 0.5B preset's K=15, not 18
    assert "(→ 320 from layer 15)" in capsys.readouterr().out
    from holitom_eval.models.holitom_llava import HoliTomLlava

    with pytest.raises(ValueError, match=r"merge_layer=18 \(the default\) is beyond this 4-layer LM"):
        HoliTomLlava.create_from_arg_string(f"pretrained={tiny_ov},device=cpu,method=holitom", {})


# 2. scripts/sweep.py with a plain python: it runs in the project's .venv
@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").exists(), reason="needs the project's .venv")
def test_sweep_script_runs_in_the_projects_venv_from_a_plain_python(tmp_path):
    base = getattr(sys, "_base_executable", sys.executable)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    proc = subprocess.run(
        [base, str(REPO / "scripts" / "sweep.py"), str(REPO / "configs" / "onevision_7b.yaml"), "--dry-run", "--out", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{REPO}/.venv/bin/python -m lmms_eval" in proc.stdout


# 3. the smoke tasks with plain `python -m lmms_eval`, and a missing video fails the run
@pytest.mark.slow
def test_smoke_setup_prints_a_working_lmms_eval_command_and_missing_videos_fail(tmp_path, capsys):
    assert main(["smoke-setup", str(tmp_path)]) == 0
    command = capsys.readouterr().out.strip().splitlines()[-1]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    run = subprocess.run(command + " --limit 1 --tasks smoke_egoschema", shell=True, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for video in (tmp_path / "hf_home" / "egoschema" / "videos").glob("*.mp4"):
        video.unlink()
    run = subprocess.run(command + " --limit 1 --tasks smoke_egoschema", shell=True, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode != 0 and "holitom_llava: task 'smoke_egoschema', doc 0: video path:" in run.stdout + run.stderr


# 4. make-tiny onto a file
def test_make_tiny_onto_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("x")
    assert main(["make-tiny", str(target)]) == 2
    assert capsys.readouterr().err.strip() == f"holitom make-tiny: error: OUT_DIR='{target}' exists and is not a directory"


# 5. demo checks before it writes
def test_demo_checks_its_arguments_before_writing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--frames", "0", "--out", str(out)]) == 2
    assert "--frames=0: must be ≥ 1" in capsys.readouterr().err and not out.exists()
    help_text = subprocess.run([sys.executable, "-m", "holitom", "demo", "--help"], capture_output=True, text=True, timeout=120)
    assert "(default: outputs/demo)" in " ".join(help_text.stdout.split())


# 6. Ctrl-C during a sweep: one line, what finished and how to resume
SLOW_FAKE = """#!{python}
import json, os, sys, time
args = sys.argv[sys.argv.index("lmms_eval") + 1:]
opts = {{a: b for a, b in zip(args, args[1:] + [""]) if a.startswith("--") and not b.startswith("--")}}
if "retain_ratio=0.5" in opts["--model_args"]:
    time.sleep(60)
out = os.path.join(opts["--output_path"], "model")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "x_results.json"), "w") as fh:
    json.dump({{"results": {{}}, "config": {{"model": "holitom_llava", "model_args": opts["--model_args"]}}}}, fh)
stats_dir = dict(kv.split("=", 1) for kv in opts["--model_args"].split(","))["stats_dir"]
with open(os.path.join(stats_dir, "holitom_samples_rank0.jsonl"), "w") as fh:
    fh.write(json.dumps({{"visual_inputs": 1, "visual_tokens": 196}}) + "\\n")
"""


def test_ctrl_c_during_a_sweep_is_one_line(tmp_path):
    fake = tmp_path / "fake_python"
    fake.write_text(SLOW_FAKE.format(python=sys.executable))
    fake.chmod(0o755)
    config = tmp_path / "c.yaml"
    config.write_text(
        "name: c\nmodel: m\ntasks: [t]\nruns:\n  - {name: first, method: vanilla}\n"
        "  - {name: second, method: holitom, retain_ratio: 0.5, merge_layer: none}\n"
    )
    env = dict(os.environ, PYTHON=str(fake))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "sweep.py"), str(config), "--out", str(tmp_path / "out"), "--no-tables"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while not (tmp_path / "out" / "second" / "log.txt").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip() == (
        "sweep c: interrupted during second; 1 of 2 run(s) finished (first). "
        "Run the same command again to resume: finished runs are skipped."
    )
    assert "Traceback" not in out + err


# 7. a corrupt video: our one line only
def test_a_corrupt_video_is_one_line_without_decoder_noise(tiny_ov, tmp_path):
    from holitom.tools.synthetic import write_corrupt_video

    bad = tmp_path / "bad.mp4"
    write_corrupt_video(bad)
    proc = subprocess.run(
        [sys.executable, "-m", "holitom", *_generate(tiny_ov, str(bad))], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"holitom generate: error: cannot decode {bad}: not a video or corrupt " + proc.stderr.split("not a video or corrupt ", 1)[1].strip()]
    assert "moov atom" not in proc.stderr and "video_reader.cc" not in proc.stderr


# 8. τ outside (−1, 1]
def test_tau_outside_its_range_warns_and_the_help_says_why(tiny_ov, clip):
    proc = subprocess.run(
        [sys.executable, "-m", "holitom", *_generate(tiny_ov, clip, "--method", "holitom", "--merge-layer", "none", "--tau", "2")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0 and "tau=2.0 is outside (−1, 1]: no two frames are similar enough" in proc.stderr
    help_text = subprocess.run([sys.executable, "-m", "holitom", "generate", "--help"], capture_output=True, text=True).stdout
    assert "outside (−1, 1]" in " ".join(help_text.split())


# 9. the docs stand on their own
def test_docs_do_not_point_outside_the_repository():
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert "../shared" not in text and "holitom.md" not in text and "project spec" not in text, doc.name
    methods = (REPO / "docs" / "methods.md").read_text()
    assert "dp[i] = max(" in methods and "c/2^m" in methods  # the algorithm to the token lives here


# 10. lmms-eval's stock wrappers on CPU
def test_readme_gives_the_stock_wrapper_recipe_on_cpu():
    readme = (REPO / "README.md").read_text()
    assert "--model llava_onevision" in readme and "--device cpu" in readme and "device_map=auto" in readme


# 11. flash attention without flash-attn
@pytest.mark.skipif(__import__("importlib").util.find_spec("flash_attn") is not None, reason="flash-attn installed")
def test_flash_attention_without_flash_attn_is_one_line(tiny_ov, clip, capsys):
    assert main(_generate(tiny_ov, clip, "--attn", "flash_attention_2")) == 2
    assert capsys.readouterr().err.strip() == (
        "holitom generate: error: attn_implementation='flash_attention_2': flash-attn is not installed: "
        "`pip install -e .[gpu]` on a CUDA machine, or use sdpa"
    )


# 12. the README's Python runs as written (with the checkpoint and device swapped for a tiny one)
def test_readme_python_snippet_runs(tiny_ov, clip):
    readme = (REPO / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert "lmms-lab/llava-onevision-qwen2-7b-ov" in snippet and "VIDEO" in snippet
    snippet = snippet.replace('"lmms-lab/llava-onevision-qwen2-7b-ov"', repr(tiny_ov)).replace('"cuda:0"', '"cpu"')
    snippet = snippet.replace('VIDEO = "my_video.mp4"', f"VIDEO = {clip!r}")
    snippet = snippet.replace('holitom.HoliTomConfig.preset("ov-7b", retain_ratio=0.10)', "holitom.HoliTomConfig(retain_ratio=0.10, merge_layer=2)")
    proc = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
