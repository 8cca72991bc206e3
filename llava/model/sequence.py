"""The per-sequence state of one model instance: what a prompt's splicing produced, for whoever needs it.

A new `SequenceState` replaces the old one whenever a new sequence starts (a multimodal prompt is spliced,
or a text-only forward/generate starts with an empty cache), so nothing of a previous prompt survives.
Token-reduction methods read it (where the visual tokens sit, whether a pass is the prefill) and keep
their own statistics themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SequenceState:
    """visual_spans: per batch row, the (start, length) of every image/video's tokens in the LM sequence.
    prompt_lengths: per batch row, the spliced prompt length (padding included on the left side).
    pooled_tokens: per image/video, its tokens before any reduction (video: frames × pooled tokens).
    visual_tokens: per image/video, the tokens it put into the LM sequence (newlines included).
    prefilled: False until the first LM pass of this sequence has finished; that pass is its prefill.
    survivors: positions (into the spliced sequence) that reach the last decoder layer when a method
        shortened the sequence inside the LM; None when every position does. The loss scores only these.
    """

    visual_spans: list[list[tuple[int, int]]] = field(default_factory=list)
    prompt_lengths: list[int] = field(default_factory=list)
    pooled_tokens: list[int] = field(default_factory=list)
    visual_tokens: list[int] = field(default_factory=list)
    prefilled: bool = False
    survivors: torch.Tensor | None = None

    @property
    def has_visual(self) -> bool:
        return any(self.visual_spans)
