#!/usr/bin/env bash
# Set up (first run only) and run a real build of the demo recipe: SmolLM2-135M on CPU via llama.cpp, local Prefect,
# output in data/builds/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh cpu
exec .venv/bin/cotforge build data/recipes/demo.yaml "$@"
