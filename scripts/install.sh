#!/usr/bin/env bash
# Create .venv (or $VENV) with HoliTom, lmms-eval and the test tools, at the exact versions of the lock
# (constraints.txt), so a clone installs the same set today and in a year. scripts/update_lock.sh refreshes
# the lock. On a machine that already has the torch it wants (a CUDA build, say), use
# `pip install -e . --no-deps` into that environment instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[eval,test]"
VENV="$VENV" bash scripts/drop_torchvision.sh
"$VENV/bin/python" -c "import transformers.image_utils, lmms_eval, holitom, llava.model" \
    && echo "install: ok ($VENV: $("$VENV/bin/python" -c 'import torch, transformers, filelock; print("torch", torch.__version__, "transformers", transformers.__version__, "filelock", filelock.__version__)'))"
