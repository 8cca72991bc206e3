#!/usr/bin/env bash
# Table 1 of the HoliTom paper, the baseline rows on LLaVA-OneVision-7B (32 frames): FastV (K=2, keep 20 %),
# PDrop (layers 2/7/14, λ=0.5), DyCoke (K=1.0, every quad), VisionZip, PruneVid and FastVID at ρ
# 0.25/0.20/0.15/0.10, on mvbench, egoschema, videomme, longvideobench_val_v. Settings and why they give the
# paper's FLOPs cells: configs/baselines_onevision_7b.yaml, docs/methods.md. FastVID reads the attention-pooling
# head of google/siglip-so400m-patch14-384 (downloaded into the Hugging Face cache on first use).
#
#   bash scripts/eval_baselines.sh              # all runs, data parallel over the visible GPUs
#   bash scripts/eval_baselines.sh --smoke      # tiny checkpoint + synthetic videos on CPU (SMOKE=1 too)
#   RUNS='prunevid*' bash scripts/eval_baselines.sh
#
# Same options and environment variables as scripts/eval_onevision.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
run_config baselines_onevision_7b.yaml "$@"
