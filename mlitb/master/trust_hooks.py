"""The runtime's trust hooks (mlitb/trust/): sample-count allowances from measured rates, and spot-check recomputation.

A mixin of `ProjectRuntime` (loop.py), kept apart so the runtime file stays about membership, frames and updates;
it reads the runtime's clients, settings, network, data and addresses, and writes nothing but its cache.
"""

from __future__ import annotations

import numpy as np

from mlitb.master.scheduler import Client
from mlitb.training.strategies import Result
from mlitb.trust import numpy_net
from mlitb.trust.claims import allowed_samples, median_rate
from mlitb.trust.example_order import examples_used


class TrustHooks:
    def _verifiable(self) -> bool:
        cached = getattr(self, "_verifiable_net", None)
        if cached is None or cached[0] is not self.network:
            cached = self._verifiable_net = (self.network, numpy_net.supports(self.network))
        h = self.hyper  # a compressed upload or shadow download depends on client state the master does not recompute
        dense = h.upload_codec == "float32" and h.download_codec == "float32" and h.algorithm == "gradient"
        return h.spot_checks and dense and self.dataset is not None and cached[1]

    def _recompute(self, result: Result) -> tuple[np.ndarray, float] | None:
        """The result as the master computes it from the WORK it sent (spot checks), or None if it cannot."""
        client = self.clients.get(result.client_id)
        work = client.work_check if client is not None else None
        if work is None or work[0] != result.version or not len(work[2]) or self.dataset is None:
            return None
        claimed = client.claimed_samples  # the result's count before any cut to the allowance
        if claimed > self.spot.policy.max_samples:
            return None
        _, seed, held, params = work
        ids = examples_used(seed, held, claimed)
        train = self.dataset.train
        grad, loss = numpy_net.gradient_sum(self.network, params, train.images[ids], train.labels[ids])
        share = result.samples / claimed
        return grad * np.float32(share), loss * share

    def _fleet_rate(self) -> float | None:
        return median_rate([c.measured_sps for c in self.trainers() if c.measured_sps is not None])

    def _allowed_samples(self, client: Client, fleet_sps: float | None) -> int:
        s = self.settings
        return allowed_samples(client.measured_sps, fleet_sps, client.work_ms, start_sps=s.claim_start_samples_per_s,
                               growth=s.claim_growth, fleet_factor=s.claim_fleet_factor, hard_sps=s.max_samples_per_s)

