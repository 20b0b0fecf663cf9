#!/usr/bin/env bash
# Creates or updates the project's Python environment at $VENV (default ~/.cache/kubegym/venv).
# It is reused across clones and keyed by the hash of pyproject.toml + hack/constraints.txt, so a
# warm machine neither downloads nor reinstalls torch; pip's cache covers a changed lock.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-${KUBEGYM_CACHE:-$HOME/.cache/kubegym}/venv}
python=${PYTHON:-python3}
want=$(cat "$here/pyproject.toml" "$here/hack/constraints.txt" | sha256sum | cut -d' ' -f1)
stamp="$venv/.kubegym-stamp"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "[venv] installing the Python environment into $venv" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check pip==25.3
# Non-editable on purpose: the venv is shared by clones; the Makefile puts this clone's sources
# first on PYTHONPATH, and the package install only brings the dependencies and console scripts.
"$venv/bin/pip" install --quiet --disable-pip-version-check -c "$here/hack/constraints.txt" "$here[operator,runner,dev]"
echo "$want" > "$stamp"
