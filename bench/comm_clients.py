"""Browser trainers for bench/communication.py, run inside the shaped client namespace: N headless Chromium
trainers join PROJECT at URL for SECONDS and write their statuses (codec ms, bytes up) to OUT as JSON.

    python bench/comm_clients.py URL PROJECT N SECONDS OUT
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlitb.workers.browser import BrowserPool  # noqa: E402


def main(url: str, project: int, n: int, seconds: float, out: str) -> None:
    samples: list[list[dict]] = []
    with BrowserPool(url, backend="wasm") as pool:
        for _ in range(n):
            pool.open(project, "trainer")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pool.wait(2.0)
            samples.append(pool.statuses())
            Path(out).write_text(json.dumps(samples))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
