#!/usr/bin/env bash
# The one GPU check (holitom/tools/gpu_check.py): environment, correctness on the device, host syncs, and latency of
# every method at the published shapes with random weights; prints a compact table last and writes
# OUT_DIR/gpu_check.json (after every measurement) and OUT_DIR/gpu_check.md. Needs only torch + transformers:
# run it from a plain checkout, nothing installed, no network.
#
#   bash scripts/gpu_check.sh OUT_DIR [--budget-s 420] [--skip correctness,syncs,ov-7b,ov-0.5b,vid-7b]
#   bash scripts/gpu_check.sh OUT_DIR --device cpu --tiny     # the dry mode (CI: tests/test_gpu_check.py)
#
# PYTHON picks the interpreter (default: python3 on PATH, i.e. the machine's own torch).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: bash scripts/gpu_check.sh OUT_DIR [options]  (python -m holitom.tools.gpu_check --help)" >&2
  exit 2
fi
export PYTHONPATH="$ROOT:$ROOT/eval${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
exec "${PYTHON:-python3}" -m holitom.tools.gpu_check "$@"
