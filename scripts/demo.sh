#!/usr/bin/env bash
# Quick start, command 1: set everything up, then run the MNIST demo (extra args go to `mlitb demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mlitb demo "$@"
