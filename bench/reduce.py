"""Reduce throughput of the server beside NumPy's memory-copy bandwidth, measured in the same run.

For each network size, N distinct GRADIENT frames (about 128 MB together, so they come from
memory as gradients from the network do, not from cache), cycled to at least --min-grads
gradients (one round of that many trainers: the large accumulator keeps gradients by
reference to redo its sum exactly after a refusal, and takes a snapshot every few of them,
which a round of only 7 would not show), are reduced in three ways:

  accumulator  GradientAccumulator.add of each frame's float32 view (the reduce itself);
  server path  ProjectRuntime.on_frame(decode(frame)) for N joined trainers in an open round:
               decoding, every check of a client frame (length, sample count, finiteness),
               latency and rate bookkeeping, and the add: all the server does per gradient
               after the WebSocket layer;
  memcpy       np.copyto of a buffer of the same total size (the machine's copy bandwidth).

Throughput is gradient bytes consumed per second (GB/s); the target is server path >= 50 % of
memcpy. Each figure is the best of several interleaved repetitions (other work may share the
cores).

    .venv/bin/python bench/reduce.py [--total-mb 128] [--repeat 7] [--min-grads 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlitb.config import Settings  # noqa: E402
from mlitb.master.loop import ProjectRuntime  # noqa: E402
from mlitb.master.project import ProjectSpec  # noqa: E402
from mlitb.master.transport import MemoryLink  # noqa: E402
from mlitb.model import PAPER_NETWORK  # noqa: E402
from mlitb.protocol import MessageType, decode, encode  # noqa: E402
from mlitb.training import GradientAccumulator  # noqa: E402
from mlitb.workers.simulate import dense_network  # noqa: E402

NETWORKS = (("paper network", PAPER_NETWORK), ("dense 455k", dense_network(455_000)), ("dense 4.5M", dense_network(4_500_000)))


def frames_for(param_count: int, total_bytes: int, min_grads: int = 0) -> list[bytes]:
    """Distinct frames of about `total_bytes` together, repeated in turn to at least `min_grads`."""
    n = max(4, total_bytes // (4 * param_count))
    rng = np.random.default_rng(0)
    grad = (rng.standard_normal(param_count) * 0.01).astype(np.float32)
    distinct = [encode(MessageType.GRADIENT, project=1, round=0, count=64, aux=1000, value=64.0,
                       payload=grad + np.float32(i)) for i in range(n)]
    return [distinct[i % n] for i in range(max(n, min_grads))]


def time_accumulator(frames: list[bytes], param_count: int) -> float:
    acc = GradientAccumulator(param_count)
    views = [np.frombuffer(f, "<f4", offset=24) for f in frames]
    t = time.perf_counter()
    for v in views:
        acc.add(v, 64, 64.0)
    return time.perf_counter() - t


async def _server_path(spec: ProjectSpec, frames: list[bytes]) -> float:
    rt = ProjectRuntime(1, spec, spec.build_network(), None, Settings())
    clients = [rt.add_client(MemoryLink(max_queue=1 << 20), "trainer", "bench") for _ in frames]
    task = asyncio.create_task(rt.run_round())
    await asyncio.sleep(0)  # the round opens
    cap = rt.max_frame_bytes
    t = time.perf_counter()
    for c, f in zip(clients, frames):
        rt.on_frame(c.id, decode(f, cap))
    elapsed = time.perf_counter() - t
    record = await task
    assert record["contributions"] == len(frames), record
    return elapsed


def time_server_path(spec: ProjectSpec, frames: list[bytes]) -> float:
    return asyncio.run(_server_path(spec, frames))


def time_memcpy(nbytes: int) -> float:
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch the pages first
    t = time.perf_counter()
    np.copyto(dst, src)
    return time.perf_counter() - t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--total-mb", type=int, default=128, help="megabytes of distinct gradients per measurement")
    p.add_argument("--repeat", type=int, default=7, help="interleaved repetitions; the best of each is reported")
    p.add_argument("--min-grads", type=int, default=64, help="gradients per round at least (the distinct ones in turn)")
    args = p.parse_args()
    print(f"reduce throughput: {args.total_mb} MB of distinct gradients per pass, best of {args.repeat}; "
          f"{os.cpu_count()} CPU cores (shared with whatever else runs)")
    head = (f"{'network':<14} {'params':>9} {'grads':>5} {'accumulator':>11} {'server path':>11} {'memcpy':>9} "
            f"{'acc/memcpy':>10} {'server/memcpy':>13} {'us/grad':>7}")
    print(head)
    print("-" * len(head))
    worst = 1.0
    for name, network in NETWORKS:
        spec = ProjectSpec(name=name, network=network, hyper={"period_s": 30})
        P = spec.build_network().param_count
        frames = frames_for(P, args.total_mb << 20, args.min_grads)
        nbytes = len(frames) * 4 * P
        copy_bytes = len(set(map(id, frames))) * 4 * P  # memcpy of the distinct frames' size, scaled to nbytes
        best = {k: float("inf") for k in ("acc", "srv", "cpy")}
        for _ in range(args.repeat):
            best["cpy"] = min(best["cpy"], time_memcpy(copy_bytes) * nbytes / copy_bytes)
            best["acc"] = min(best["acc"], time_accumulator(frames, P))
            best["srv"] = min(best["srv"], time_server_path(spec, frames))
        gbs = {k: nbytes / v / 1e9 for k, v in best.items()}
        worst = min(worst, gbs["srv"] / gbs["cpy"])
        print(f"{name:<14} {P:9d} {len(frames):5d} {gbs['acc']:6.2f} GB/s {gbs['srv']:6.2f} GB/s {gbs['cpy']:4.1f} GB/s "
              f"{gbs['acc'] / gbs['cpy']:10.2f} {gbs['srv'] / gbs['cpy']:13.2f} {best['srv'] / len(frames) * 1e6:7.1f}")
    print(f"\nserver path / memcpy, worst network: {worst:.2f} (target >= 0.50); GB/s = gradient bytes reduced per "
          "second, memcpy = bytes copied per second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
