"""Work times (MLitB §3.3 d): each trainer's latency and processing-rate estimates, and the server's ingest time.

A trainer's next work time is T minus its round-trip latency, minus a margin that follows the measured
spread of its own timing (`timing_margin_ms`: how far its compute ran past the work time it was given,
and how much its latency varies), minus its place in the ingest queue, so all results arrive by the
deadline: the server takes each result in turn (measured: its CPU time per result), so the trainers' arrivals are staggered one ingest time
apart, in the order the parameters went out, instead of all landing at once at the deadline.
Estimates rise at once (a trainer that slowed should not be late twice) and fall by moving averages.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from mlitb.master.transport import Link

LATENCY_SMOOTHING = 0.3  # weight of the newest latency sample in the moving average (when it falls)
INGEST_SMOOTHING = 0.3  # weight of the newest per-result ingest time in the moving average (when it falls)
MAX_INGEST_SHARE = 0.5  # the staggered arrivals span at most this share of the period
RATE_SMOOTHING = 0.3  # weight of the newest processing-rate sample in the moving average
SLOWDOWN_RATIO = 0.5  # a rate sample below this share of the estimate replaces it at once
TIMING_WINDOW = 8  # results whose timing sets a trainer's margin
MIN_TIMING_SAMPLES = 3  # results before their spread sets the margin
# the least margin, for a stall no recent result showed (bench/work_fill.py, a CIFAR-size and a paper-network
# trainer on a 2-core machine, 120 trainer-rounds each: late results 3 with 2.5% of T, 1 with 4%, 0 with 5%,
# work / (T - round trip) 0.97 / 0.96 / 0.95; earlier, at load ~20: 2 in 16 rounds with 0.5%)
MIN_MARGIN_MS = 20.0
MIN_MARGIN_SHARE = 0.05
MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation of a normal distribution


@dataclass(eq=False)
class Client:
    """One connected worker as the runtime sees it; its estimates are written only by the scheduler."""

    id: int
    role: str
    backend: str
    link: Link
    admitted: bool = False
    latency_ms: float = 100.0  # round trip estimate (send params -> result back, minus compute)
    rate_sps: float | None = None  # processing rate estimate: samples per second of compute
    work_ms: int = 0
    max_samples: int = 1  # most samples a result may claim: max_samples_per_s x max(work time, 1 s)
    alloc_size: int = 0
    last_samples: int = 0
    # the newest results' compute past the work time they were given (ms, >= 0), and their latency (ms)
    overshoots: deque = field(default_factory=lambda: deque(maxlen=TIMING_WINDOW))
    latencies: deque = field(default_factory=lambda: deque(maxlen=TIMING_WINDOW))
    allowed_samples: int = 1  # most samples a result counts for, from measured rates (mlitb/trust/claims.py)
    claimed_samples: int = 0  # the count its newest result claimed (its processing rate is the trainer's word)
    measured_sps: float | None = None  # accepted samples per wall second of its last result
    address: str | None = None  # the peer's IP address (None: in memory)
    vote: object = None  # robust rules sum the results of one vote first (mlitb/trust/addresses.py)
    volunteer: str | None = None  # public id of the volunteer key it joined with (mlitb/trust/credit.py)
    # version -> (seed, held ids, parameters) of its newest seeded WORKs (spot checks: trust_hooks.py)
    work_checks: dict = field(default_factory=dict)


def observe_latency(client: Client, sample_ms: float) -> float:
    """Take one latency sample: the estimate rises at once and falls by a moving average; returns the sample."""
    sample_ms = max(0.0, sample_ms)
    if sample_ms >= client.latency_ms:
        client.latency_ms = sample_ms
    else:
        client.latency_ms += LATENCY_SMOOTHING * (sample_ms - client.latency_ms)
    return sample_ms


def observe_rate(client: Client, samples_per_s: float) -> None:
    """Moving average of the processing rate; a slow-down (a busy tab, a throttled device) replaces it at once."""
    old = client.rate_sps
    if old is None or samples_per_s < SLOWDOWN_RATIO * old:
        client.rate_sps = samples_per_s
    else:
        client.rate_sps = (1 - RATE_SMOOTHING) * old + RATE_SMOOTHING * samples_per_s


def observe(client: Client, samples: int, compute_ms: int, elapsed_ms: float, max_samples_per_s: float) -> float:
    """Update the client's rate and latency estimates from one result that took `elapsed_ms` from sending its
    work to its arrival; returns the latency sample (elapsed minus compute)."""
    client.last_samples = samples
    if compute_ms > 0:
        observe_rate(client, min(samples * 1000.0 / compute_ms, float(max_samples_per_s)))
    sample = observe_latency(client, elapsed_ms - compute_ms)
    if client.work_ms > 0:  # a result of given work: its timing sets the margin
        client.overshoots.append(max(0.0, float(compute_ms - client.work_ms)))
        client.latencies.append(sample)
    return sample


def spread_ms(samples) -> float:
    """Three standard deviations of the samples, from their median absolute deviation: one outlier (a first
    round that also compiled its kernels, a garbage collection) barely moves it."""
    x = np.asarray(samples, dtype=np.float64)
    return 3 * MAD_TO_SIGMA * float(np.median(np.abs(x - np.median(x)))) if x.size >= 3 else 0.0


def timing_margin_ms(client: Client, period_ms: float, batch_size: int) -> float:
    """Time kept back, besides the latency estimate (which rises at once with a slower round trip), so the
    result still arrives by the deadline: the median of the trainer's recent overshoots past its work time (one
    that checks its clock between sub-batches overshoots by milliseconds, one that finishes whole batches by up
    to one batch) plus the spread of its overshoot and latency together, at least max(20 ms, 5% of T).
    Until MIN_TIMING_SAMPLES results have shown that spread: its largest overshoot so far (before the first,
    one mini-batch at its rate) and 5% of T."""
    if len(client.overshoots) < MIN_TIMING_SAMPLES:
        batch_ms = 1000.0 * batch_size / client.rate_sps if client.rate_sps else 0.0
        first = max(client.overshoots) if client.overshoots else batch_ms
        return min(first, period_ms) + max(50.0, 0.05 * period_ms)
    timing = [o + lat for o, lat in zip(client.overshoots, client.latencies)]
    margin = float(np.median(client.overshoots)) + max(spread_ms(timing), MIN_MARGIN_MS, MIN_MARGIN_SHARE * period_ms)
    return min(margin, period_ms)


def work_ms_for(client: Client, period_s: float, batch_size: int, min_work_ms: int, queue_ms: float = 0.0) -> int:
    """Compute time for the next round so the result is back before the deadline: T minus the client's latency,
    minus the margin its measured timing calls for (`timing_margin_ms`), minus `queue_ms` (the ingest time of
    the results due after its own); within [min_work_ms, T]."""
    period_ms = period_s * 1000
    work = period_ms - client.latency_ms - timing_margin_ms(client, period_ms, batch_size) - queue_ms
    return int(min(period_ms, max(min_work_ms, work)))


def max_samples(client: Client, max_samples_per_s: float) -> int:
    """The most samples a result of this client may claim: its work time (at least 1 s) at the rate cap."""
    return max(1, int(max_samples_per_s * max(client.work_ms, 1000) / 1000))


class IngestClock:
    """The server's CPU time to take in one result (the loop's thread): between consecutive results of an
    update, averaged per update; it sets how far apart the trainers' arrivals are staggered."""

    def __init__(self) -> None:
        self.seconds = 0.0  # the estimate
        self._mark: float | None = None

    def start(self) -> None:
        self._mark = None

    def took_one(self, samples: list[float]) -> None:
        """One more result was taken in: append the CPU time since the previous one (which includes receiving
        and decoding this one) to `samples`."""
        cpu = time.thread_time()
        if self._mark is not None:
            samples.append(cpu - self._mark)
        self._mark = cpu

    def close(self, samples: list[float]) -> None:
        if len(samples) >= 2:  # CPU between the first and the last result, per result
            sample = float(np.mean(samples))
            rising = sample > self.seconds
            self.seconds = sample if rising else self.seconds + INGEST_SMOOTHING * (sample - self.seconds)

    def stagger_ms(self, due: int, period_s: float) -> float:
        """Milliseconds between the due results' arrivals: the ingest time, capped so they span at most
        MAX_INGEST_SHARE of the period."""
        return 1000 * min(self.seconds, MAX_INGEST_SHARE * period_s / max(due, 1))
