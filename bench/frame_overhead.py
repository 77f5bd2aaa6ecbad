"""Server CPU time per gradient on the runtime's path, measured in thread CPU time so a shared machine distorts it less.

For a tiny network (15 parameters: what remains is the fixed per-frame work: the checks, the `Result`,
the strategy's bookkeeping, the latency and rate estimates) and the paper's network, N trainers join
an in-memory project, a round opens, and `ProjectRuntime.on_frame` takes one decoded GRADIENT frame
from each; the figure is `time.thread_time()` over those calls divided by N, the best of --repeat
rounds. Wall-clock benchmarks (bench/reduce.py) also count the time other processes hold the cores;
this one does not, so it compares two versions of the code on a busy machine.

    .venv/bin/python bench/frame_overhead.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import asyncio
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

TINY = [{"type": "input", "shape": [2, 2, 1]}, {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]
CASES = (("tiny", TINY, 2000), ("paper network", PAPER_NETWORK, 400))


async def one_round(spec: ProjectSpec, trainers: int) -> float:
    """Thread CPU seconds per gradient taken in by one round's `on_frame` calls."""
    rt = ProjectRuntime(1, spec, spec.build_network(), None, Settings())
    clients = [rt.add_client(MemoryLink(max_queue=1 << 20), "trainer", "bench") for _ in range(trainers)]
    task = asyncio.create_task(rt.run_round())
    await asyncio.sleep(0)  # the round opens
    grad = np.full(rt.param_count, 0.01, np.float32)
    frames = [decode(encode(MessageType.GRADIENT, project=1, round=0, count=64, aux=1000, value=64.0, payload=grad),
                     rt.max_frame_bytes) for _ in clients]
    t = time.thread_time()
    for c, f in zip(clients, frames):
        rt.on_frame(c.id, f)
    elapsed = time.thread_time() - t
    record = await task
    assert record["contributions"] == trainers, record
    return elapsed / trainers


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=15, help="rounds per network; the best is reported")
    args = p.parse_args()
    for name, network, trainers in CASES:
        spec = ProjectSpec(name=name, network=network, hyper={"period_s": 30})
        best = min(asyncio.run(one_round(spec, trainers)) for _ in range(args.repeat))
        print(f"{name:<14} {trainers:5d} trainers: {best * 1e6:7.2f} us of server thread CPU per gradient")
    return 0


if __name__ == "__main__":
    sys.exit(main())
