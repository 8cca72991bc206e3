"""Models for lmms-eval's legacy `LMMS_EVAL_PLUGINS=holitom_eval` discovery (name → class in this package)."""

AVAILABLE_MODELS = {"holitom_llava": "HoliTomLlava"}
