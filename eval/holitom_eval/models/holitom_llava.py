"""`holitom_llava`: an lmms-eval model that runs LLaVA-OneVision / LLaVA-Video with a token-reduction method:
our `llava` package for lmms-lab checkpoints, transformers' `LlavaOnevisionForConditionalGeneration` for
llava-hf checkpoints, `Qwen2_5_VLForConditionalGeneration` / `Qwen3VLForConditionalGeneration` for Qwen2.5-VL /
dense Qwen3-VL checkpoints (told apart by the config's model_type; videos only on the transformers models; Qwen-VL
prompts use the checkpoint's chat template, Qwen3-VL's a timestamp per temporal patch, and their frames our
torchvision-free preprocessing, `holitom.hosts.qwen_vl_io`).

    python -m lmms_eval --model holitom_llava \\
        --model_args pretrained=lmms-lab/llava-onevision-qwen2-7b-ov,method=holitom,retain_ratio=0.10,tau=0.65 \\
        --tasks mvbench --batch_size 1

Model args are validated by `holitom_eval.settings.parse_model_args` (unknown name → error listing the
valid ones). Videos are sampled uniformly with `llava.video.load_video`; prompts use the llava conversation
template; generation is greedy unless the task says otherwise. Batch size 1 (inner-LLM merging works on one
sequence). Under `accelerate launch --num_processes N` every process holds a full model on its own GPU and
lmms-eval splits the documents by rank; `device_map=auto` instead shards one model over all visible GPUs in
a single process (72B).

Per request it records the visual tokens entering the LLM, those left after each reduction inside it, and
the prefill FLOPs those counts give (paper formula, `holitom.flops.schedule_flops` of `holitom.stats`):
logged as a summary, returned to lmms-eval as token counts, and written to
`<stats_dir>/holitom_samples_rank<R>.jsonl` when `stats_dir` is set; `<stats_dir>/holitom_run.json` holds
the settings and the paper-style FLOPs of the configuration (file names: `holitom_eval.records`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any, NamedTuple

import torch
from accelerate import Accelerator, DistributedType, InitProcessGroupKwargs
from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from loguru import logger as eval_logger
from PIL import Image
from tqdm import tqdm

import holitom
from holitom.flops import method_flops, schedule_flops
from holitom.shapes import get_shape
from holitom.tools.generate import require_visual_tokens
from holitom_eval import records
from holitom_eval.settings import PluginSettings, parse_model_args

STATS_ENV = "HOLITOM_STATS_DIR"


class MissingVideo(SystemExit):
    """A video a request needs is missing or unreadable: the run stops with a non-zero exit status and this
    message. (lmms-eval catches every Exception around an evaluation, prints it and exits 0; a SystemExit
    passes through, so a run with missing data can never look finished.)"""


class QwenVideo(NamedTuple):
    """A Qwen-VL request's video: uint8 frames (T, H, W, 3), their sampled rate (None: unknown) and each frame's time
    in the source video (Qwen3-VL's timestamps; None: unknown)."""

    frames: torch.Tensor
    fps: float | None
    seconds: list[float] | None = None


class HoliTomLlava(lmms):
    """LLaVA-OneVision / LLaVA-Video (our `llava` package) with vanilla, HoliTom, VisionZip or FastV."""

    is_simple = True

    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        self.settings: PluginSettings = parse_model_args(model_args)
        s = self.settings
        from llava.conversation import conv_templates

        if s.conv_template not in conv_templates:
            raise ValueError(
                f"conv_template={s.conv_template!r}: valid templates are {sorted(conv_templates)}"
            )
        self.conv_template = s.conv_template
        self.max_frames_num = s.max_frames_num

        accelerator = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(weeks=52))])
        device, device_map = self._placement(accelerator)
        dtype = s.torch_dtype or (
            "float16" if (device_map == "auto" or device.startswith("cuda")) else "float32"
        )

        from holitom import methods
        from holitom.hosts import hf_onevision_io, qwen_vl_io
        from llava.model.builder import load_pretrained_model, read_model_config

        # our llava checkpoints (lmms-lab), transformers' LLaVA-OneVision (llava-hf) or a Qwen-VL, by model_type
        hf_config = hf_onevision_io.read_hf_config(s.pretrained)
        qwen_config = None if hf_config is not None else qwen_vl_io.read_config(s.pretrained)
        self._on_hf, self._on_qwen = hf_config is not None, qwen_config is not None
        self._family = qwen_vl_io.family_of(qwen_config) if self._on_qwen else None
        self._label = self._family.label if self._family else "LLaVA-OneVision"
        if (self._on_hf or self._on_qwen) and s.overwrite_config:
            raise ValueError(
                f"{sorted(s.overwrite_config)}: transformers' {self._label} "
                "has a fixed layout; these overrides apply to lmms-lab checkpoints only"
            )
        # settings that cannot apply to this checkpoint fail before any weights are loaded
        config = hf_config or qwen_config or read_model_config(s.pretrained, dict(s.overwrite_config) or None)
        methods.config_for(s.method, s.method_settings, config)
        if self._on_qwen:
            self._tokenizer, self._model = qwen_vl_io.load_model(
                s.pretrained, config, device_map=device_map, torch_dtype=dtype, attn_implementation=s.attn_implementation
            )
            self._image_processor = None
            self._qwen_pixels = qwen_vl_io.pixel_bounds(s.pretrained, self._family)
            self._chat_template = qwen_vl_io.chat_template(s.pretrained, self._tokenizer)
            self._max_length = int(config.text_config.max_position_embeddings)
            self._device = self._model.model.language_model.embed_tokens.weight.device
        elif self._on_hf:
            self._tokenizer, self._model = hf_onevision_io.load_model(
                s.pretrained, config, device_map=device_map, torch_dtype=dtype, attn_implementation=s.attn_implementation
            )
            self._image_processor = hf_onevision_io.frame_processor(s.pretrained)
            self._max_length = int(config.text_config.max_position_embeddings)
            self._device = self._model.model.language_model.embed_tokens.weight.device
        else:
            self._tokenizer, self._model, self._image_processor, self._max_length = load_pretrained_model(
                s.pretrained,
                None,
                "llava_qwen",
                device_map=device_map,
                torch_dtype=dtype,
                attn_implementation=s.attn_implementation,
                overwrite_config=dict(s.overwrite_config) or None,
            )
            self._device = self._model.get_model().embed_tokens.weight.device
        self._model.eval()
        holitom.apply_method(self._model, s.method, **s.method_settings)
        # the settings in force: the given ones, then the paper's values for this model, then the defaults
        self.method_config = holitom.stats(self._model).settings

        if accelerator.num_processes > 1:
            # Data parallel: one full model per process, documents split by rank; no gradient sync needed.
            self.accelerator = accelerator
            self._rank = accelerator.process_index
            self._world_size = accelerator.num_processes
        else:
            self._rank, self._world_size = 0, 1

        if self._on_qwen:
            # a Qwen-VL video's tokens follow from its resolution: the shape (and the paper-style FLOPs) of the
            # first video seen (`_qwen_video_shape`); until then a 448×448 one
            from holitom.shapes import qwen_shape_from_config

            self._qwen_shape = qwen_shape_from_config(self._model.config, s.pretrained)
            self.shape = self._qwen_shape.model_shape(s.max_frames_num, 448, 448)
            self._qwen_video: tuple[int, int, int] | None = None
            self.paper_flops = None
        else:
            self.shape = get_shape(self._model.config.to_dict())
            self.paper_flops = self._paper_flops()
        self.stats_dir = s.stats_dir or os.environ.get(STATS_ENV) or None
        self._totals = {"requests": 0, "visual_tokens": 0, "visual_kept": 0, "tflops": 0.0}
        if self.stats_dir:
            os.makedirs(self.stats_dir, exist_ok=True)
            if self._rank == 0:
                self._run_record = self._make_run_record(dtype, device_map)
                self._write_run_record()
        if self._rank == 0:
            summary = self.paper_flops.summary() if self.paper_flops else f"n/a ({self._label}: from the first video)"
            eval_logger.info(
                f"holitom_llava: method={s.method} {s.method_settings}; paper-style FLOPs: {summary}"
            )

    # ---- placement ---------------------------------------------------------------------------------
    def _placement(self, accelerator: Accelerator) -> tuple[str, str]:
        """(device, device_map) for this process, the way lmms-eval's llava wrappers place models."""
        s = self.settings
        if accelerator.num_processes > 1:
            if s.device_map == "auto":
                raise ValueError(
                    "device_map=auto shards one model over all GPUs in a single process; "
                    "do not combine it with accelerate launch --num_processes > 1"
                )
            if accelerator.distributed_type not in (DistributedType.MULTI_GPU, DistributedType.MULTI_CPU):
                raise ValueError(
                    f"holitom_llava supports plain data parallelism (MULTI_GPU / MULTI_CPU), "
                    f"not {accelerator.distributed_type}; run `accelerate launch` without FSDP/DeepSpeed"
                )
            if torch.cuda.is_available() and s.device != "cpu":
                device = f"cuda:{accelerator.local_process_index}"
            else:
                device = "cpu"
            return device, device
        from llava.model.builder import resolve_device

        device = resolve_device(s.device)
        if s.device_map == "auto":
            return device, "auto"
        return device, s.device_map or device

    # ---- FLOPs and records ---------------------------------------------------------------------------
    def _paper_flops(self):
        """Prefill FLOPs of this configuration as the paper counts them (None if not countable)."""
        s = self.settings
        try:
            return method_flops(self.shape, frames=self.shape.frames if self._on_qwen else s.max_frames_num,
                                method=s.method, **self.method_config)  # fmt: skip
        except ValueError as exc:
            eval_logger.warning(f"holitom_llava: no paper-style FLOPs for this configuration: {exc}")
            return None

    def _qwen_video_shape(self, frames: int, height: int, width: int) -> None:
        """On the first Qwen-VL video: the shape (temporal patches, tokens per patch at its resolution within the
        checkpoint's pixel bounds) and the paper-style FLOPs of the run, written into the run record."""
        if self._qwen_video is not None:
            return
        import dataclasses

        low, high = self._qwen_pixels
        self._qwen_video = (frames, height, width)
        self.shape = self._qwen_shape.model_shape(frames, height, width, min_pixels=low, max_pixels=high)
        self.paper_flops = self._paper_flops()
        if self.paper_flops is not None:
            t, rows, cols = self._qwen_shape.grid(frames, height, width, min_pixels=low, max_pixels=high)
            video = f"{frames} frames of {height}×{width} px (the first video) → {t} temporal patches of {rows}×{cols} tokens"
            self.paper_flops = dataclasses.replace(self.paper_flops, video=video)
        record = getattr(self, "_run_record", None)
        if record is not None:
            record.update(shape=asdict(self.shape), paper_flops=self.paper_flops.as_dict() if self.paper_flops else None)
            self._write_run_record()

    def _make_run_record(self, dtype: str, device_map: str) -> dict[str, Any]:
        """Settings and provenance of this run (`holitom_eval.records.RUN_RECORD`)."""
        from holitom.tools.provenance import device_names, environment

        s = self.settings
        return {
            "model": "holitom_llava",
            "pretrained": s.pretrained,
            "method": s.method,
            "method_settings": s.method_settings,
            "method_config": self.method_config,
            "max_frames_num": s.max_frames_num,
            "video_fps": s.video_fps,
            "conv_template": s.conv_template,
            "overwrite_config": s.overwrite_config,
            "torch_dtype": dtype,
            "attn_implementation": s.attn_implementation,
            "device_map": device_map,
            "devices": device_names(self._model),
            "world_size": self._world_size,
            "video_backend": s.video_backend,
            "versions": environment(),
            "decoding": {},
            "shape": asdict(self.shape),
            "paper_flops": self.paper_flops.as_dict() if self.paper_flops else None,
        }

    def _write_run_record(self) -> None:
        with open(os.path.join(self.stats_dir, records.RUN_RECORD), "w") as fh:
            json.dump(self._run_record, fh, indent=2)

    def _note_decoding(self, task: str, kwargs: dict[str, Any], until: list[str]) -> None:
        """Record each task's decoding settings in the run record (rewritten when a task is first seen)."""
        record = getattr(self, "_run_record", None)
        if record is None or task in record["decoding"]:
            return
        record["decoding"][task] = {**{k: v for k, v in kwargs.items() if _jsonable(v)}, "until": until}
        self._write_run_record()

    def _record(self, record: dict[str, Any], visual_inputs: int) -> None:
        """Add the measured counts of the last forward/generate to `record`, keep totals, append to file.
        A request with images/videos that put 0 visual tokens into the LM is an error, not a statistic."""
        stats = holitom.stats(self.model)
        require_visual_tokens(stats, visual_inputs, f"holitom_llava: task {record['task']!r}, doc {record['doc_id']}")
        record["visual_inputs"] = visual_inputs
        kept = stats.visual_after if stats.stages else None
        record.update(
            pooled_tokens=stats.pooled_tokens,
            visual_tokens=stats.visual_tokens,
            inner_layer=stats.stages[0]["layer"] if stats.stages else None,
            visual_kept=kept,
            stages=stats.stages,
            prompt_tokens=stats.prompt_tokens,
            tflops=schedule_flops(self.shape, stats.schedule) / 1e12,
        )
        if stats.decode:
            record["decode"] = stats.decode
        visual_in = stats.visual_tokens
        totals = self._totals
        totals["requests"] += 1
        totals["visual_tokens"] += visual_in
        totals["visual_kept"] += visual_in if kept is None else kept
        totals["tflops"] += record["tflops"]
        if self.stats_dir:
            path = os.path.join(self.stats_dir, records.samples_file(self._rank))
            with open(path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def _log_totals(self, what: str) -> None:
        t = self._totals
        if t["requests"] and self._rank == 0:
            n = t["requests"]
            eval_logger.info(
                f"holitom_llava {what}: {n} requests on rank 0, mean visual tokens {t['visual_tokens'] / n:.1f} "
                f"(after inner reduction {t['visual_kept'] / n:.1f}), mean prefill {t['tflops'] / n:.3f} TFLOPs"
            )

    # ---- lmms-eval interface ----------------------------------------------------------------------------
    @property
    def model(self):
        return self._model

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def batch_size(self) -> int:
        return 1

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def eot_token_id(self) -> int:
        return self._tokenizer.eos_token_id

    # ---- inputs ----------------------------------------------------------------------------------------
    def _load_video(self, path: str, task: str, doc_id: int) -> torch.Tensor:
        from llava.video import VideoLoadError, load_video

        path = os.fspath(path)
        if not os.path.isfile(path):
            hf_home = os.path.expanduser(os.environ.get("HF_HOME", "~/.cache/huggingface"))
            raise MissingVideo(
                f"holitom_llava: task {task!r}, doc {doc_id}: video not found at {path} (the path lmms-eval's task "
                f"built; task videos live under HF_HOME={hf_home}). Download and unpack the benchmark videos there "
                f"(see docs/reproduce.md)"
            )
        try:
            frames, info = load_video(
                path, self.max_frames_num, backend=self.settings.video_backend, fps=self.settings.video_fps
            )
        except VideoLoadError as exc:
            raise MissingVideo(f"holitom_llava: task {task!r}, doc {doc_id}: {exc}") from None
        if self._on_qwen:  # raw uint8 frames and their rate: `_inputs` lays out Qwen's processor inputs
            from holitom.hosts.qwen_vl_io import frame_seconds, sampled_fps

            self._qwen_video_shape(*frames.shape[:3])
            return QwenVideo(torch.as_tensor(frames), sampled_fps(info, len(frames)), frame_seconds(info))
        pixels = self._image_processor.preprocess(frames, return_tensors="pt")["pixel_values"]
        return pixels.to(device=self.device, dtype=self.model.dtype)

    def _visual_inputs(self, visuals: Any, task: str, doc_id: int) -> tuple[list[torch.Tensor], list[str]]:
        """doc_to_visual output → (tensors, modalities): video paths → frames, PIL images → one tile each."""
        if visuals is None:
            return [], []
        if not isinstance(visuals, (list, tuple)):
            visuals = [visuals]
        tensors, modalities = [], []
        for item in visuals:
            if isinstance(item, (str, os.PathLike)):
                tensors.append(self._load_video(item, task, doc_id))
                modalities.append("video")
            elif isinstance(item, Image.Image) and (self._on_hf or self._on_qwen):
                raise ValueError(
                    f"task {task!r}, doc {doc_id}: holitom_llava runs transformers' "
                    f"{self._label} on videos only (images need its own processor)"
                )
            elif isinstance(item, Image.Image):
                pixels = self._image_processor.preprocess(item, return_tensors="pt")["pixel_values"]
                tensors.append(pixels.to(device=self.device, dtype=self.model.dtype))
                modalities.append("image")
            else:
                raise ValueError(
                    f"task {task!r}, doc {doc_id}: unsupported visual input {type(item).__name__}; "
                    "holitom_llava takes video file paths and PIL images"
                )
        return tensors, modalities

    def _doc_visuals(self, doc_to_visual, doc_id: int, task: str, split: str) -> Any:
        doc = self.task_dict[task][split][doc_id]
        try:
            return doc_to_visual(doc)
        except MissingVideo:
            raise
        except SystemExit as exc:
            # Some task utils (egoschema, videomme) sys.exit() with the missing path: say what it means.
            hf_home = os.path.expanduser(os.environ.get("HF_HOME", "~/.cache/huggingface"))
            raise MissingVideo(
                f"holitom_llava: task {task!r}, doc {doc_id}: {exc.code} (task videos live under HF_HOME={hf_home}; "
                "see docs/reproduce.md)"
            ) from None

    def _inputs(self, context: str, tensors: list[torch.Tensor], modalities: list[str]) -> dict[str, Any]:
        """The model's inputs for one request: the prompt in the conversation template with a placeholder per
        visual (our llava models: <image> → IMAGE_TOKEN_INDEX, spliced by the model; transformers' model:
        <video> repeated F·N + 1 times, as its processor does) and the pixels."""
        from holitom.hosts import hf_onevision_io
        from llava.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX
        from llava.conversation import conv_templates
        from llava.mm_utils import tokenizer_image_token

        if self._on_qwen:
            return self._qwen_inputs(context.replace(DEFAULT_IMAGE_TOKEN, "").strip(), tensors)

        placeholder = hf_onevision_io.VIDEO_TOKEN if self._on_hf else DEFAULT_IMAGE_TOKEN
        if self._on_hf:
            context = context.replace(DEFAULT_IMAGE_TOKEN, placeholder)
        if tensors and placeholder not in context:
            context = " ".join([placeholder] * len(tensors)) + "\n" + context
        conv = conv_templates[self.conv_template].copy()
        conv.append_message(conv.roles[0], context)
        conv.append_message(conv.roles[1], None)
        if self._on_hf:
            inputs = hf_onevision_io.video_inputs(self._tokenizer, self.model.config, conv.get_prompt(), tensors)
            return {k: v.to(self.device) for k, v in inputs.items()}
        ids = tokenizer_image_token(conv.get_prompt(), self._tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt")
        ids = ids[None].to(self.device)
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "images": tensors or None,
            "modalities": modalities or None,
        }

    def _qwen_inputs(self, context: str, videos: list[QwenVideo]) -> dict[str, Any]:
        """Qwen-VL: the checkpoint's chat template (the video first, then the task's text), Qwen's layout."""
        from holitom.hosts import qwen_vl_io

        if len(videos) > 1:
            raise ValueError(f"{len(videos)} videos in one request: holitom_llava takes one video per {self._label} prompt")
        prompt = qwen_vl_io.video_prompt(self._tokenizer, self._chat_template, context, video=bool(videos))
        if videos:
            video = videos[0]
            inputs = qwen_vl_io.video_inputs(
                self._tokenizer, self.model.config, prompt, video.frames, self._qwen_pixels, video.fps, video.seconds
            )
            inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.model.dtype)
        else:
            ids = self._tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        return {k: v.to(self.device) for k, v in inputs.items()}

    # ---- requests -------------------------------------------------------------------------------------
    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        results = []
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="holitom_llava generate")
        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            visuals = self._doc_visuals(doc_to_visual, doc_id, task, split)
            tensors, modalities = self._visual_inputs(visuals, task, doc_id)
            inputs = self._inputs(context, tensors, modalities)
            kwargs, until = _generation_kwargs(gen_kwargs)
            self._note_decoding(task, kwargs, until)
            pad = self._tokenizer.pad_token_id
            start = time.perf_counter()
            with torch.inference_mode():
                out = self.model.generate(
                    **inputs, pad_token_id=self._tokenizer.eos_token_id if pad is None else pad, **kwargs
                )
            if self._on_hf or self._on_qwen:  # transformers returns the prompt ids too
                out = out[:, inputs["input_ids"].shape[1] :]
            text = _cut_at_stop(self._tokenizer.decode(out[0], skip_special_tokens=True).strip(), until)
            record = {
                "task": task,
                "doc_id": doc_id,
                "request": "generate_until",
                "seconds": time.perf_counter() - start,
            }
            record["output_tokens"] = int(out.shape[1])
            self._record(record, len(tensors))
            results.append(
                GenerationResult(
                    text, TokenCounts(input_tokens=record["prompt_tokens"], output_tokens=int(out.shape[1]))
                )
            )
            bar.update(1)
        bar.close()
        self._log_totals("generate_until")
        return results

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """Sum of log-probabilities of the continuation's tokens given the prompt, and whether greedy
        decoding reproduces it. (lmms-eval's stock llava wrappers return the mean loss instead.)"""
        results = []
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="holitom_llava loglikelihood")
        for request in requests:
            context, target, doc_to_visual, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            continuation = target if isinstance(target, str) else target(doc)
            visuals = self._doc_visuals(doc_to_visual, doc_id, task, split)
            tensors, modalities = self._visual_inputs(visuals, task, doc_id)
            inputs = self._inputs(context, tensors, modalities)
            cont = torch.tensor(
                self._tokenizer.encode(continuation, add_special_tokens=False), dtype=torch.long
            )
            if cont.numel() == 0:
                raise ValueError(f"task {task!r}, doc {doc_id}: empty continuation {continuation!r}")
            cont = cont[None].to(self.device)
            if "mm_token_type_ids" in inputs:  # Qwen-VL: the continuation is text (type 0)
                types = inputs["mm_token_type_ids"]
                inputs["mm_token_type_ids"] = torch.cat([types, types.new_zeros(cont.shape)], dim=1)
            inputs["input_ids"] = torch.cat([inputs["input_ids"], cont], dim=1)
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
            n = cont.shape[1]
            start = time.perf_counter()
            with torch.inference_mode():
                # The continuation ends the sequence, so its predictions are the last n+1 logits whatever a
                # reduction method removed from the visual span.
                logits = self.model(**inputs, logits_to_keep=n + 1).logits[0, :n].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            target_ids = cont[0]
            total = float(logprobs.gather(-1, target_ids[:, None]).sum())
            greedy = bool((logprobs.argmax(dim=-1) == target_ids).all())
            self._record(
                {
                    "task": task,
                    "doc_id": doc_id,
                    "request": "loglikelihood",
                    "seconds": time.perf_counter() - start,
                },
                len(tensors),
            )
            results.append((total, greedy))
            bar.update(1)
        bar.close()
        self._log_totals("loglikelihood")
        return results

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("holitom_llava does not implement multi-round generation tasks")


def _generation_kwargs(gen_kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Task generation kwargs → (kwargs for generate, stop strings). Greedy unless do_sample is set."""
    kwargs = dict(gen_kwargs or {})
    until = kwargs.pop("until", None) or []
    if isinstance(until, str):
        until = [until]
    kwargs.pop("image_aspect_ratio", None)
    kwargs.setdefault("max_new_tokens", 1024)
    if not kwargs.get("do_sample", False):
        kwargs["do_sample"] = False
        for name in ("temperature", "top_p", "top_k"):
            kwargs.pop(name, None)
    kwargs.setdefault("num_beams", 1)
    return kwargs, [s for s in until if s]


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, tuple))


def _cut_at_stop(text: str, until: list[str]) -> str:
    """Text up to the first stop string (lmms-eval's `until` contract)."""
    cut = min((i for i in (text.find(s) for s in until) if i >= 0), default=len(text))
    return text[:cut]
