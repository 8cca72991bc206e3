"""Conversation templates: turn a list of (role, message) turns into the prompt string a model was trained on.

Same public surface as LLaVA-NeXT's `llava.conversation` (what lmms-eval's wrappers use):
`conv = conv_templates["qwen_1_5"].copy(); conv.append_message(conv.roles[0], "<image>\\nQ");
conv.append_message(conv.roles[1], None); conv.get_prompt()`, plus `conv.sep`, `conv.sep2`,
`conv.sep_style` to pick the stop string. A `None` message is an open turn the model will complete.
"""

from __future__ import annotations

import dataclasses
from enum import Enum, auto
from typing import Any


class SeparatorStyle(Enum):
    """How turns are joined; see `Conversation.get_prompt` for each layout."""

    SINGLE = auto()
    TWO = auto()
    MPT = auto()
    PLAIN = auto()
    CHATML = auto()
    LLAMA_2 = auto()
    LLAMA_3 = auto()
    QWEN = auto()
    GEMMA = auto()


def _text(message: Any) -> str:
    """A turn's text. LLaVA's demo stores (text, image, mode) tuples; only the text reaches the prompt."""
    if isinstance(message, (tuple, list)):
        return message[0]
    return message


@dataclasses.dataclass
class Conversation:
    """A prompt template plus the turns appended so far.

    `messages` is a list of mutable [role, message] pairs (lmms-eval edits `conv.messages[-1][1]`).
    """

    system: str
    roles: tuple[str, str]
    messages: list[list[Any]]
    offset: int
    sep_style: SeparatorStyle = SeparatorStyle.SINGLE
    sep: str = "###"
    sep2: str | None = None
    version: str = "Unknown"
    skip_next: bool = False

    def append_message(self, role: str, message: Any) -> None:
        """Append a turn; `message=None` leaves the turn open for the model to complete."""
        self.messages.append([role, message])

    def get_prompt(self) -> str:
        """The whole conversation as one prompt string, in this template's layout."""
        turns = [(role, None if message is None else _text(message)) for role, message in self.messages]
        style = self.sep_style
        if style == SeparatorStyle.SINGLE:
            out = self.system + self.sep
            for role, msg in turns:
                out += f"{role}: {msg}{self.sep}" if msg else f"{role}:"
            return out
        if style == SeparatorStyle.TWO:
            seps = (self.sep, self.sep2)
            out = self.system + seps[0]
            for i, (role, msg) in enumerate(turns):
                out += f"{role}: {msg}{seps[i % 2]}" if msg else f"{role}:"
            return out
        if style == SeparatorStyle.MPT:
            out = self.system + self.sep
            for role, msg in turns:
                out += f"{role}{msg}{self.sep}" if msg else role
            return out
        if style == SeparatorStyle.PLAIN:
            # Pretraining layout: bare messages, no roles, no system text.
            seps = (self.sep, self.sep2 if self.sep2 is not None else self.sep)
            out = self.system
            for i, (_, msg) in enumerate(turns):
                out += f"{msg}{seps[i % 2]}" if msg else ""
            return out
        if style in (SeparatorStyle.CHATML, SeparatorStyle.QWEN):
            out = "" if self.system == "" else f"{self.system}{self.sep}\n"
            for role, msg in turns:
                out += f"{role}\n{msg}{self.sep}\n" if msg else f"{role}\n"
            return out
        if style == SeparatorStyle.LLAMA_3:
            out = "<|begin_of_text|>"
            if self.system:
                out += f"<|start_header_id|>system<|end_header_id|>\n\n{self.system}{self.sep}"
            for role, msg in turns:
                header = f"<|start_header_id|>{role}<|end_header_id|>\n\n"
                out += f"{header}{msg}{self.sep}" if msg else header
            return out
        if style == SeparatorStyle.LLAMA_2:
            return self._llama_2_prompt(turns)
        if style == SeparatorStyle.GEMMA:
            out = self.system
            for role, msg in turns:
                out += f"{role}{msg}{self.sep}" if msg else role
            return out
        raise ValueError(f"sep_style {style!r} is not supported")

    def _llama_2_prompt(self, turns: list[tuple[str, str | None]]) -> str:
        """[INST] layout: the system text is folded into the first user turn."""
        out = ""
        for i, (role, msg) in enumerate(turns):
            if i == 0 and role != self.roles[0]:
                raise ValueError("LLAMA_2 conversations must start with a user turn")
            if not msg:
                continue
            if i == 0 and self.system:
                msg = f"<<SYS>>\n{self.system}\n<</SYS>>\n\n{msg}"
            if i % 2 == 0:
                out += f"{self.sep}[INST] {msg} [/INST]"
            else:
                out += f" {msg} {self.sep2}"
        return out.removeprefix(self.sep)

    def copy(self) -> Conversation:
        """A fresh conversation with this template and its own copy of the turns."""
        return dataclasses.replace(self, messages=[[role, message] for role, message in self.messages])

    def dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "roles": self.roles,
            "messages": [[role, _text(message)] for role, message in self.messages],
            "offset": self.offset,
            "sep": self.sep,
            "sep2": self.sep2,
        }


_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
_LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

conv_vicuna_v1 = Conversation(
    system=_VICUNA_SYSTEM,
    roles=("USER", "ASSISTANT"),
    messages=[],
    offset=0,
    sep_style=SeparatorStyle.TWO,
    sep=" ",
    sep2="</s>",
    version="v1",
)

conv_llava_v1 = Conversation(
    system=_LLAVA_SYSTEM,
    roles=("USER", "ASSISTANT"),
    messages=[],
    offset=0,
    sep_style=SeparatorStyle.TWO,
    sep=" ",
    sep2="</s>",
    version="v1",
)

conv_llava_v0 = Conversation(
    system=_LLAVA_SYSTEM,
    roles=("Human", "Assistant"),
    messages=[],
    offset=0,
    sep_style=SeparatorStyle.SINGLE,
    sep="###",
)

conv_llava_plain = Conversation(
    system="",
    roles=("", ""),
    messages=[],
    offset=0,
    sep_style=SeparatorStyle.PLAIN,
    sep="\n",
    sep2="\n",
    version="plain",
)

# Qwen1.5 / Qwen2 chat layout: the OneVision and LLaVA-Video checkpoints' template.
conv_qwen = Conversation(
    system="<|im_start|>system\nYou are a helpful assistant.",
    roles=("<|im_start|>user", "<|im_start|>assistant"),
    messages=[],
    offset=0,
    sep_style=SeparatorStyle.CHATML,
    sep="<|im_end|>",
    version="qwen",
)

conv_chatml_direct = Conversation(
    system="<|im_start|>system\nAnswer the questions.",
    roles=("<|im_start|>user", "<|im_start|>assistant"),
    messages=[],
    offset=0,
    sep_style=SeparatorStyle.CHATML,
    sep="<|im_end|>",
    version="mpt",
)

conv_mpt = Conversation(
    system="<|im_start|>system\nA conversation between a user and an LLM-based AI assistant. "
    "The assistant gives helpful and honest answers.",
    roles=("<|im_start|>user\n", "<|im_start|>assistant\n"),
    messages=[],
    offset=0,
    sep_style=SeparatorStyle.MPT,
    sep="<|im_end|>",
    version="mpt",
)

conv_llava_llama_2 = Conversation(
    system="You are a helpful language and vision assistant. You are able to understand the visual content "
    "that the user provides, and assist the user with a variety of tasks using natural language.",
    roles=("USER", "ASSISTANT"),
    messages=[],
    offset=0,
    sep_style=SeparatorStyle.LLAMA_2,
    sep="<s>",
    sep2="</s>",
    version="llama_v2",
)

conv_mistral_instruct = Conversation(
    system="",
    roles=("USER", "ASSISTANT"),
    messages=[],
    offset=0,
    sep_style=SeparatorStyle.LLAMA_2,
    sep="",
    sep2="</s>",
    version="llama_v2",
)

conv_llava_llama_3 = Conversation(
    system="You are a helpful language and vision assistant. You are able to understand the visual content "
    "that the user provides, and assist the user with a variety of tasks using natural language.",
    roles=("user", "assistant"),
    messages=[],
    offset=0,
    sep_style=SeparatorStyle.LLAMA_3,
    sep="<|eot_id|>",
    version="llama_v3",
)

conv_gemma_instruct = Conversation(
    system="",
    roles=("<start_of_turn>user\n", "<start_of_turn>model\n"),
    messages=[],
    offset=0,
    sep_style=SeparatorStyle.GEMMA,
    sep="<end_of_turn>\n",
    version="gemma",
)

default_conversation = conv_vicuna_v1

conv_templates: dict[str, Conversation] = {
    "default": conv_vicuna_v1,
    "v0": conv_llava_v0,
    "v1": conv_vicuna_v1,
    "vicuna_v1": conv_vicuna_v1,
    "llava_v0": conv_llava_v0,
    "llava_v1": conv_llava_v1,
    "plain": conv_llava_plain,
    "mpt": conv_mpt,
    "chatml_direct": conv_chatml_direct,
    "mistral_direct": conv_chatml_direct,
    "mistral_instruct": conv_mistral_instruct,
    "llava_llama_2": conv_llava_llama_2,
    "llava_llama_3": conv_llava_llama_3,
    "qwen_1_5": conv_qwen,
    "qwen_2": conv_qwen,
    "gemma_instruct": conv_gemma_instruct,
}
