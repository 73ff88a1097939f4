#!/usr/bin/env bash
# The trainers whose data code the export tests run (tests/test_export_trainers.py), each in a venv of its own,
# pinned by requirements/trainers-<venv>.lock (used as constraints).
# Usage: scripts/install_trainers.sh [--lock] [NAME..], NAME in verl, llamafactory, axolotl (default: all three);
# --lock resolves afresh and rewrites the lock files.
#
# Why three venvs beside .venv (whose transformers 5.23 / trl 1.12 TRL needs):
# - .venv-verl: verl 0.9.1 (Python < 3.13, transformers < 5.11) and cotforge[gym] itself, since the verl export's
#   reward function calls cotforge's verifiers inside verl's process: that is what a user installs too.
# - .venv-llamafactory: LLaMA-Factory 0.9.5 pins transformers <= 5.6, trl <= 0.24 and gradio 5.x (starlette < 1),
#   which cotforge's Prefect (starlette >= 1) rules out; it needs no cotforge.
# - .venv-axolotl: axolotl 0.19.0, the last release for Python 3.11 (0.21 needs 3.12), pins transformers 5.16.1; its
#   full requirements pull CUDA-only xformers/triton/bitsandbytes and a web stack (gradio, modal, lm_eval), so it is
#   installed --no-deps with the libraries its dataset preparation imports, at axolotl's own pins. OpenRLHF 0.11.2 goes
#   here too, --no-deps (it pins flash-attn and deepspeed, which need CUDA to build; its dataset classes import
#   neither), since its transformers pin (5.15.0) is the nearest.
# torch 2.13.0 (CPU) first in each: every trainer above accepts it, and pip takes the CPU build from this machine's
# disk instead of CUDA wheels. Idempotent: an unchanged lock installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
lock_mode=0
[ "${1:-}" = "--lock" ] && { lock_mode=1; shift; }
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(verl llamafactory axolotl)

# What each venv gets beside torch; axolotl's and OpenRLHF's packages themselves go in --no-deps (below).
declare -A wants=(
  [verl]='verl==0.9.1 -e .[gym]'
  [llamafactory]='llamafactory==0.9.5'
  [axolotl]='transformers==5.16.1 datasets==4.8.4 trl==1.9.0 peft==0.20.0 accelerate==1.13.0 tokenizers==0.23.1
             huggingface_hub==1.17.0 pydantic==2.12.5 PyYAML==6.0.3 packaging==26.0 posthog==6.7.11
             numba>=0.63.1,<1.0 numpy>=2.1,<3.0 python-dotenv==1.0.1 zstandard==0.22.0 addict fire requests colorama
             einops sentencepiece scipy pillow pylatexenc jsonlines'
)
declare -A nodeps=(
  [axolotl]='axolotl==0.19.0 axolotl-contribs-lgpl==0.0.7 axolotl-contribs-mit==0.0.6 openrlhf==0.11.2'
)

# LLaMA-Factory requires torchvision and torchaudio, and imports torchaudio on every import, but no release on PyPI
# is built for torch 2.13 on CPU: torchvision 0.28's CUDA build breaks `import transformers` (torchvision::nms), and
# torchaudio 2.11.1's compiled ops are built for torch 2.11. Text datasets use neither: torchvision goes, and
# torchaudio keeps its Python modules without its compiled library (it then imports as a build without extensions).
cpu_torch_only() {
  "$1/bin/python" -m pip uninstall -y -q torchvision &&
  rm -f "$1"/lib/python3*/site-packages/torchaudio/lib/*.so
}

install_one() {
  local name=$1 venv=".venv-$1" lock="requirements/trainers-$1.lock"
  # .venv-verl holds cotforge itself: its dependencies in pyproject.toml count too.
  local inputs=("$lock")
  [ "$name" = verl ] && inputs+=(pyproject.toml)
  local stamp="$venv/.cotforge-trainers-$(cat "${inputs[@]}" 2>/dev/null | sha256sum | cut -c1-16)"
  [ "$lock_mode" = 0 ] && [ -f "$stamp" ] && return 0
  if [ "$lock_mode" = 0 ] && [ ! -f "$lock" ]; then
    echo "no $lock: run scripts/install_trainers.sh --lock $name" >&2
    return 1
  fi
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  local pip=("$venv/bin/python" -m pip install -q) start=$SECONDS
  [ "$lock_mode" = 0 ] && pip+=(-c "$lock")
  echo "== installing the $name trainer into $venv" >&2
  # shellcheck disable=SC2086  # the package lists are meant to split into words
  {
    "${pip[@]}" "torch==2.13.0" &&
    "${pip[@]}" "torch==2.13.0" ${wants[$name]} &&
    if [ -n "${nodeps[$name]:-}" ]; then "${pip[@]}" --no-deps ${nodeps[$name]}; fi &&
    if [ "$name" = llamafactory ]; then cpu_torch_only "$venv"; fi
  } >"$venv/install.log" 2>&1 || {
    tail -n 30 "$venv/install.log" >&2
    echo "== failed; log: $venv/install.log" >&2
    return 1
  }
  if [ "$lock_mode" = 1 ]; then
    { echo "# .venv-$name, resolved by scripts/install_trainers.sh --lock $name; used as constraints."
      "$venv/bin/python" -m pip freeze --exclude-editable | grep -v -E '^(-e |cotforge==)' |
        sed -E 's/^(torch==[0-9.]+)\+cpu$/\1/'
    } >"$lock"
    stamp="$venv/.cotforge-trainers-$(cat "${inputs[@]}" | sha256sum | cut -c1-16)"
  fi
  rm -f "$venv"/.cotforge-trainers-*
  touch "$stamp"
  echo "== $name trainer installed in $((SECONDS - start)) s" >&2
}

for name in "${names[@]}"; do
  install_one "$name"
done
