"""How many samples one trainer's result may count for: checked against its own measured rate and the fleet's.

A trainer sends the SUM of its per-sample gradients and a sample count; the count is its word,
and it sets the result's weight (and its volunteer credit). A fixed cap (`max_samples_per_s`,
200,000 per second of work) alone let one stranger claim more than a whole fleet of browsers. So
the count a result may carry is bounded by rates the master measures itself, in samples per
wall-clock second from the WORK frame to the result (never by the compute time the trainer
reports):
- its own record: at most `growth` times its measured rate of the previous rounds, so a trainer
  that really is faster reaches its rate within a few rounds, but a claim cannot jump;
- the fleet: at most `fleet_factor` times the median measured rate of the project's trainers, so
  one device claiming far more than its peers (a minority cannot move the median) is held to a
  plausible share;
- before any trainer of the project has a record, `start_sps`; a newcomer to a fleet may always
  claim the fleet's median rate (it counts as a typical trainer).
A count above the allowance is not refused (an honest fast device would lose its round); the
result is kept with its per-sample mean and the allowed count: its sum is scaled by
allowed/claimed. Counts above the absolute cap are still refused (BAD_SAMPLE_COUNT).
"""

from __future__ import annotations

import math


def measured_rate(samples: int, elapsed_s: float, work_ms: int) -> float:
    """Samples per second a result shows: its accepted count over the wall time it took, at least the work
    time it was given (an instant answer does not buy a higher rate)."""
    return samples / max(elapsed_s, work_ms / 1000.0, 1e-3)


def allowed_samples(own_sps: float | None, fleet_sps: float | None, work_ms: int, *, start_sps: float,
                    growth: float, fleet_factor: float, hard_sps: float) -> int:
    """The most samples a result of `work_ms` of work may count for (at least 1)."""
    if fleet_sps is None:  # no trainer of the project has a record yet
        rate = growth * own_sps if own_sps is not None else start_sps
    else:  # a newcomer counts as a typical trainer; more only by growing its own record, up to the fleet bound
        rate = min(fleet_factor * fleet_sps, max(fleet_sps, growth * own_sps if own_sps is not None else 0.0))
    return max(1, int(min(hard_sps, rate) * max(work_ms, 1000) / 1000.0))


def median_rate(rates: list[float]) -> float | None:
    """The fleet's median measured rate, or None when no trainer has a record yet."""
    if not rates:
        return None
    ordered = sorted(rates)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
