#!/usr/bin/env bash
# LLaVA-Video-7B (64 frames, average pooling): vanilla and HoliTom at ρ=0.15 (τ=0.80) without and with
# inner-LLM merging (K=18, r=0.5), and the table's baselines FastV, PDrop, VisionZip (`RUNS='holitom*'` for
# HoliTom only). Settings: configs/video_7b.yaml. Same options and environment variables
# as scripts/eval_onevision.sh (--smoke uses a tiny LLaVA-Video-layout checkpoint).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
run_config video_7b.yaml "$@"
