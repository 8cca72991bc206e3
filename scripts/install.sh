#!/usr/bin/env bash
# Create .venv (or $VENV) with HoliTom, lmms-eval and the test tools. Works on a fresh CPU or GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# constraints.txt pins torch 2.13.0 and the torchvision built for it, so no other torch is pulled in.
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[eval,test]"
# lmms-eval depends on torchvision; PyPI's Linux torchvision is a CUDA build that fails to import on a
# CPU-only torch ("operator torchvision::nms does not exist") and then breaks transformers.image_utils.
# Nothing here needs torchvision, so drop it where it cannot import.
if ! "$VENV/bin/python" -c "import torchvision" >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip uninstall -y -q torchvision
    echo "install: removed torchvision (a CUDA build that cannot load with this CPU-only torch)"
fi
"$VENV/bin/python" -c "import transformers.image_utils, lmms_eval, holitom, llava.model" \
    && echo "install: ok ($VENV: $("$VENV/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
