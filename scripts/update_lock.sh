#!/usr/bin/env bash
# Refresh the lock (constraints.txt): build a NEW venv from pyproject.toml's ranges with the newest versions
# they allow, run the whole suite in it, and only if everything passes write constraints.txt from it and
# print what changed. The old lock stays untouched when anything fails.
#
#   bash scripts/update_lock.sh            # newest allowed versions
#   LOCK_VENV=/tmp/lock bash scripts/update_lock.sh -m "not slow"   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK_VENV=${LOCK_VENV:-.venv-lock}
PY=${PYTHON:-python3}
# The CPU pairing of torch and torchvision (a newer torchvision would pull a newer, CUDA torch: gigabytes).
BASE_PINS=("torch==2.13.0" "torchvision==0.28.0")

rm -rf "$LOCK_VENV"
"$PY" -m venv "$LOCK_VENV"
"$LOCK_VENV/bin/python" -m pip install -q --upgrade pip
base=$(mktemp)
trap 'rm -f "$base"' EXIT
printf '%s\n' "${BASE_PINS[@]}" >"$base"
echo "update_lock: installing the newest versions pyproject.toml allows into $LOCK_VENV"
"$LOCK_VENV/bin/python" -m pip install -q -c "$base" -e ".[eval,test]"
VENV="$LOCK_VENV" bash scripts/drop_torchvision.sh

echo "update_lock: running the whole suite in $LOCK_VENV"
if ! VENV="$LOCK_VENV" SKIP_INSTALL=1 bash scripts/test.sh "$@"; then
    echo "update_lock: the suite failed with the newest versions; constraints.txt is unchanged" >&2
    exit 1
fi

new=$(mktemp)
{
    echo "# The lock: every package \`pip install -e \".[eval,test]\"\` installs, at the versions the whole suite passed"
    echo "# with on $(date -u +%Y-%m-%d) (Python $("$LOCK_VENV/bin/python" -c 'import platform; print(platform.python_version())'))."
    echo "# scripts/install.sh and CI install through it; scripts/update_lock.sh rewrites it. Local version labels"
    echo "# (+cpu) are dropped so that a CUDA build of the same version also satisfies it."
    "$LOCK_VENV/bin/python" -m pip freeze --exclude-editable | sed -e 's/+[A-Za-z0-9.]*$//' | sort -f
} >"$new"
# torchvision may have been removed where it cannot import; the lock still pins it (lmms-eval asks for it).
for pin in "${BASE_PINS[@]}"; do
    grep -qi "^${pin%%==*}==" "$new" || echo "$pin" >>"$new"
done
echo "update_lock: changes (old → new):"
"$PY" - constraints.txt "$new" <<'EOF'
import re, sys

def pins(path):
    out = {}
    for line in open(path):
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out

old, new = pins(sys.argv[1]), pins(sys.argv[2])
changed = [(k, old.get(k, "—"), new.get(k, "—")) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
for name, a, b in changed:
    print(f"  {name}: {a} → {b}")
print(f"  {len(changed)} changed, {len(new)} pinned")
EOF
mv "$new" constraints.txt
echo "update_lock: wrote constraints.txt"
