"""A project's telemetry: cumulative counters (Prometheus, /metrics) and one metrics record per update."""

from __future__ import annotations

import time

import numpy as np

from mlitb.training.strategies.base import UpdateStats


class Meter:
    """Message bytes to and from the project's workers; the transports add to them (the WebSocket endpoint
    counts every message of a joined client)."""

    __slots__ = ("bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0


class TelemetryViews:
    """The cumulative counters as read-only properties of the runtime (which sets `telemetry` and `meter`)."""

    telemetry: "Telemetry"
    meter: Meter

    samples_total = property(lambda self: self.telemetry.samples_total)
    late_total = property(lambda self: self.telemetry.late_total)
    late_applied_total = property(lambda self: self.telemetry.late_applied_total)
    rejected_total = property(lambda self: self.telemetry.rejected_total)
    bytes_in = property(lambda self: self.meter.bytes_in)
    bytes_out = property(lambda self: self.meter.bytes_out)


class Telemetry:
    """Cumulative counters of one runtime and the builder of its per-update metrics records."""

    def __init__(self) -> None:
        self.meter = Meter()
        self.samples_total = 0
        self.late_total = 0
        self.late_applied_total = 0
        self.rejected_total = 0
        self._marks: tuple[float, int, int] | None = None  # (CPU s, bytes in, bytes out) at the last close

    def begin(self) -> None:
        if self._marks is None:
            self._marks = (time.process_time(), self.meter.bytes_in, self.meter.bytes_out)

    def record(self, stats: UpdateStats, aggregate, duration: float, step_skipped: bool, hyper, *,
               latest_eval: tuple[int, float] | None, ingest_s: float, unallocated: int, classes: int) -> dict:
        """The metrics record of the update `stats` describes (its figures since the previous record)."""
        acc, lat, meter = aggregate, stats.latencies, self.meter
        cpu, bytes_in, bytes_out = self._marks or (time.process_time(), meter.bytes_in, meter.bytes_out)
        self._marks = (time.process_time(), meter.bytes_in, meter.bytes_out)
        self.samples_total += acc.samples
        return {
            "round": stats.round,
            "time": time.time(),
            "duration_s": round(duration, 4),
            "trainers": stats.trainers,
            "contributions": acc.contributions,
            "samples": acc.samples,
            "samples_per_s": round(acc.samples / duration, 2) if duration > 0 else 0.0,
            "latency_ms_mean": round(float(np.mean(lat)), 2) if lat else None,
            "latency_ms_max": round(float(np.max(lat)), 2) if lat else None,
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 2) if lat else None,
            "loss": round(acc.loss_sum / acc.samples, 6) if acc.samples else None,
            "learning_rate": hyper.learning_rate,  # live hyper-parameters (PATCH .../hyper) in force this round
            "period_s": hyper.period_s,
            "test_error": latest_eval[1] if latest_eval else None,
            "test_error_round": latest_eval[0] if latest_eval else None,
            "late": stats.late,
            "late_applied": stats.late_applied,
            "rejected": stats.rejected,
            "clamped": stats.clamped,
            "step_skipped": step_skipped,
            "cpu_s": round(self._marks[0] - cpu, 4),  # server process CPU time since the previous update closed
            "ingest_ms": round(ingest_s * 1000, 4),  # estimated server CPU time per result
            "bytes_in": meter.bytes_in - bytes_in,  # WebSocket message bytes from / to this project's clients
            "bytes_out": meter.bytes_out - bytes_out,
            "unallocated": unallocated,  # ids no trainer holds although some trainer has room (0 is the steady state)
            "refreshed": stats.refreshed,
            "classes": classes,
            # communication (docs/protocol.md "Payload kinds"): frame bytes per result taken and per client sent
            "upload_codec": hyper.upload_codec,
            "download_codec": hyper.download_codec,
            "algorithm": hyper.algorithm,
            "bytes_up_per_result": round(stats.up_bytes / acc.contributions) if acc.contributions else None,
            "bytes_down_per_client": round(stats.down_bytes / stats.down_frames) if stats.down_frames else None,
        }
