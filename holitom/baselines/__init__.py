"""Baseline token-reduction methods, as pure tensor cores (settings, FLOPs and installs: holitom.methods).

- VisionZip (outer-LLM, per frame): `visionzip_budget`, `visionzip_compress`.
- FastV (inner-LLM pruning by the last token's attention): `fastv_select`.
"""

from holitom.baselines.fastv import fastv_select
from holitom.baselines.visionzip import visionzip_budget, visionzip_compress

__all__ = ["fastv_select", "visionzip_budget", "visionzip_compress"]
