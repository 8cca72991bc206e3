#!/usr/bin/env bash
# HoliTom on Qwen3-VL-8B-Instruct (dense, 32 frames; not in the paper): vanilla, and HoliTom at ρ 0.25/0.15/0.10
# without and with inner-LLM merging (K=18, r=0.5), on mvbench, egoschema, videomme, longvideobench_val_v.
# Settings: configs/qwen3_vl_8b.yaml.
#
#   bash scripts/eval_qwen3_vl.sh              # all runs, data parallel over the visible GPUs
#   bash scripts/eval_qwen3_vl.sh --smoke      # tiny Qwen3-VL + synthetic videos on CPU (SMOKE=1 too)
#   RUNS='holitom_rho0.10' LIMIT=20 bash scripts/eval_qwen3_vl.sh
#
# Environment: GPUS (processes), MODEL, TASKS, OUT (default outputs/qwen3_vl_8b), LIMIT, FRAMES, RUNS,
# DEVICE, DTYPE, PYTHON, LMMS_EVAL_ARGS. Finished runs are skipped on restart; see `--help`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
run_config qwen3_vl_8b.yaml "$@"
