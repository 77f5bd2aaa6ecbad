"""The runtime's trust hooks (mlitb/trust/): sample-count allowances from measured rates, spot-check recomputation,
and the bound on public votes from the master's own reference gradient.

Why the bound (issue 13): a robust rule can only outvote a hostile vote when the round has enough honest votes. A
round with one or two votes (the first rounds of a project, while the other trainers are still joining, or a round
an honest trainer misses) gives the hostile one's update whole or half, and one such round of a huge fixed-direction
gradient fills AdaGrad's squared-gradient history for good: the honest steps that follow are ~1e-3 of their size and
the project stays at ~0.8 test error (the order-dependent failure of tests/integration/test_hostile_trainers.py was
this: the hostile trainer joined first and had round 0 alone). So before the rule runs, each public address's vote
(its per-sample mean gradient) is scaled down to at most VOTE_NORM_FACTOR times the norm of a mean gradient the
master computes itself on REFERENCE_EXAMPLES random training examples at the round's parameters
(mlitb/trust/reference.py: started in a helper thread as the update opens, so the event loop waits for it only if
the update closes first; NumPy, numpy_net: the networks spot checks support; other networks are not bounded yet). An
honest vote, a mean over its mini-batch, is rarely above twice a 64-example mean; a hostile vote keeps its direction
but no more than an honest vote's size. And in a centred-clipping round of fewer than three votes (no median can
outvote one) the reference is the centre and its norm the radius, so a hostile vote, alone or against one honest
vote, can shrink or cancel that round's step but not turn it around (a flipped gradient alone, or outweighing one
honest vote by its claimed count, no longer ascends).

A mixin of `ProjectRuntime` (loop.py), kept apart so the runtime file stays about membership, frames and updates;
it reads the runtime's clients, settings, network, data and addresses, and writes nothing but its cache.
"""

from __future__ import annotations

import secrets

import numpy as np

from mlitb.codec import Kind, committed
from mlitb.errors import MlitbError
from mlitb.master.scheduler import Client
from mlitb.protocol.frames import error_frame
from mlitb.training.strategies import Result
from mlitb.trust import numpy_net
from mlitb.trust.claims import allowed_samples, median_rate
from mlitb.trust.commitments import CommittedWork
from mlitb.trust.example_order import examples_used
from mlitb.trust.reference import ReferenceGradients
from mlitb.trust.spot_check import tolerance_for


WORK_CHECKS_KEPT = 4  # seeded WORKs per trainer kept for spot checks (each holds references, no copies)


VOTE_NORM_FACTOR = 2.0


class TrustHooks:
    bounds_votes = True  # a gateway forwards its votes and the project's process bounds them (cluster/gateway.py)

    def _reference_key(self) -> tuple:
        return (self.round, self.network)

    def _reference_seed(self) -> list[int]:
        # drawn per project and update: the same reference wherever it is aggregated (one process, or the project
        # actor behind gateways), and a recorded run recomputes it
        return [int(self.id), int(self.round)]

    def _start_reference(self) -> None:
        """As an update opens: start its reference gradient in a helper thread (mlitb/trust/reference.py) if a
        public vote may need it: a public trainer is connected, or none is (a cluster's project process, whose
        votes come from gateways)."""
        references = self._references()
        train = self.dataset.train if self.dataset is not None else None
        trainers = [c for c in self.clients.values() if c.role == "trainer"]
        public = not trainers or any(isinstance(c.vote, tuple) and c.vote[0] == "address" for c in trainers)
        if (not self.bounds_votes or self.hyper.aggregation == "mean" or not public or train is None or not len(train)
                or not self._numpy_supported()):
            references.drop()
            return
        references.start(self._reference_key(), self.network, self.params, train, self._reference_seed())

    def _references(self) -> ReferenceGradients:
        refs = getattr(self, "_reference_gradients", None)
        if refs is None:
            refs = self._reference_gradients = ReferenceGradients()
        return refs

    def _bound_votes(self, aggregate) -> int:
        """Scale public votes above the reference bound down to it (see the module docstring); returns how many."""
        references = self._references()
        bound_votes = getattr(aggregate, "bound_votes", None)
        train = self.dataset.train if self.dataset is not None else None
        if (bound_votes is None or not aggregate.public_votes or train is None or not len(train)
                or not self._numpy_supported()):
            references.drop()  # nothing to bound: the reference is not needed
            return 0
        mean = references.take(self._reference_key(), self.network, self.params, train, self._reference_seed())
        return bound_votes(VOTE_NORM_FACTOR * float(np.linalg.norm(mean.astype(np.float64))), mean)

    def _numpy_supported(self) -> bool:
        cached = getattr(self, "_verifiable_net", None)
        if cached is None or cached[0] is not self.network:
            cached = self._verifiable_net = (self.network, numpy_net.supports(self.network))
        return cached[1]

    def _verifiable(self) -> bool:
        h = self.hyper  # a compressed upload or shadow download depends on client state the master does not recompute
        dense = h.upload_codec == "float32" and h.download_codec == "float32" and h.algorithm == "gradient"
        return h.spot_checks and dense and self.dataset is not None and self._numpy_supported()

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

    def _commitment_of(self, frame) -> committed.Commitment | None:
        """A GRADIENT frame's per-batch commitments (payload kind 6, checked against its sample count), or None."""
        if frame.kind != Kind.DENSE_F32_COMMITTED:
            return None
        return committed.parse(frame.payload, self.param_count, frame.count)

    def _committed(self, result: Result) -> CommittedWork | None:
        """A committed result's checks against the WORK the master sent, or None if it cannot be checked (then the
        whole-result path decides, and finds it unrecomputable too)."""
        client = self.clients.get(result.client_id)
        work = client.work_checks.get(result.version) if client is not None else None
        if work is None or not len(work[1]) or self.dataset is None or result.commitment is None:
            return None
        claimed = client.claimed_samples
        seed, held, params = work
        return CommittedWork(self.network, params, self.dataset.train, lambda: examples_used(seed, held, claimed),
                             seed, result.commitment, result.samples / claimed)

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

