#!/usr/bin/env bash
# Create .venv and install cotforge with the given extras, pinned by requirements/lock.txt.
# Usage: scripts/setup.sh [EXTRAS]   (default: cpu). Re-running with an unchanged lock and extras installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-cpu}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.cotforge-installed-$(cat requirements/lock.txt pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
  log=.venv/setup.log
  echo "== installing cotforge[$extras] into .venv (llama-cpp-python compiles on the first run: ~6 min; log: $log)" >&2
  {
    # (`set -e` does not reach inside a `{ } ||` group: each step is chained with &&.)
    .venv/bin/python -m pip install --upgrade "pip>=24" &&
    # torch first, alone: pip then takes the CPU build from this machine's disk instead of CUDA wheels.
    if [[ ",$extras," == *",train,"* ]]; then
      .venv/bin/python -m pip install -c requirements/lock.txt "torch==2.13.0"
    fi &&
    # llama.cpp for a portable x86-64-v3 CPU, built here and never taken from pip's wheel cache: a native build
    # (-march=native) on a machine whose CPU reports AMX uses AMX tile instructions that a virtual machine may not
    # allow (SIGILL in the batched decode, measured here), and a cached wheel may come from another CPU.
    if [[ ",$extras," == *",cpu,"* ]]; then
      CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}" \
        .venv/bin/python -m pip install --no-cache-dir --force-reinstall --no-deps -c requirements/lock.txt llama-cpp-python
    fi &&
    .venv/bin/python -m pip install -c requirements/lock.txt -e ".[$extras]"
  } >"$log" 2>&1 || { tail -n 40 "$log" >&2; echo "== install failed; full log: $log" >&2; exit 1; }
  touch "$stamp"
fi
