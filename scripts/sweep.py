#!/usr/bin/env python
"""Run every lmms-eval run of a config (paper runs, baselines, ablation grids), one folder per run.

    python scripts/sweep.py configs/ablation_onevision_7b.yaml [--smoke] [--runs 'holitom_tau*'] [--dry-run]

Finished runs are skipped on restart, a failing run does not stop the others (exit status 1 at the end),
and tables are written to the output folder afterwards. See `--help` and holitom_eval/runner.py.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(REPO, ".venv")
# Run in the project's environment (made by scripts/install.sh) unless one is active: lmms-eval is launched
# with this interpreter, and a bare `python` lacks torch.
if (
    not os.environ.get("VIRTUAL_ENV")
    and os.path.isfile(os.path.join(VENV, "bin", "python"))
    and os.path.realpath(sys.prefix) != os.path.realpath(VENV)
):
    os.execv(os.path.join(VENV, "bin", "python"), [os.path.join(VENV, "bin", "python"), *sys.argv])
# Work from a source checkout without installation: the repo (holitom, llava) and eval/ (holitom_eval).
sys.path[:0] = [REPO, os.path.join(REPO, "eval")]

try:
    import torch  # noqa: F401 - the lmms-eval runs need it; say so here rather than in every run's log
    import yaml  # noqa: F401
    from holitom_eval.runner import main
except ImportError as exc:
    sys.exit(f"sweep: {exc.name} is missing from {sys.executable}: run `bash scripts/install.sh`, then again")

if __name__ == "__main__":
    sys.exit(main())
