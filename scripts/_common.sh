# Sourced by the eval_*.sh scripts: locate the repository and a Python, then hand over to the sweep runner.
# PYTHON picks the interpreter (default: the active virtualenv's, else the repo's .venv made by
# scripts/install.sh, else python / python3 on PATH).
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then PYTHON="$VIRTUAL_ENV/bin/python"
  elif [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"
  elif command -v python >/dev/null 2>&1; then PYTHON=python
  else PYTHON=python3
  fi
fi
export PYTHON

# run_config CONFIG [sweep.py options...]
run_config() {
  local config="$1"
  shift
  exec "$PYTHON" "$REPO/scripts/sweep.py" "$REPO/configs/$config" "$@"
}
