#!/usr/bin/env bash
# Table 1 of the HoliTom paper on LLaVA-OneVision-7B (32 frames): vanilla, and HoliTom at ρ 0.25/0.20/0.15/0.10
# (τ 0.80/0.80/0.80/0.65) without and with inner-LLM merging (K=18, r=0.5), on mvbench, egoschema, videomme,
# longvideobench_val_v. Settings: configs/onevision_7b.yaml.
#
#   bash scripts/eval_onevision.sh              # all runs, data parallel over the visible GPUs
#   bash scripts/eval_onevision.sh --smoke      # tiny checkpoint + synthetic videos on CPU (SMOKE=1 too)
#   RUNS='holitom_rho0.10' LIMIT=20 bash scripts/eval_onevision.sh
#
# Environment: GPUS (processes), MODEL, TASKS, OUT (default outputs/onevision_7b), LIMIT, FRAMES, RUNS,
# DEVICE, DTYPE, PYTHON, LMMS_EVAL_ARGS. Finished runs are skipped on restart; see `--help`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
run_config onevision_7b.yaml "$@"
