"""lmms-eval's STOCK llava wrappers (`llava_onevision`, `llava_vid`) run our `llava` package unchanged: a tiny
checkpoint, CPU, and a two-document local task with the record format and scoring code of mvbench / videomme."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "eval"))

from holitom_eval import TASKS_DIR  # noqa: E402
from holitom_eval.smoke import prepare_smoke_data  # noqa: E402


def _run_stock(
    model: str, model_args: str, task: str, out: Path, hf_home: str
) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        HF_HOME=hf_home,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.pop("LMMS_EVAL_PLUGINS", None)  # only lmms-eval's own models here
    cmd = [
        sys.executable,
        "-m",
        "lmms_eval",
        "--model",
        model,
        "--model_args",
        model_args,
        "--device",
        "cpu",
        "--tasks",
        task,
        "--include_path",
        TASKS_DIR,
        "--batch_size",
        "1",
        "--log_samples",
        "--output_path",
        str(out),
        "--verbosity",
        "DEBUG",  # DEBUG: errors propagate (non-zero exit)
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


pytestmark = pytest.mark.slow  # end to end through lmms-eval

@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> str:
    return prepare_smoke_data(tmp_path_factory.mktemp("stock"))


def _outputs(out: Path, task: str) -> tuple[dict, list[dict]]:
    (results,) = out.glob("*/*_results.json")
    (samples,) = out.glob(f"*/*_samples_{task}.jsonl")
    return json.loads(results.read_text()), [json.loads(line) for line in samples.read_text().splitlines()]


def test_stock_llava_onevision_runs_our_llava(tiny_ov, hf_home, tmp_path):
    task = "smoke_mvbench_action_sequence"
    args = (
        f"pretrained={tiny_ov},device_map=auto,conv_template=qwen_1_5,max_frames_num=4,model_name=llava_qwen"
    )
    proc = _run_stock("llava_onevision", args, task, tmp_path, hf_home)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results, samples = _outputs(tmp_path, task)
    assert results["config"]["model_backend"].startswith(
        "lmms_eval.models.simple.llava_onevision.Llava_OneVision"
    )
    assert results["n-samples"][task] == {"original": 2, "effective": 2}
    assert results["results"][task]["mvbench_accuracy,none"] in (0.0, 50.0, 100.0)
    assert [s["doc_id"] for s in samples] == [0, 1]
    for sample in samples:
        assert isinstance(sample["filtered_resps"], str)  # the generated answer
        assert sample["mvbench_accuracy"]["gt_answer"] == "A"  # scored by lmms-eval's own mvbench code
    assert "Error in loading video" not in proc.stdout + proc.stderr  # frames reached the model


def test_stock_llava_vid_runs_our_llava(tiny_video, hf_home, tmp_path):
    task = "smoke_videomme"
    args = (
        f"pretrained={tiny_video},device_map=auto,conv_template=qwen_1_5,max_frames_num=4,torch_dtype=float32"
    )
    proc = _run_stock("llava_vid", args, task, tmp_path, hf_home)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results, samples = _outputs(tmp_path, task)
    assert results["n-samples"][task] == {"original": 2, "effective": 2}
    assert len(samples) == 2 and all(isinstance(s["filtered_resps"], str) for s in samples)
