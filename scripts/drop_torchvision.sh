#!/usr/bin/env bash
# lmms-eval depends on torchvision; PyPI's Linux torchvision is a CUDA build that fails to import on a
# CPU-only torch ("operator torchvision::nms does not exist") and then breaks transformers.image_utils.
# Nothing here needs torchvision, so drop it from $VENV where it cannot import.
set -euo pipefail
VENV=${VENV:-.venv}
if "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is None)" \
    && ! "$VENV/bin/python" -c "import torchvision" >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip uninstall -y -q torchvision
    echo "install: removed torchvision (a CUDA build that cannot load with this CPU-only torch)"
fi
