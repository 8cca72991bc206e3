"""LLaVA-NeXT-compatible inference package (LLaVA-OneVision / LLaVA-Video, Qwen2 LM).

Kept light on purpose: importing `llava` pulls in nothing heavy; import the submodules you need
(`llava.constants`, `llava.conversation`, `llava.mm_utils`, `llava.video`, `llava.model.builder`).
"""

__version__ = "0.1.0"
