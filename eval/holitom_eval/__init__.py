"""lmms-eval harness for HoliTom: the `holitom_llava` model plugin, smoke tasks, and the sweep runner.

lmms-eval finds the model through the `lmms_eval.models` entry point (`manifest` below); from a source
checkout without installation the runner sets `LMMS_EVAL_PLUGINS=holitom_eval` instead, which lmms-eval
resolves to `holitom_eval.models.AVAILABLE_MODELS`.
"""

from __future__ import annotations

import os

MODEL_NAME = "holitom_llava"
MODEL_CLASS_PATH = "holitom_eval.models.holitom_llava.HoliTomLlava"
TASKS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tasks")


def manifest():
    """Entry point payload for lmms-eval's `lmms_eval.models` group."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_NAME, simple_class_path=MODEL_CLASS_PATH)
