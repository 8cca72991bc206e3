#!/usr/bin/env bash
# The generate / decode-path tests under several transformers releases, each in a small overlay venv
# (.venv-tf/<version>: that transformers and whatever it needs in other versions, on top of .venv's
# packages, which a .pth file makes visible). CI keeps running the lock; run this before moving the lock's
# transformers or the range in pyproject.toml.
#
#   bash scripts/test_versions.sh                          # 5.17.0 5.23.0 5.25.0
#   VERSIONS="5.24.0" bash scripts/test_versions.sh -x     # extra arguments go to pytest
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
VERSIONS=${VERSIONS:-"5.17.0 5.23.0 5.25.0"}
TESTS=(tests/test_environment.py tests/test_model.py tests/test_hf_host.py tests/test_dycoke.py
       tests/test_pdrop.py tests/test_apply.py tests/test_qwen*.py)
[ -x "$VENV/bin/python" ] || bash scripts/install.sh
base_site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
torch_pin=$("$VENV/bin/python" -c 'import torch; print("torch==" + torch.__version__.split("+")[0])')
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
summary=()
status=0
for version in $VERSIONS; do
    overlay=".venv-tf/$version"
    if [ ! -x "$overlay/bin/python" ]; then
        "$VENV/bin/python" -m venv --without-pip "$overlay"
        site=$("$overlay/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        # after the overlay's own packages (the overlay wins); addsitedir also runs .venv's .pth files (editable installs)
        echo "import site; site.addsitedir('$base_site')" >"$site/zz_base_venv.pth"
        # pip sees .venv's packages as installed and adds only what this transformers needs in another version
        "$VENV/bin/python" -m pip --python "$overlay/bin/python" install -q "transformers==$version" "$torch_pin" \
            || { summary+=("transformers $version: could not install"); status=1; continue; }
    fi
    echo "== transformers $version ($overlay)"
    "$overlay/bin/python" -m pytest -q -m "not slow" -p no:cacheprovider "${TESTS[@]}" "$@" | tee "$overlay/last.log" | tail -n 3
    rc=${PIPESTATUS[0]}
    summary+=("transformers $version: $(tail -n 1 "$overlay/last.log" | sed 's/=//g; s/^ *//; s/ *$//')")
    [ "$rc" -eq 0 ] || status=1
done
printf '%s\n' "${summary[@]}"
exit $status
