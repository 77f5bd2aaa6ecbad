"""/metrics of one process (and of each gateway's projects): the prometheus_client library's exposition.

A collector reads the projects' state at scrape time, one sample per project labelled with its id, and the
process's CPU time. Gauges describe the present, and every series exists from a project's creation: a value
nothing measures now is NaN. Counters are named with their `_total` sample name (the library's text format
writes the family without it in the HELP and TYPE lines).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from mlitb.master.loop import ProjectRuntime

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text format generate_latest writes
NAN = float("nan")


def _measured(rt: ProjectRuntime, key: str) -> float:
    """`key` of the newest round that measured it (a round whose trainers all missed the deadline measures no
    latency or loss: the series keeps its newest value rather than vanish); NaN before any."""
    return next((m[key] for m in reversed(rt.metrics) if m.get(key) is not None), NAN)


def _trainers(rt: ProjectRuntime) -> int:
    return sum(c.role == "trainer" for c in rt.clients.values())


def _while_training(rt: ProjectRuntime, key: str, idle: float) -> float:
    """A measure of the trainers, while any is connected; `idle` (0 for power, NaN for latency) when none is."""
    return _measured(rt, key) if _trainers(rt) else idle


# (metric, type, help, value of a project): one sample per project, labelled with its id. Gauges describe the
# present, and every series exists from a project's creation: a value nothing measures now is NaN.
PROJECT_METRICS = (
    ("mlitb_rounds_total", "counter", "rounds closed", lambda rt: rt.round),
    ("mlitb_trainers", "gauge", "connected trainers", _trainers),
    ("mlitb_clients", "gauge", "connected workers (trainers and trackers)", lambda rt: len(rt.clients)),
    ("mlitb_samples_total", "counter", "samples reduced since the server started", lambda rt: rt.samples_total),
    ("mlitb_samples_per_second", "gauge", "power: samples per second in the last round; 0 with no trainer connected",
     lambda rt: _trainers(rt) and (rt.metrics[-1]["samples_per_s"] if rt.metrics else 0.0)),
    ("mlitb_latency_ms_mean", "gauge", "mean trainer latency in the newest round that measured one (ms); NaN with "
     "no trainer connected", lambda rt: _while_training(rt, "latency_ms_mean", NAN)),
    ("mlitb_latency_ms_p95", "gauge", "95th percentile trainer latency in the newest round that measured one (ms); "
     "NaN with no trainer connected", lambda rt: _while_training(rt, "latency_ms_p95", NAN)),
    ("mlitb_latency_ms_max", "gauge", "largest trainer latency in the newest round that measured one (ms); NaN with "
     "no trainer connected", lambda rt: _while_training(rt, "latency_ms_max", NAN)),
    ("mlitb_loss", "gauge", "mean training loss in the newest round that had results; NaN before any",
     lambda rt: _measured(rt, "loss")),
    ("mlitb_test_error", "gauge", "newest test error reported by a tracker; NaN before any",
     lambda rt: rt.latest_eval[1] if rt.latest_eval else NAN),
    ("mlitb_late_total", "counter", "gradients that arrived after their round closed", lambda rt: rt.late_total),
    ("mlitb_late_applied_total", "counter", "late gradients applied with a staleness weight",
     lambda rt: rt.late_applied_total),
    ("mlitb_rejected_total", "counter", "client frames refused by validation", lambda rt: rt.rejected_total),
    ("mlitb_async_mode", "gauge", "1 when the project runs buffered asynchronous updates (hyper.mode 'async'), 0 for "
     "synchronous rounds; mlitb_rounds_total counts the updates applied either way",
     lambda rt: float(rt.hyper.mode == "async")),
    ("mlitb_staleness_mean", "gauge", "mean staleness (versions) of the results in the newest update that applied "
     "any; NaN before any (sync rounds record none)", lambda rt: _measured(rt, "staleness_mean")),
    ("mlitb_staleness_max", "gauge", "largest staleness (versions) in the newest update that applied any; NaN "
     "before any", lambda rt: _measured(rt, "staleness_max")),
    ("mlitb_refused_stale_total", "counter", "async results refused as older than max_staleness (TOO_STALE)",
     lambda rt: rt.telemetry.refused_stale_total),
    ("mlitb_bytes_in_total", "counter", "WebSocket message bytes received from the project's workers",
     lambda rt: rt.bytes_in),
    ("mlitb_bytes_out_total", "counter", "WebSocket message bytes sent to the project's workers", lambda rt: rt.bytes_out),
    ("mlitb_bytes_up_per_result", "gauge", "GRADIENT frame bytes per result taken in the newest round that had results, "
     "in the project's upload codec; NaN before any", lambda rt: _measured(rt, "bytes_up_per_result")),
    ("mlitb_bytes_down_per_client", "gauge", "PARAMS frame bytes per client sent for the newest round that had "
     "results, in the project's download codec; NaN before any", lambda rt: _measured(rt, "bytes_down_per_client")),
)



class ProjectsCollector:
    """The series of `PROJECT_METRICS` for the given projects, and process_cpu_seconds_total."""

    def __init__(self, runtimes: list[ProjectRuntime], cpu_s: float):
        self.runtimes, self.cpu_s = runtimes, cpu_s

    def collect(self):
        cpu = CounterMetricFamily("process_cpu_seconds", "server process CPU time (user + system) in seconds")
        cpu.add_metric([], self.cpu_s)
        yield cpu
        for name, kind, text, value in PROJECT_METRICS:
            family = (CounterMetricFamily(name.removesuffix("_total"), text, labels=["project"]) if kind == "counter"
                      else GaugeMetricFamily(name, text, labels=["project"]))
            for rt in self.runtimes:
                family.add_metric([str(rt.id)], float(value(rt)))
            yield family


def prometheus_text(runtimes: list[ProjectRuntime], cpu_s: float) -> str:
    """The Prometheus text exposition of every given project, plus the process CPU time."""
    registry = CollectorRegistry(auto_describe=False)  # one per scrape: which projects show depends on the caller
    registry.register(ProjectsCollector(runtimes, cpu_s))
    return generate_latest(registry).decode()
