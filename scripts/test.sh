#!/usr/bin/env bash
# Install (scripts/install.sh), lint, run the whole test suite. Exits non-zero on any failure,
# including pytest's exit 5 ("no tests collected"). SKIP_INSTALL=1 tests $VENV as it is (update_lock.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${SKIP_INSTALL:-}" ] || bash scripts/install.sh
VENV=${VENV:-.venv}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$VENV/bin/ruff" check .
set +e
"$VENV/bin/python" -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
