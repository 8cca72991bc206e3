"""What a moving environment must not break silently (issue: a fresh install on transformers 5.25 dropped
the video with exit 0): the cache keyword read under every name and refused under an unknown one, loud
errors where a request would lose its video, and one-line errors for the bad inputs a fresh user hits."""

from __future__ import annotations

import inspect
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from conftest import load
from holitom_eval import records
from holitom_eval.plan import load_config
from holitom_eval.runner import claim_out_dir, records_problem
from transformers import DynamicCache
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2Model

import holitom
from holitom.cli import main as cli_main
from holitom.tools.generate import require_visual_tokens
from holitom.tools.synthetic import synthetic_pixels, synthetic_prompt
from llava.errors import HookError
from llava.model.builder import check_weight_shards, resolve_device
from llava.model.cache_compat import CACHE_KEYWORD, CACHE_KEYWORDS, find_cache, output_cache, require_cache

# ---------------------------------------------------------------------------------------------- the cache keyword


def test_the_cache_keyword_is_the_one_this_transformers_declares():
    # Fails when transformers renames it again: then cache_compat.CACHE_KEYWORDS needs the new name.
    for forward in (Qwen2DecoderLayer.forward, Qwen2Model.forward):
        assert CACHE_KEYWORD in inspect.signature(forward).parameters, transformers.__version__
    from transformers.modeling_outputs import CausalLMOutputWithPast

    cache = DynamicCache()
    assert output_cache(CausalLMOutputWithPast(**{CACHE_KEYWORD: cache})) is cache


def test_find_cache_reads_both_names_and_refuses_an_unknown_one():
    cache = DynamicCache()
    for name in CACHE_KEYWORDS:
        assert find_cache({name: cache, "use_cache": True}, "here") is cache
    assert find_cache({"use_cache": False, "past_key_values": None}, "here") is None
    with pytest.raises(HookError, match=rf"here: transformers {transformers.__version__} passes the KV cache as `kv_store=`"):
        find_cache({"kv_store": cache}, "here")
    with pytest.raises(HookError, match="a decode step arrived without a KV cache"):
        require_cache({"use_cache": True}, "here")


def _rename_cache(model, new_name: str = "kv_store") -> list:
    """Simulate a transformers that hands the cache to decoder layers under a name we do not know: every
    hook on a decoder layer sees it as `new_name=`, and the layer itself still gets it under its own name
    (so the cache fills as it would in such a version). Returns an undo list."""

    def rename(module, args, kwargs):
        for name in CACHE_KEYWORDS:
            if kwargs.get(name) is not None:
                kwargs[new_name] = kwargs.pop(name)
        return args, kwargs

    undo = []
    for layer in model.get_model().layers:
        undo.append(layer.register_forward_pre_hook(rename, with_kwargs=True, prepend=True).remove)

        def forward(*args, _real=layer.forward, **kwargs):
            if new_name in kwargs:
                kwargs[CACHE_KEYWORD] = kwargs.pop(new_name)
            return _real(*args, **kwargs)

        layer.forward = forward
        undo.append(lambda layer=layer: layer.__dict__.pop("forward"))
    return undo


@pytest.mark.parametrize(
    "method, settings",
    [
        ("holitom", {"retain_ratio": 0.5, "merge_layer": 2, "merge_ratio": 0.5}),  # inner merge: prefill hooks
        ("dycoke", {"dycoke_layer": 2}),  # decode-time cache pruning: decode-step hooks
        ("pdrop", {"pdrop_layers": (1, 2, 3)}),
    ],
)
def test_a_cache_under_an_unknown_keyword_is_an_error_not_a_silent_skip(tiny_ov, method, settings):
    tokenizer, model, _, _ = load(tiny_ov)
    holitom.apply_method(model, method, **settings)
    undo = _rename_cache(model)
    ids = synthetic_prompt(model.config.vocab_size)
    with pytest.raises(HookError, match=r"passes the KV cache as `kv_store=`"):
        model.generate(ids, images=[synthetic_pixels(4, 384)], modalities=["video"], max_new_tokens=3,
                       min_new_tokens=3, do_sample=False)
    for step in undo:
        step()
    model.generate(ids, images=[synthetic_pixels(4, 384)], modalities=["video"], max_new_tokens=3, do_sample=False)


def test_the_model_forward_refuses_a_cache_under_an_unknown_keyword(tiny_ov):
    _, model, _, _ = load(tiny_ov)
    ids = synthetic_prompt(model.config.vocab_size)
    with pytest.raises(HookError, match="LlavaQwenForCausalLM.forward: transformers .* `kv_store=`"):
        model(input_ids=ids[:, :3].clamp(min=0), kv_store=DynamicCache())


def test_generate_keeps_the_video_in_every_decode_step(tiny_ov):
    """The symptom of the keyword move: decode steps restarted the sequence (visual tokens 0, prompt 1)."""
    _, model, _, _ = load(tiny_ov)
    holitom.apply_method(model, "dycoke", dycoke_layer=2)
    ids = synthetic_prompt(model.config.vocab_size)
    out = model.generate(ids, images=[synthetic_pixels(4, 384)], modalities=["video"], max_new_tokens=4,
                         do_sample=False, min_new_tokens=4)
    stats = holitom.stats(model)
    assert out.shape[1] == 4
    assert stats.pooled_tokens == 4 * 196 and stats.visual_tokens > 0
    assert stats.prompt_tokens == ids.shape[1] - 1 + stats.visual_tokens
    assert stats.decode is not None and stats.decode["steps"] == 3  # every decode step after the first token


def test_a_video_that_reaches_the_llm_as_zero_tokens_is_an_error(tiny_ov):
    _, model, _, _ = load(tiny_ov)
    ids = synthetic_prompt(model.config.vocab_size)
    text_only = ids[ids >= 0][None]
    with pytest.raises(ValueError, match="no <image> placeholder"):
        model.generate(text_only, images=[synthetic_pixels(2, 384)], modalities=["video"], max_new_tokens=2)
    stats = holitom.stats(model)
    with pytest.raises(HookError, match=r"holitom generate: the request carried 1 image/video input\(s\) but 0 visual"):
        require_visual_tokens(type(stats)(method="vanilla", settings={}, pooled_tokens=0, visual_tokens=0,
                                          prompt_tokens=5), 1, "holitom generate")
    require_visual_tokens(type(stats)(method="vanilla", settings={}, pooled_tokens=0, visual_tokens=0,
                                      prompt_tokens=5), 0, "text only")


# ---------------------------------------------------------------------------------------------- bad inputs


def _shard(path: Path, tensors: int = 2, cut: int | None = None) -> None:
    from safetensors.torch import save_file

    save_file({f"w{i}": torch.zeros(64) for i in range(tensors)}, str(path))
    if cut is not None:
        data = path.read_bytes()
        path.write_bytes(data[:cut])


def test_damaged_weight_shards_are_named(tmp_path):
    _shard(tmp_path / "model-00001-of-00002.safetensors")
    check_weight_shards(str(tmp_path))  # whole: passes
    _shard(tmp_path / "model-00002-of-00002.safetensors", cut=-10)
    with pytest.raises(ValueError, match=r"weight shard model-00002-of-00002.safetensors is damaged \(truncated: \d+ bytes of \d+\)"):
        check_weight_shards(str(tmp_path))
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"model-00002-of-00002.safetensors is damaged \(0 bytes, not a safetensors file\)"):
        check_weight_shards(str(tmp_path))
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(struct.pack("<Q", 500) + b'{"w0": ')
    with pytest.raises(ValueError, match=r"00002-of-00002.safetensors is damaged \(its header is cut off or unreadable\)"):
        check_weight_shards(str(tmp_path))


def test_a_truncated_shard_of_a_real_checkpoint_fails_in_one_line(tiny_ov, tmp_path, capsys):
    import shutil

    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_ov, copy)
    shard = sorted(copy.glob("*.safetensors"))[-1]
    shard.write_bytes(shard.read_bytes()[:1000])
    video = tmp_path / "v.mp4"
    from holitom.tools.synthetic import write_synthetic_video

    write_synthetic_video(str(video), num_frames=4)
    assert cli_main(["generate", "--model", str(copy), "--video", str(video), "--question", "q", "--frames", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"weight shard {shard.name} is damaged (truncated" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_one_line():
    with pytest.raises(ValueError, match=r"--device='cuda': CUDA is not available on this machine"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"--device='tpu': "):
        resolve_device("tpu")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.parametrize(
    "content, message",
    [
        ("[]", "expected a JSON object, got an array"),
        ("null", "expected a JSON object, got null"),
        ('{"results": 5}', "`results` must map task names to objects"),
        ('{"results": {"videomme": 3}}', "`results` must map task names to objects"),
        ('{"results": {}, "config": []}', "`config` must be an object"),
        ('{"results": {"videomme": {"acc', "not valid JSON (truncated?)"),
    ],
)
def test_bad_results_files_are_named(tmp_path, capsys, content, message):
    path = tmp_path / "run" / "20250101_000000_results.json"
    path.parent.mkdir()
    path.write_text(content)
    assert cli_main(["tables", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"results file {path}: " in err and message in err


def test_tables_take_several_folders_and_refuse_a_file_as_out(tmp_path, capsys):
    import shutil

    from test_tables import FIXTURE

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(FIXTURE, a)
    shutil.copytree(FIXTURE, b)
    (tmp_path / "t.md").write_text("keep me")
    assert cli_main(["tables", str(a), str(b), "--out", str(tmp_path / "t.md")]) == 2
    assert "--out " in capsys.readouterr().err and (tmp_path / "t.md").read_text() == "keep me"
    assert cli_main(["tables", str(a), str(b), "--paper", "table1", "--out", str(tmp_path / "both"), "--no-plot"]) == 0
    rows = json.loads((tmp_path / "both" / "tables.json").read_text())
    runs = {run for row in rows for run in row["runs"]}
    assert any(r.startswith("a/") for r in runs) and any(r.startswith("b/") for r in runs)


def test_flops_into_a_closed_pipe_exits_quietly():
    script = "from holitom.cli import main; import sys; sys.exit(main(['flops', '--paper', '--json']))"
    proc = subprocess.run(
        f"{sys.executable} -c \"{script}\" | true", shell=True, capture_output=True, text=True,
        executable="/bin/bash", cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stderr == ""


def test_malformed_sweep_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nruns:\n  - name: a\n    method: [holitom\n")
    with pytest.raises(ValueError, match=rf"config {path}:5:1: malformed YAML: expected ',' or '\]'"):
        load_config(path)


# ---------------------------------------------------------------------------------------------- concurrent sweeps


def test_a_second_sweep_into_the_same_out_refuses_naming_the_holder(tmp_path):
    held = claim_out_dir(str(tmp_path), "first")
    with pytest.raises(ValueError, match=r"is in use by sweep first \(pid \d+ on .*, since .*\); wait for it"):
        claim_out_dir(str(tmp_path), "second")
    held.close()  # the holder ends: the folder is free again
    claim_out_dir(str(tmp_path), "third").close()


def test_a_second_sweep_process_refuses(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    config = tmp_path / "c.yaml"
    config.write_text("name: c\nmodel: m\ntasks: [t]\nruns:\n  - name: v\n    method: vanilla\n")
    held = claim_out_dir(str(tmp_path / "out"), "c")
    proc = subprocess.run(
        [sys.executable, str(repo / "scripts" / "sweep.py"), str(config), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=repo,
    )
    held.close()
    assert proc.returncode == 2 and proc.stderr.strip().startswith("sweep: error: ") and "in use by sweep c (pid" in proc.stderr
    assert not list((tmp_path / "out").glob("*/" + records.RUN_SPEC))  # nothing ran


def test_records_without_visual_tokens_refuse_the_tick(tmp_path):
    assert records_problem(str(tmp_path)) == "the model wrote no per-request records"
    path = tmp_path / records.samples_file(0)
    path.write_text(json.dumps({"visual_inputs": 1, "visual_tokens": 1569}) + "\n")
    assert records_problem(str(tmp_path)) is None
    with path.open("a") as fh:
        fh.write(json.dumps({"visual_inputs": 1, "visual_tokens": 0}) + "\n")
        fh.write(json.dumps({"visual_inputs": 0, "visual_tokens": 0}) + "\n")  # a text-only request
    assert records_problem(str(tmp_path)) == "1 of 3 requests carried a video but put 0 visual tokens into the LLM"


# ---------------------------------------------------------------------------------------------- the lock


def _lock() -> dict[str, str]:
    import re

    pins = {}
    for line in (Path(__file__).resolve().parents[1] / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.\-]+)", line)
        assert match, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def test_the_lock_pins_every_declared_dependency_within_its_range():
    import re

    import tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["eval"] + project["optional-dependencies"]["test"]
    pins = _lock()
    for text in declared:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{requirement.name} is declared in pyproject.toml but not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's {requirement.specifier}"
        )
    assert "torch" in pins and "==" not in "".join(d for d in project["dependencies"] if d.startswith("torch"))
    assert len(pins) > 100  # the whole environment, not only the direct dependencies
