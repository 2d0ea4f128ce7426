#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): fp32/fp16/bf16 text and CLIP image embedding, zoo against
# sentence-transformers and open_clip on the same GPU, with each precision's fidelity; then
# `zoo verify --all-cached`: every card's published example on the real weights this machine has
# cached (fetch them first with `zoo fetch NAME`). A few minutes on one GPU. Sets up .venv first when
# it is missing (scripts/setup.sh, as `make test` does).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
.venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
timeout 290 .venv/bin/python bench/gpu_check.py "$@" || status=$?
echo "== zoo verify --all-cached (published examples on the cached real weights)"
timeout 600 .venv/bin/zoo verify --all-cached || status=$?
exit "$status"
