# Sourced by scripts/demo and scripts/test: a Python environment with quickike installed.
#
# Uses the active virtual environment if there is one; otherwise creates .venv in the
# checkout (Debian's own python3 refuses system-wide pip installs, PEP 668). Sets PY.
# QUICKIKE_EXTRAS picks the pip extras (e.g. "test"); QUICKIKE_VENV another venv path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    venv=$VIRTUAL_ENV
else
    venv=${QUICKIKE_VENV:-.venv}
    if [ ! -x "$venv/bin/python" ]; then
        echo "creating a virtual environment in $venv" >&2
        python3 -m venv "$venv"
    fi
fi
PY="$venv/bin/python"
spec="."
[ -n "${QUICKIKE_EXTRAS:-}" ] && spec=".[${QUICKIKE_EXTRAS}]"
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e "$spec"
export PATH="$venv/bin:$PATH"
