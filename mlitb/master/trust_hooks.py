"""The runtime's trust hooks (mlitb/trust/): sample-count allowances from measured rates, and spot-check recomputation.

A mixin of `ProjectRuntime` (loop.py), kept apart so the runtime file stays about membership, frames and updates;
it reads the runtime's clients, settings, network, data and addresses, and writes nothing but its cache.
"""

from __future__ import annotations

import secrets

import numpy as np

from mlitb.errors import MlitbError
from mlitb.master.scheduler import Client
from mlitb.protocol.frames import error_frame
from mlitb.training.strategies import Result
from mlitb.trust import numpy_net
from mlitb.trust.claims import allowed_samples, median_rate
from mlitb.trust.example_order import examples_used
from mlitb.trust.spot_check import tolerance_for


WORK_CHECKS_KEPT = 4  # seeded WORKs per trainer kept for spot checks (each holds references, no copies)


class TrustHooks:
    def _verifiable(self) -> bool:
        cached = getattr(self, "_verifiable_net", None)
        if cached is None or cached[0] is not self.network:
            cached = self._verifiable_net = (self.network, numpy_net.supports(self.network))
        h = self.hyper  # a compressed upload or shadow download depends on client state the master does not recompute
        dense = h.upload_codec == "float32" and h.download_codec == "float32" and h.algorithm == "gradient"
        return h.spot_checks and dense and self.dataset is not None and cached[1]

    def _work_seed(self, client: Client) -> int:
        """The seed of a WORK frame (0: its result is not spot-checked), kept with what the check needs. The newest
        WORK_CHECKS_KEPT versions are kept, so a result that arrives after newer work went out (async mode's
        overdue re-send, a late result in sync rounds) is checkable like any other; work sent again for the same
        version reuses its seed, so a result computed from either copy recomputes alike."""
        if not self._verifiable() or self.addresses.exempt(client.address):
            return 0
        known = client.work_checks.pop(self.round, None)
        seed = known[0] if known is not None else (secrets.randbits(32) or 1)
        client.work_checks[self.round] = (seed, self.allocator.ids_of(client.id), self.params)
        while len(client.work_checks) > WORK_CHECKS_KEPT:
            client.work_checks.pop(next(iter(client.work_checks)))
        return seed

    def _tolerance(self) -> float:
        return tolerance_for(self.network)

    def _recompute(self, result: Result) -> numpy_net.GradientJob | None:
        """The result's recomputation from the WORK the master sent (spot checks), or None if it cannot be."""
        client = self.clients.get(result.client_id)
        work = client.work_checks.get(result.version) if client is not None else None
        if work is None or not len(work[1]) or self.dataset is None:
            return None
        claimed = client.claimed_samples  # the result's count before any cut to the allowance
        seed, held, params = work
        return numpy_net.GradientJob(self.network, params, self.dataset.train, examples_used(seed, held, claimed),
                                     result.samples / claimed)

    def _late_strike(self, client_id: int, err: MlitbError) -> None:
        """A strike found by a check finished in a later round: the ERROR frame now; quarantine closes the link."""
        client = self.clients.get(client_id)
        if client is None:
            return
        client.link.send(error_frame(err, project=self.id, round=self.round))
        if err.code.value.close:
            client.link.close(1008, err.code.name)
            self.remove_client(client_id)

    def _fleet_rate(self) -> float | None:
        return median_rate([c.measured_sps for c in self.trainers() if c.measured_sps is not None])

    def _allowed_samples(self, client: Client, fleet_sps: float | None) -> int:
        s = self.settings
        return allowed_samples(client.measured_sps, fleet_sps, client.work_ms, start_sps=s.claim_start_samples_per_s,
                               growth=s.claim_growth, fleet_factor=s.claim_fleet_factor, hard_sps=s.max_samples_per_s)

