"""`mlitb worker --cpu-throttle R`: the duty cycle finds the marked browser's renderer processes and runs them about
1/R of the time (a busy process stands in for a renderer: its CPU time over one wall second is compared)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from mlitb.workers.throttle import RendererThrottle, renderer_pids

BUSY = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end: pass"
# a "browser" (carrying the marker) whose child is a "renderer" (carrying --type=renderer) that spins
BROWSER = ("import subprocess, sys\n"
           "subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2], '--type=renderer'])")


def cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spin_share(marker: str, rate: float | None) -> tuple[float, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", BROWSER, BUSY, "4", marker])
    try:
        deadline = time.monotonic() + 3
        while not (pids := renderer_pids(marker)) and time.monotonic() < deadline:
            time.sleep(0.02)
        throttle = RendererThrottle(marker, rate).start() if rate else None
        time.sleep(0.3)
        start, t0 = cpu_s(pids[0]), time.monotonic()
        time.sleep(1.0)
        share = (cpu_s(pids[0]) - start) / (time.monotonic() - t0)
        if throttle:
            throttle.stop()
        return share, pids
    finally:
        proc.kill()
        proc.wait()


def test_a_4x_throttle_runs_the_marked_browsers_renderers_about_a_quarter_of_the_time():
    free, pids = spin_share("--mlitb-pool=test-free", None)
    throttled, _ = spin_share("--mlitb-pool=test-slow", 4.0)
    assert len(pids) == 1
    assert throttled < 0.45 * free, (throttled, free)
    assert throttled > 0.05


def test_an_unmarked_process_is_never_found():
    assert renderer_pids("--mlitb-pool=nobody-launched-this") == []
