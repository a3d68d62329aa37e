# Sourced by scripts/demo and scripts/test: make .venv (or $VENV) and install alphaforge into it.
# EXTRAS selects optional dependency groups, e.g. EXTRAS="[test]".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
echo "==> installing alphaforge${EXTRAS:-} into $VENV" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".${EXTRAS:-}"
export PATH="$VENV/bin:$PATH"
