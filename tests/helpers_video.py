"""Synthetic videos for tests: the writers live in `holitom.tools.synthetic` (the demo and smoke runs use them too)."""

from holitom.tools.synthetic import (  # noqa: F401
    ENCODERS,
    KINDS,
    SQUARE,
    available_encoders,
    synthetic_frames,
    write_corrupt_video,
    write_empty_video,
    write_synthetic_video,
)
