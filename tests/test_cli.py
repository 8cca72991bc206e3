"""The `holitom` command line end to end on a tiny checkpoint and a synthetic video."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from holitom.cli import main
from holitom.tools.synthetic import write_synthetic_video


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("video") / "square.mp4")
    write_synthetic_video(path, num_frames=24, size=(96, 64), fps=8)
    return path


def test_make_tiny_cli_writes_a_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "tiny-video"
    assert main(["make-tiny", str(out), "--kind", "video"]) == 0
    assert "wrote tiny video checkpoint" in capsys.readouterr().out
    from conftest import load

    _, model, _, _ = load(str(out))
    assert model.config.mm_newline_position == "grid" and model.config.mm_spatial_pool_mode == "average"


def test_generate_vanilla_and_holitom(tiny_ov, video, capsys):
    base = ["generate", "--model", tiny_ov, "--video", video, "--frames", "8", "--max-new-tokens", "4", "--device", "cpu"]
    assert main([*base, "--method", "vanilla"]) == 0
    out = capsys.readouterr().out
    assert "visual tokens: pooled 1568 → entering the LLM 1569" in out and "answer:" in out
    assert main([*base, "--method", "holitom", "--retain-ratio", "0.25", "--merge-layer", "2", "--merge-ratio", "0.5"]) == 0
    out = capsys.readouterr().out
    entering = int(out.split("entering the LLM ")[1].split()[0])
    surviving = int(out.split("surviving layer 2: ")[1].split()[0])
    assert entering < 1569 and surviving == round(entering * 0.5)
    assert "temporal segments" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--video", "missing.mp4"], "missing.mp4"),
        (["--method", "holitom", "--retain-ratio", "1.5"], "retain_ratio"),
        (["--method", "holitom", "--tau", "nan"], "tau"),
        (["--frames", "0"], "--frames"),
    ],
)
def test_generate_bad_input_is_a_one_line_error(tiny_ov, video, capsys, extra, message):
    args = ["generate", "--model", tiny_ov, "--video", video, "--device", "cpu", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("holitom generate: error:") and "\n" not in err


def test_missing_checkpoint_is_a_one_line_error(tmp_path, video, capsys):
    assert main(["generate", "--model", str(tmp_path / "nothing"), "--video", video]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_python_m_holitom_help():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-m", "holitom", "--help"], capture_output=True, text=True, env=env, check=True)
    for command in ("make-tiny", "generate", "flops", "bench", "tables", "demo"):
        assert command in result.stdout
