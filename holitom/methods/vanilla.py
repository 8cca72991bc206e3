"""Vanilla: the unmodified model (every pooled video token enters the LLM and stays)."""

from __future__ import annotations

from typing import Any

from holitom.methods.base import Method, Schedule


class Vanilla(Method):
    name = "vanilla"
    summary = "no token reduction"
    acts = "nowhere"
    layouts = ("one_token", "grid", "frame", "no_token")
    positions = ("sequential", "mrope")
    paper_labels = ("Vanilla", "Full Tokens")

    def schedule(self, config: Any, frames: int, tokens_per_frame: int, num_layers: int) -> Schedule:
        return ((0, frames * tokens_per_frame),)

    def paper_settings(self, label: str, shape: str, budget: float) -> dict[str, Any] | None:
        return {} if label in self.paper_labels else None

    def install(self, host: Any, config: Any) -> Any:
        raise RuntimeError("vanilla is installed by removing every method (holitom.remove)")


METHOD = Vanilla()
