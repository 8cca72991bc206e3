"""Baseline token-reduction methods, as pure tensor cores (settings, FLOPs and installs: holitom.methods).

- VisionZip (outer-LLM, per frame): `visionzip_budget`, `visionzip_compress`, `visionzip_compress_grid`.
- FastV (inner-LLM pruning by the last token's attention): `fastv_select`.
- PDrop (inner-LLM, several stages): `holitom.baselines.pdrop`.
- DyCoke (outer-LLM frame pruning, decode-time cache pruning): `holitom.baselines.dycoke`.
- PruneVid (outer-LLM, segments + static merging + DPC-KNN clusters): `prunevid_compress`.
- FastVID (outer-LLM, dynamic segments + density-peak anchor merging): `fastvid_compress`.
"""

from holitom.baselines.fastv import fastv_select
from holitom.baselines.fastvid import fastvid_compress
from holitom.baselines.prunevid import prunevid_compress
from holitom.baselines.visionzip import visionzip_budget, visionzip_compress, visionzip_compress_grid

__all__ = [
    "fastv_select",
    "fastvid_compress",
    "prunevid_compress",
    "visionzip_budget",
    "visionzip_compress",
    "visionzip_compress_grid",
]
