"""`mlitb simulate`: hundreds of simulated trainers speaking the real protocol to a real server.

The trainers (`sim_fleet.py`: lean WebSocket clients over real TCP, real-sized gradients, so
the server does all of its real work: parsing, unmasking, checking and reducing every
gradient, and sending every parameter frame) run in one or more processes (`processes`), and
by default this command starts the server as a separate process, so client and server CPU
time are measured separately.

The driver prints one line per round and writes one JSON object per round (the keys of
`mlitb demo --metrics-out` plus clients, latency p95, server and client CPU time, bytes in
and out, late and rejected counts).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mlitb.model import PAPER_NETWORK
from mlitb.workers.sim_fleet import Fleet, FleetSpec, FleetStatus, run_fleet_process

METRIC_KEYS = ("round", "trainers", "samples", "samples_per_s", "latency_ms_mean", "latency_ms_max", "loss", "test_error")
EXTRA_KEYS = ("clients", "contributions", "duration_s", "latency_ms_p95", "cpu_s", "ingest_ms", "server_cpu_s", "client_cpu_s",
              "bytes_in", "bytes_out", "late", "late_applied", "rejected", "mode", "staleness_mean", "staleness_max",
              "refused_stale")


def dense_network(params: int) -> list[dict]:
    """28x28x1 -> dense H relu -> dense 10 softmax, with H chosen for about `params` parameters."""
    hidden = max(1, round((params - 10) / (784 + 1 + 10)))
    return [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"},
            {"type": "dense", "units": hidden, "activation": "relu"},
            {"type": "dense", "units": 10, "activation": "softmax"}]


def parse_range(text: str) -> tuple[float, float]:
    """'A..B' (or one number) as a (low, high) pair of non-negative numbers."""
    low, _, high = text.partition("..")
    a, b = float(low), float(high or low)
    if a < 0 or b < a:
        raise ValueError(f"expected A..B with 0 <= A <= B, got {text!r}")
    return a, b


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def raise_open_files_limit() -> None:
    """Hundreds of sockets need more file descriptors than the usual soft limit of 1024."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


class ServerProcess:
    """`mlitb serve` in its own process on a free loopback port, with a throw-away data folder."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 max_connections_per_address: int = 4096):
        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.host, self.port, self.log_level = host, port, log_level
        # every simulated trainer connects from this one address
        self.max_connections_per_address = max_connections_per_address
        self.url = f"http://{host}:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> "ServerProcess":
        import httpx

        raise_open_files_limit()
        self._dir = tempfile.TemporaryDirectory(prefix="mlitb-simulate-")
        self.log_path = Path(self._dir.name) / "server.log"
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "mlitb.cli", "serve", "--host", self.host, "--port", str(self.port),
               "--data-dir", str(Path(self._dir.name) / "data"), "--log-level", self.log_level,
               "--max-connections-per-address", str(self.max_connections_per_address)]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/api/projects", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not start on {self.url}: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()
        if getattr(self, "_dir", None):
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def create_project(url: str, params: int | None, period_s: float, late_policy: str = "drop",
                   name: str = "simulate", mode: str = "sync", buffer_size: int = 4, codecs: dict | None = None) -> dict:
    """A project for simulated trainers: the paper's network, or a dense one of about `params` parameters."""
    import httpx

    network = PAPER_NETWORK if params is None else dense_network(params)
    hyper = {"period_s": period_s, "learning_rate": 0.01, **({"late_policy": late_policy} if late_policy != "drop" else {}),
             **({"mode": mode, "buffer_size": buffer_size} if mode != "sync" else {}), **(codecs or {})}
    body = {"name": name, "network": network, "hyper": hyper}
    r = httpx.post(f"{url}/api/projects", json=body, timeout=60)
    if r.status_code != 201:
        raise RuntimeError(f"creating the project failed: {r.status_code} {r.text}")
    return r.json()


@dataclass
class SimResult:
    records: list[dict]
    statuses: list[FleetStatus]
    connect_s: float

    def median(self, key: str) -> float | None:
        vals = [r[key] for r in self.records if r.get(key) is not None]
        return statistics.median(vals) if vals else None


def round_line(m: dict) -> str:
    mb = 1e6
    return (f"round {m['round']:5d} | clients {m['clients']:5d} | trainers {m['trainers']:5d} | "
            f"power {m['samples_per_s']:11.1f} samples/s | latency mean {m['latency_ms_mean'] or 0:7.1f} "
            f"p95 {m['latency_ms_p95'] or 0:7.1f} max {m['latency_ms_max'] or 0:7.1f} ms | "
            f"server cpu {m.get('cpu_s') or 0:5.2f} s | client cpu "
            f"{'  -  ' if m.get('client_cpu_s') is None else format(m['client_cpu_s'], '5.2f')} s | "
            f"in {m.get('bytes_in', 0) / mb:7.1f} MB out {m.get('bytes_out', 0) / mb:7.1f} MB | "
            f"late {m.get('late', 0)} rejected {m.get('rejected', 0)}"
            + (f" | staleness mean {m.get('staleness_mean') or 0:.2f} max {m.get('staleness_max') or 0}"
               if m.get("mode") == "async" else ""))


def simulate(url: str, project: int, param_count: int, clients: int, rounds: int, *, period_s: float = 4.0,
             speed: float = 2200.0, speed_spread: float = 1.0, latency_ms: tuple[float, float] = (10.0, 50.0),
             churn: float = 0.0, processes: int = 1, seed: int = 0, token: str | None = None, warmup: int = 1,
             server_pid: int | None = None, out=None, sink=None, upload_codec: str = "float32",
             topk_density: float = 0.01) -> SimResult:
    """Run `clients` simulated trainers in `processes` processes until `rounds` rounds closed after all of them
    joined (the first `warmup` of those are not reported); returns the reported rounds' records. Each record
    gets `clients`, `client_cpu_s` (CPU time of the client processes over the round) and, given the server's
    pid, `server_cpu_s` (the server process's CPU time over the round, from /proc)."""
    import httpx

    raise_open_files_limit()
    processes = max(1, min(processes, clients))
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    ctx = mp.get_context("spawn")
    stop, queue = ctx.Event(), ctx.Queue()
    budget_s = 60 + clients * 0.05 + (rounds + warmup + 3) * period_s * 3  # every loop here ends by then
    procs = []
    for i, share in enumerate(shares):
        spec = FleetSpec(url, project, param_count, share, speed, speed_spread, latency_ms, churn, period_s, seed, token,
                         upload_codec, topk_density)
        p = ctx.Process(target=run_fleet_process, args=(spec, i, stop, queue, budget_s), daemon=True,
                        name=f"mlitb-simulate-{i}")
        p.start()
        procs.append(p)
    statuses: dict[int, FleetStatus] = {}
    records: list[dict] = []
    t0 = time.monotonic()
    deadline = t0 + budget_s

    def drain() -> None:
        while True:
            try:
                s = queue.get_nowait()
            except Exception:
                return
            statuses[s.index] = s
            if s.failed:
                raise RuntimeError(f"client process {s.index} failed: {s.failed}")

    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            connect_deadline = t0 + 30 + clients * 0.05
            while sum(s.joined for s in statuses.values()) < clients * (1 - churn) - 0.5:
                drain()
                if time.monotonic() > connect_deadline or not all(p.is_alive() for p in procs):
                    errors = Counter()
                    for s in statuses.values():
                        errors.update(s.errors)
                    raise RuntimeError(f"only {sum(s.joined for s in statuses.values())} of {clients} clients "
                                       f"joined in time; errors: {dict(errors.most_common(5))}")
                time.sleep(0.1)
            connect_s = time.monotonic() - t0
            first = http.get(f"/api/projects/{project}").json()["round"] + 1 + warmup
            pids = [p.pid for p in procs] + ([server_pid] if server_pid else [])
            cpu_mark = [_cpu_seconds(pid) for pid in pids]
            while len(records) < rounds:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(records)} of {rounds} rounds in {budget_s:.0f} s")
                time.sleep(0.2)
                drain()
                for m in http.get(f"/api/projects/{project}/metrics", params={"since": first}).json():
                    first = m["round"] + 1
                    cpu_now = [_cpu_seconds(pid) for pid in pids]
                    used = [None if a is None or b is None else round(b - a, 3) for a, b in zip(cpu_mark, cpu_now)]
                    cpu_mark = cpu_now
                    m["clients"] = sum(s.joined for s in statuses.values())
                    m["client_cpu_s"] = None if None in used[:len(procs)] else round(sum(used[:len(procs)]), 3)
                    m["server_cpu_s"] = used[-1] if server_pid else None
                    if len(records) < rounds:
                        records.append(m)
                        if out is not None:
                            print(round_line(m), file=out, flush=True)
                        if sink is not None:
                            sink.write(json.dumps({k: m.get(k) for k in METRIC_KEYS + EXTRA_KEYS}) + "\n")
                            sink.flush()
    finally:
        stop.set()
        end = time.monotonic() + 10
        for p in procs:
            p.join(max(0.1, end - time.monotonic()))
        drain_deadline = time.monotonic() + 1
        while time.monotonic() < drain_deadline:
            try:
                s = queue.get(timeout=0.1)
                statuses[s.index] = s
            except Exception:
                break
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
    return SimResult(records, [statuses[i] for i in sorted(statuses)], connect_s)


def summary_lines(result: SimResult, clients: int) -> list[str]:
    r = result
    errors, closes, sent, reconnects = Counter(), Counter(), 0, 0
    for s in r.statuses:
        errors.update(s.errors)
        closes.update(s.closes)
        sent += s.gradients_sent
        reconnects += s.reconnects
    med = r.median
    lines = [f"{clients} clients joined in {r.connect_s:.1f} s; over {len(r.records)} rounds (medians): "
             f"power {med('samples_per_s') or 0:.1f} samples/s, latency mean {med('latency_ms_mean') or 0:.1f} ms "
             f"p95 {med('latency_ms_p95') or 0:.1f} ms max {med('latency_ms_max') or 0:.1f} ms, server cpu "
             f"{med('cpu_s') or 0:.2f} s/round, client cpu {med('client_cpu_s') or 0:.2f} s/round, in "
             f"{(med('bytes_in') or 0) / 1e6:.1f} MB/round, out {(med('bytes_out') or 0) / 1e6:.1f} MB/round; "
             f"late {sum(m.get('late', 0) for m in r.records)}, rejected {sum(m.get('rejected', 0) for m in r.records)}"]
    lines.append(f"clients sent {sent} gradients, reconnected {reconnects} times; errors {dict(errors) or 'none'}; "
                 f"server closes {dict(closes) or 'none'}")
    return lines


def run_simulate(clients: int, server: str | None = None, project: int | None = None, period_s: float = 4.0,
                 rounds: int = 10, params: int | None = None, speed: float = 2200.0, speed_spread: float = 4.0,
                 latency_ms: str = "10..50", churn: float = 0.0, processes: int = 1, late_policy: str = "drop",
                 seed: int = 0, metrics_out: str | None = None, token: str | None = None, mode: str = "sync",
                 buffer_size: int = 4, out=None, codecs: dict | None = None) -> int:
    """The `mlitb simulate` command; returns its exit status."""
    import httpx

    out = out or sys.stdout
    try:
        lat = parse_range(latency_ms)
    except ValueError as exc:
        print(f"error: --latency-ms: {exc}", file=sys.stderr)
        return 2
    if clients < 1 or rounds < 1 or not 0 <= churn < 1 or speed <= 0 or speed_spread < 1:
        print("error: need --clients >= 1, --rounds >= 1, 0 <= --churn < 1, --speed > 0, --speed-spread >= 1",
              file=sys.stderr)
        return 2
    if project is not None and server is None:
        print("error: --project needs --server", file=sys.stderr)
        return 2
    own = None
    sink = open(metrics_out, "w") if metrics_out else None
    try:
        if server is None:
            own = ServerProcess().start()
            server = own.url
        server = server.rstrip("/")
        if project is None:
            info = create_project(server, params, period_s, late_policy, name=f"simulate {clients} clients",
                                  mode=mode, buffer_size=buffer_size, codecs=codecs)
        else:
            r = httpx.get(f"{server}/api/projects/{project}", timeout=30,
                          headers={"Authorization": f"Bearer {token}"} if token else None)
            if r.status_code != 200:
                from mlitb.workers.grid import project_problem

                print(project_problem(server, project, r, "--token"), file=sys.stderr)
                return 1
            info = r.json()
            period_s = info["hyper"]["period_s"]
        print(f"mlitb simulate: {clients} simulated trainers in {processes} process(es) -> project {info['id']} "
              f"({info['param_count']} parameters, T = {period_s} s) on {server}"
              f"{f' (server pid {own.pid})' if own else ''}; speed {speed:g} samples/s x spread {speed_spread:g}, "
              f"round trip {lat[0]:g}..{lat[1]:g} ms, churn {churn:g}", file=out, flush=True)
        result = simulate(server, info["id"], info["param_count"], clients, rounds, period_s=period_s, speed=speed,
                          speed_spread=speed_spread, latency_ms=lat, churn=churn, processes=processes, seed=seed,
                          token=token, server_pid=own.pid if own else None, out=out, sink=sink,
                          upload_codec=info["hyper"].get("upload_codec", "float32"),
                          topk_density=info["hyper"].get("topk_density", 0.01))
        for line in summary_lines(result, clients):
            print(line, file=out, flush=True)
        return 0
    except (RuntimeError, httpx.HTTPError, OSError) as exc:
        from mlitb.unreachable import EXIT_UNREACHABLE, unreachable_line

        line = unreachable_line(exc)
        print(line or f"error: {exc}", file=sys.stderr)
        if line is not None and own is None:
            return EXIT_UNREACHABLE
        if own is not None:
            print(own.log_tail(), file=sys.stderr)
        return 1
    finally:
        if sink:
            sink.close()
        if own is not None:
            own.stop()


__all__ = ["FleetSpec", "Fleet", "ServerProcess", "SimResult", "create_project", "dense_network",
           "parse_range", "run_simulate", "simulate", "summary_lines", "round_line", "METRIC_KEYS"]
