#!/usr/bin/env python
"""Run every lmms-eval run of a config (paper runs, baselines, ablation grids), one folder per run.

    python scripts/sweep.py configs/ablation_onevision_7b.yaml [--smoke] [--runs 'holitom_tau*'] [--dry-run]

Finished runs are skipped on restart, a failing run does not stop the others (exit status 1 at the end),
and tables are written to the output folder afterwards. See `--help` and holitom_eval/runner.py.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Work from a source checkout without installation: the repo (holitom, llava) and eval/ (holitom_eval).
sys.path[:0] = [REPO, os.path.join(REPO, "eval")]

from holitom_eval.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
