"""What an installed method leaves on its host: its parts (hooks, compressor) and its statistics."""

from __future__ import annotations

from typing import Any

PENDING = "pending_installation"


class Installation:
    """One method installed on one host. Parts are objects with `remove()` (and optionally `stats()`);
    outer statistics are recorded per video and belong to the host's current sequence."""

    def __init__(self, method: Any, config: Any, host: Any) -> None:
        self.method, self.config, self.host = method, config, host
        self.parts: list[Any] = []
        self.compressor: Any = None
        self._outer: list[dict[str, Any]] = []
        self._outer_sequence: Any = None
        # Until the install has finished: if it raises half-way, `methods.install` removes what was added.
        host.method_slot[PENDING] = self

    @property
    def name(self) -> str:
        return self.method.name

    def add(self, part: Any) -> Any:
        self.parts.append(part)
        return part

    def set_compressor(self, compressor: Any) -> None:
        """Install the video-token compressor (pooled (F, N, d) → tokens (M, d)) on the host."""
        self.compressor = compressor
        self.host.video_compressor = compressor

    def record_outer(self, **stats: Any) -> None:
        """Statistics of one video's compression, kept for the host's current sequence."""
        sequence = self.host.sequence
        if sequence is not self._outer_sequence:
            self._outer, self._outer_sequence = [], sequence
        self._outer.append(stats)

    def outer_stats(self) -> list[dict[str, Any]]:
        return list(self._outer) if self._outer_sequence is self.host.sequence else []

    def stage_stats(self) -> list[dict[str, int]]:
        return [stage for part in self.parts if hasattr(part, "stats") for stage in part.stats()]

    def decode_stats(self) -> dict[str, Any] | None:
        found = [part.decode_stats() for part in self.parts if hasattr(part, "decode_stats")]
        return next((s for s in found if s), None)

    def remove(self) -> None:
        for part in self.parts:
            part.remove()
        self.parts = []
        if self.compressor is not None and self.host.video_compressor is self.compressor:
            self.host.video_compressor = None
        self.compressor = None
