#!/usr/bin/env bash
# The baseline of bench/serve_infinity.py: infinity (https://github.com/michaelfeil/infinity), the PyPI
# package infinity-emb, in its own virtual environment bench/infinity/.venv. It must not go into the zoo's
# environment: it pins numpy<2, sentence-transformers<4 and transformers<=5.0.
#
#     bash bench/infinity/setup.sh           # install the pinned set in requirements.txt (a pip freeze)
#     bash bench/infinity/setup.sh --fresh   # resolve infinity-emb[server,torch]==VERSION anew, rewrite requirements.txt
#
# Version: infinity-emb 0.0.78, the newest release. Its [torch] extra asks only torch>=2.2.1, so it takes the
# torch the zoo itself uses, 2.14.1 (no older release was needed); with it come sentence-transformers 3.4.1,
# transformers 4.57.6 and numpy 1.26.4 (see requirements.txt). torch is installed with pip first, because pip
# is the client set up to find torch 2.14.1 in the local wheel mirror; the rest with uv when there is one
# (much faster), else pip. The server runs only on loopback and never downloads: the benchmark hands it the
# model folder the zoo resolves, with HF_HUB_OFFLINE=1 and DO_NOT_TRACK=1 (no usage statistics).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION=0.0.78
TORCH=2.14.1
PYTHON="${PYTHON:-python3.11}"
VENV="$HERE/.venv"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet "torch==$TORCH"

UV="$(command -v uv || true)"
if [ -z "$UV" ] && [ -x "$HERE/../../.venv/bin/uv" ]; then
    UV="$HERE/../../.venv/bin/uv"   # the project's own environment has uv
fi
install() {
    if [ -n "$UV" ]; then
        "$UV" pip install --python "$VENV/bin/python" "$@"
    else
        "$VENV/bin/python" -m pip install "$@"
    fi
}

if [ "${1:-}" = "--fresh" ] || [ ! -f "$HERE/requirements.txt" ]; then
    install "infinity-emb[server,torch]==$VERSION" "torch==$TORCH"
    {
        echo "# pip freeze of bench/infinity/.venv after: bash bench/infinity/setup.sh --fresh"
        echo "# (infinity-emb[server,torch]==$VERSION with torch==$TORCH, Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())'))"
        "$VENV/bin/python" -m pip freeze --exclude-editable
    } > "$HERE/requirements.txt"
else
    install -r "$HERE/requirements.txt"
fi
"$VENV/bin/python" -m pip check
"$VENV/bin/infinity_emb" --help > /dev/null
echo "infinity-emb $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("infinity-emb"))') \
ready in $VENV"
