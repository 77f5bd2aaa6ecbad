"""Scaling of one server process: power and latency with N = 1, 2, 4, ..., 1024 simulated trainers.

One `mlitb serve` process (started here) gets a fresh project per N; N simulated trainers
(`mlitb.workers.simulate`: the real binary protocol over real WebSockets, real-sized random
gradients, equal speeds) train it for a few rounds of T seconds. Printed per N: power
(samples/s, median over the measured rounds), the ideal N x power(1), the scaling efficiency
power(N) / (N x power(1)), trainer latency (mean, p95, max), server and client CPU seconds
per round and megabytes in and out per round. The figures are also saved as JSON and, when
matplotlib is installed (the `bench` extra), as a PNG plot under bench/out/.

    .venv/bin/python bench/scaling.py                       # the paper's network, N up to 1024
    .venv/bin/python bench/scaling.py --params 455000 --max-clients 256
    .venv/bin/python bench/scaling.py --params 455000 --clients 1,256   # only these N

Client processes and the server share this machine's cores: the clients are cheap (timers
for compute, one pre-masked gradient), and their CPU time is printed beside the server's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from mlitb.workers.simulate import ServerProcess, create_project, parse_range, simulate  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def measure(server: ServerProcess, n: int, args) -> dict:
    project = create_project(server.url, args.params, args.period, name=f"scaling {n}")
    try:
        result = simulate(server.url, project["id"], project["param_count"], n, args.rounds, period_s=args.period,
                          speed=args.speed, speed_spread=1.0, latency_ms=parse_range(args.latency_ms),
                          processes=max(1, min(args.processes, n)), seed=args.seed, warmup=args.warmup,
                          server_pid=server.pid)
    finally:
        httpx.delete(f"{server.url}/api/projects/{project['id']}",
                     headers={"Authorization": f"Bearer {project['owner_token']}"}, timeout=30)
    med = result.median
    return {"clients": n, "params": project["param_count"], "power": med("samples_per_s"),
            "latency_mean": med("latency_ms_mean"), "latency_p95": med("latency_ms_p95"),
            "latency_max": med("latency_ms_max"), "server_cpu_s": med("server_cpu_s"), "cpu_s": med("cpu_s"),
            "client_cpu_s": med("client_cpu_s"), "mb_in": (med("bytes_in") or 0) / 1e6,
            "mb_out": (med("bytes_out") or 0) / 1e6, "duration_s": med("duration_s"),
            "late": sum(r["late"] for r in result.records), "contributions": med("contributions"),
            "connect_s": round(result.connect_s, 2), "rounds": [r["round"] for r in result.records]}


def table(rows: list[dict]) -> str:
    base = rows[0]["power"] / rows[0]["clients"]
    head = (f"{'N':>5} {'power/s':>11} {'ideal/s':>11} {'effic.':>6} {'lat mean':>8} {'p95':>7} {'max':>7} "
            f"{'srv cpu':>7} {'cli cpu':>7} {'MB in':>7} {'MB out':>7} {'round s':>7} {'late':>4}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ideal = r["clients"] * base
        lines.append(f"{r['clients']:5d} {r['power']:11.0f} {ideal:11.0f} {r['power'] / ideal:6.3f} "
                     f"{r['latency_mean']:8.1f} {r['latency_p95']:7.1f} {r['latency_max']:7.1f} "
                     f"{r['server_cpu_s'] or 0:7.2f} {r['client_cpu_s'] or 0:7.2f} {r['mb_in']:7.1f} {r['mb_out']:7.1f} "
                     f"{r['duration_s']:7.2f} {r['late']:4d}")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    n = [r["clients"] for r in rows]
    base = rows[0]["power"] / rows[0]["clients"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.loglog(n, [x * base for x in n], "k--", label="ideal N x power(1)")
    a.loglog(n, [r["power"] for r in rows], "o-", label="measured")
    a.set_xlabel("simulated trainers N")
    a.set_ylabel("power (samples/s)")
    a.set_xscale("log", base=2)
    a.grid(True, which="both", alpha=0.3)
    a.legend()
    for key, label in (("latency_mean", "mean"), ("latency_p95", "p95"), ("latency_max", "max")):
        b.semilogx(n, [r[key] for r in rows], "o-", label=label, base=2)
    b.set_xlabel("simulated trainers N")
    b.set_ylabel("trainer latency (ms)")
    b.grid(True, which="both", alpha=0.3)
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--params", type=int, default=None, help="dense network of about this many parameters (default: "
                                                             "the paper's network, 31,786)")
    p.add_argument("--max-clients", type=int, default=1024, help="largest N (powers of two from 1)")
    p.add_argument("--clients", default=None, help="only these N, comma-separated (the first is the baseline of "
                                                   "the efficiency; e.g. 1,256)")
    p.add_argument("--period", type=float, default=4.0, help="round duration T in seconds")
    p.add_argument("--rounds", type=int, default=4, help="measured rounds per N")
    p.add_argument("--warmup", type=int, default=1, help="rounds after all joined that are not measured")
    p.add_argument("--speed", type=float, default=2200.0, help="samples/s of every simulated trainer")
    p.add_argument("--latency-ms", default="10..50", help="network round trip A..B ms, uniform per trainer")
    p.add_argument("--processes", type=int, default=1, help="client processes (at most N)")
    p.add_argument("--seed", type=int, default=0, help="seed of latencies and gradients")
    args = p.parse_args()
    sizes = [1 << k for k in range(args.max_clients.bit_length()) if 1 << k <= args.max_clients]
    if args.clients:
        sizes = [int(x) for x in args.clients.split(",")]
    OUT.mkdir(parents=True, exist_ok=True)
    tag = f"{args.params or 31786}p" + (f"_n{'-'.join(map(str, sizes))}" if args.clients else "")
    print(f"scaling: one server process, T = {args.period} s, {args.rounds} measured rounds per N, speed "
          f"{args.speed:g} samples/s per trainer, round trip {args.latency_ms} ms; {os.cpu_count()} CPU cores shared "
          f"by the server and {args.processes} client process(es)", flush=True)
    rows = []
    t0 = time.monotonic()
    with ServerProcess() as server:
        for n in sizes:
            row = measure(server, n, args)
            rows.append(row)
            eff = row["power"] / (n * rows[0]["power"] / rows[0]["clients"])
            print(f"  N={n:5d}: power {row['power']:11.0f} samples/s, efficiency {eff:.3f}, latency mean "
                  f"{row['latency_mean']:.1f} ms p95 {row['latency_p95']:.1f} max {row['latency_max']:.1f}, server cpu "
                  f"{row['server_cpu_s'] or 0:.2f} s/round ({time.monotonic() - t0:.0f} s)", flush=True)
    print(f"\nnetwork: {rows[0]['params']} parameters ({rows[0]['params'] * 4 / 1e3:.0f} KB per gradient)")
    print(table(rows))
    eff = rows[-1]["power"] / (rows[-1]["clients"] * rows[0]["power"])
    print(f"\nscaling efficiency at N = {rows[-1]['clients']}: {eff:.3f} (target >= 0.9)")
    (OUT / f"scaling_{tag}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    png = OUT / f"scaling_{tag}.png"
    title = f"one server process, {rows[0]['params']:,} parameters, T = {args.period:g} s"
    print(f"figures: {OUT / f'scaling_{tag}.json'}" + (f", {png}" if plot(rows, png, title) else
                                                       " (no plot: matplotlib is not installed; pip install .[bench])"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
