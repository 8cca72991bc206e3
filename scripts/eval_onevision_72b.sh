#!/usr/bin/env bash
# LLaVA-OneVision-72B (32 frames): vanilla and HoliTom at ρ=0.15 without and with inner-LLM merging at K=60
# (r=0.5), and the table's baselines FastV, VisionZip, PruneVid (`RUNS='holitom*'` for HoliTom only).
# One process, the model sharded over all visible GPUs (device_map=auto). Settings: configs/onevision_72b.yaml.
# Same options and environment variables as scripts/eval_onevision.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
run_config onevision_72b.yaml "$@"
