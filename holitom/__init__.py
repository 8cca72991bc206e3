"""HoliTom: holistic token merging for video LLMs (LLaVA-OneVision / LLaVA-Video).

    import holitom
    holitom.apply(model, holitom.HoliTomConfig.preset("ov-7b", retain_ratio=0.10))
    ...
    holitom.remove(model)
"""

from __future__ import annotations

from typing import Any

from holitom.config import HoliTomConfig

__version__ = "0.1.0"
__all__ = ["HoliTomConfig", "apply", "apply_method", "remove", "METHODS"]


def __getattr__(name: str) -> Any:
    # Model-side pieces import transformers; keep `import holitom` light for the pure functions.
    if name in ("apply", "apply_method", "remove", "METHODS"):
        from holitom import methods

        return getattr(methods, name)
    raise AttributeError(f"module 'holitom' has no attribute {name!r}")
