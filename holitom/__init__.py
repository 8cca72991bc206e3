"""HoliTom: holistic token merging for video LLMs (LLaVA-OneVision / LLaVA-Video).

    import holitom
    holitom.apply(model, holitom.HoliTomConfig.preset("ov-7b", retain_ratio=0.10))
    ...
    holitom.remove(model)
"""

from __future__ import annotations

from typing import Any

from holitom.methods.holitom import HoliTomConfig

__version__ = "0.1.0"
__all__ = ["HoliTomConfig", "METHODS", "apply", "apply_method", "remove", "stats"]


def __getattr__(name: str) -> Any:
    # The registry is light (no torch); keep `import holitom` lighter still.
    if name in ("apply", "apply_method", "remove", "stats", "METHODS"):
        from holitom import methods

        return getattr(methods, name)
    raise AttributeError(f"module 'holitom' has no attribute {name!r}")
