"""`mlitb worker --cpu-throttle R`: the duty cycle finds the marked browser's renderer processes and runs them about
1/R of the time (a busy process stands in for a renderer; the share of samples that find it stopped is measured,
which does not depend on how loaded the machine is)."""

from __future__ import annotations

import subprocess
import sys
import time

from mlitb.workers.throttle import RendererThrottle, renderer_pids

BUSY = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end: pass"
# a "browser" (carrying the marker) whose child is a "renderer" (carrying --type=renderer) that spins
BROWSER = ("import subprocess, sys\n"
           "subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2], '--type=renderer'])")


def stopped_share(pid: int, seconds: float = 1.0) -> float:
    """Share of samples over `seconds` that find the process stopped (state T)."""
    stopped = total = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        stopped += state == "T"
        total += 1
        time.sleep(0.001)
    return stopped / total


def stopped_while(marker: str, rate: float | None) -> tuple[float, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", BROWSER, BUSY, "4", marker])
    try:
        deadline = time.monotonic() + 3
        while not (pids := renderer_pids(marker)) and time.monotonic() < deadline:
            time.sleep(0.02)
        throttle = RendererThrottle(marker, rate).start() if rate else None
        time.sleep(0.3)
        share = stopped_share(pids[0])
        if throttle:
            throttle.stop()
        return share, pids
    finally:
        proc.kill()
        proc.wait()


def test_a_4x_throttle_runs_the_marked_browsers_renderers_about_a_quarter_of_the_time():
    free, pids = stopped_while("--mlitb-pool=test-free", None)
    throttled, _ = stopped_while("--mlitb-pool=test-slow", 4.0)
    assert len(pids) == 1
    assert free == 0.0
    assert 0.55 < throttled < 0.95, throttled  # stopped about 3/4 of the time: runs about 1/4


def test_an_unmarked_process_is_never_found():
    assert renderer_pids("--mlitb-pool=nobody-launched-this") == []
