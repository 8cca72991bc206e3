"""Baseline token-reduction methods, as pure tensor cores (the model hooks live elsewhere).

- VisionZip (outer-LLM, per frame): `visionzip_compress`.
- FastV (inner-LLM pruning by the last token's attention): `fastv_keep_count`, `fastv_select`.
"""

from holitom.baselines.fastv import FASTV_DEFAULT_KEEP, FASTV_DEFAULT_LAYER, fastv_keep_count, fastv_select
from holitom.baselines.visionzip import VISIONZIP_CONTEXTUAL_SHARE, visionzip_budget, visionzip_compress

__all__ = [
    "FASTV_DEFAULT_KEEP",
    "FASTV_DEFAULT_LAYER",
    "VISIONZIP_CONTEXTUAL_SHARE",
    "fastv_keep_count",
    "fastv_select",
    "visionzip_budget",
    "visionzip_compress",
]
