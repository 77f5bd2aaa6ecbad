"""Per-batch commitments (payload kind 6, mlitb/codec/committed.py; checks in mlitb/trust/commitments.py and the
spot-check wrapper): the trailer round-trips, hostile trailers are refused with their codes, the directions are
the same bytes in TypeScript, an honest committed result passes, and a result whose commitments disagree with
its sum or with a recomputed batch is struck."""

import random
import struct

import numpy as np
import pytest

from mlitb import codec
from mlitb.codec import Kind
from mlitb.codec.committed import K, MAX_BATCHES, Commitment, encode, encode_trailer, parse, trailer_bytes
from mlitb.errors import ErrorCode, MlitbError
from mlitb.model import parse_network
from mlitb.training.strategies.base import Result
from mlitb.trust.commitments import Committer, CommittedWork, committed_gradient, directions, project
from mlitb.trust.credit import CreditLedger
from mlitb.trust.spot_check import SpotChecked, SpotCheckPolicy, tolerance_for
from mlitb.workers.hostile import lazy_commitment
from tests.helpers import run_in_node
from tests.mnist_softmax import SOFTMAX_REGRESSION, mnist_subset
from tests.unit.test_spot_check import Taken

P = 5


def commitment(batches: int, c: int = 2) -> Commitment:
    rng = np.random.default_rng(batches)
    return Commitment(c, rng.standard_normal((batches, K)).astype(np.float32), np.arange(batches, dtype=np.float32))


def test_the_trailer_round_trips_after_the_dense_part():
    grad, c = np.arange(P, dtype=np.float32), commitment(3)
    payload = encode(grad, c)
    assert len(payload) == 4 * P + trailer_bytes(3) == 4 * P + 12 + 3 * 5 * 4
    np.testing.assert_array_equal(codec.decode(Kind.DENSE_F32_COMMITTED, payload, P), grad)
    back = parse(payload, P, 6)  # 6 examples in batches of 2: 3 batches
    assert back.batch_size == 2 and back.batches == 3
    np.testing.assert_array_equal(back.projections, c.projections)
    np.testing.assert_array_equal(back.losses, c.losses)


def _trailer(c, batches, k, rows):
    return np.zeros(P, "<f4").tobytes() + struct.pack("<III", c, batches, k) + np.asarray(rows, "<f4").tobytes()


@pytest.mark.parametrize("payload,samples,code", [
    (np.zeros(P, "<f4").tobytes(), 1, ErrorCode.COMMITMENT_LENGTH),  # no trailer at all
    (_trailer(2, 1, K, np.zeros(K + 1))[:-4], 2, ErrorCode.COMMITMENT_LENGTH),  # one float short
    (_trailer(2, 1, K, np.zeros(K + 2)), 2, ErrorCode.COMMITMENT_LENGTH),  # one float too many
    (_trailer(2, 2, K, np.zeros(K + 1)), 4, ErrorCode.COMMITMENT_LENGTH),  # claims 2 batches, holds 1
    (_trailer(2, 0, K, []), 1, ErrorCode.COMMITMENT_MALFORMED),  # no batch
    (_trailer(0, 1, K, np.zeros(K + 1)), 1, ErrorCode.COMMITMENT_MALFORMED),  # batches of 0 examples
    (_trailer(2, 1, K + 1, np.zeros(K + 2)), 2, ErrorCode.COMMITMENT_MALFORMED),  # not K projections
    (_trailer(1, MAX_BATCHES + 1, K, np.zeros((MAX_BATCHES + 1) * (K + 1))), MAX_BATCHES + 1,
     ErrorCode.COMMITMENT_MALFORMED),  # too many batches
    (_trailer(2, 1, K, np.zeros(K + 1)), 3, ErrorCode.COMMITMENT_MALFORMED),  # 3 examples in batches of 2 are 2
    (_trailer(2, 2, K, np.zeros(2 * (K + 1))), 2, ErrorCode.COMMITMENT_MALFORMED),  # 2 examples are 1 batch
    (_trailer(2, 1, K, [0, 0, np.nan, 0, 0]), 2, ErrorCode.NON_FINITE),
    (_trailer(2, 1, K, [0, 0, 0, 0, np.inf]), 2, ErrorCode.NON_FINITE),
    (_trailer(2, 1, K, [0, 0, 0, 0, -1]), 2, ErrorCode.COMMITMENT_MALFORMED),  # a negative batch loss
    (_trailer(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, []), 1, ErrorCode.COMMITMENT_MALFORMED),
])
def test_hostile_trailers_are_refused_with_their_codes(payload, samples, code):
    with pytest.raises(MlitbError) as exc:
        parse(payload, P, samples)
    assert exc.value.code == code


def test_the_directions_are_signs_that_depend_on_seed_and_index():
    d = directions(7, 1000)
    assert d.shape == (K, 1000) and set(np.unique(d)) == {-1.0, 1.0}
    assert abs(d.mean()) < 0.1 and not np.array_equal(d[0], d[1])
    assert not np.array_equal(directions(8, 1000), d)
    np.testing.assert_array_equal(directions(7, 1000), d)
    np.testing.assert_array_equal(directions(7, 40)[:, :33], d[:, :33])  # a prefix does not depend on the count


SEEDS = [(0, 1), (1, 33), (0xFFFFFFFF, 100), (123456789, 7850), (2**31, 64)]


def test_the_typescript_twin_gives_the_same_direction_bytes(tmp_path):
    script = ("const { directions } = await import(BUNDLE);"
              "console.log(JSON.stringify(INPUT.map(([s, n]) => Buffer.from(directions(s, n).buffer).toString('hex'))));")
    for (seed, count), ts in zip(SEEDS, run_in_node("compute/commitments.ts", tmp_path, script, SEEDS)):
        assert bytes.fromhex(ts) == directions(seed, count).astype("<f4").tobytes(), (seed, count)


def test_the_typescript_committer_trailer_and_merge_are_the_python_ones(tmp_path):
    rng = np.random.default_rng(3)
    sizes = [1, 1, 2, 2] + [2] * (MAX_BATCHES + 1)  # c = 2: MAX_BATCHES + 3 batches, merged into batches of 4
    pieces = [(rng.standard_normal(K).tolist(), float(rng.random()), n) for n in sizes]
    script = ("const { Committer, withCommitments } = await import(BUNDLE);"
              "const c = new Committer(2); for (const [p, l, n] of INPUT) c.add(p, l, n);"
              "console.log(JSON.stringify(Buffer.from(withCommitments(new Uint8Array(0), c.commitment())).toString('hex')));")
    committer = Committer(1, 4, 2)
    for p, loss, n in pieces:
        committer.add_projections(np.asarray(p), loss, n)
    assert committer.commitment().batch_size == 4
    ts = run_in_node("compute/commitments.ts", tmp_path, script, pieces)
    assert bytes.fromhex(ts) == encode_trailer(committer.commitment())


def test_more_batches_than_the_trailer_takes_merge_neighbours():
    committer = Committer(1, 3, 2)
    for b in range(MAX_BATCHES + 3):
        committer.add(np.full(3, 1.0, np.float32), 1.0, 2)
    c = committer.commitment()
    assert c.batch_size == 4 and c.batches == (MAX_BATCHES + 4) // 2
    assert c.losses[0] == 2 and c.losses[-1] == 1  # the odd last batch stands alone
    with pytest.raises(ValueError):
        Committer(1, 3, 2).add(np.zeros(3), 0.0, 3)  # a piece may not cross a batch boundary


# ---- the checks, on MNIST softmax regression -------------------------------------------------------------------
NETWORK = parse_network(SOFTMAX_REGRESSION)
DATA = mnist_subset(2000, 10)
SEED, SAMPLES, BATCH = 99, 200, 32


def honest(params):
    ids = np.arange(SAMPLES) * 7 % len(DATA.train)
    grad, loss, c = committed_gradient(NETWORK, params, DATA.train.images[ids], DATA.train.labels[ids], SEED, BATCH)
    return ids, grad, loss, c


def checked(params, ids, c, p_committed=1.0):
    work = CommittedWork(NETWORK, params, DATA.train, lambda: ids, SEED, c)
    spot = SpotChecked(Taken(), CreditLedger(), lambda r: None, SpotCheckPolicy(p_committed=p_committed),
                       random.Random(0), tolerance=lambda: tolerance_for(NETWORK), committed=lambda r: work)
    return spot


PARAMS = (np.random.default_rng(0).standard_normal(NETWORK.param_count) * 0.01).astype(np.float32)


def test_an_honest_committed_result_passes_its_sum_and_every_batch_check():
    ids, grad, loss, c = honest(PARAMS)
    assert c.batches == -(-SAMPLES // BATCH) and c.batch_size == BATCH
    spot = checked(PARAMS, ids, c)
    for version in range(20):
        spot.on_result(Result(1, version, grad, SAMPLES, loss, 5, commitment=c))
    s = spot.stats
    assert s.failed == 0 and s.committed == 20 and s.batch_checks == 20 and s.checks == 20
    assert s.samples <= 20 * BATCH  # one batch recomputed per check, not the result
    assert len(spot.inner.results) == 20


def test_commitments_that_disagree_with_the_sum_are_a_strike():
    ids, grad, loss, c = honest(PARAMS)
    spot = checked(PARAMS, ids, c, p_committed=0.0)  # no batch is drawn: the sum's check alone strikes
    with pytest.raises(MlitbError) as exc:
        spot.on_result(Result(1, 0, grad * np.float32(1.5), SAMPLES, loss, 5, commitment=c))
    assert exc.value.code == ErrorCode.SPOT_CHECK_FAILED and "commitments differ" in exc.value.detail
    with pytest.raises(MlitbError) as exc:  # the loss too
        spot.on_result(Result(1, 1, grad, SAMPLES, loss * 2, 5, commitment=c))
    # the first strike is answered (its work refused), the quarantine closes; neither reaches the strategy
    assert exc.value.code == ErrorCode.QUARANTINED and len(spot.inner.refused) == 1 and not spot.inner.results


def test_a_lazy_fake_whose_commitments_agree_with_its_sum_is_struck_by_the_recomputed_batch():
    ids, grad, loss, _ = honest(PARAMS)
    half = ids[:SAMPLES // 2]
    fake, fake_loss, _ = committed_gradient(NETWORK, PARAMS, DATA.train.images[half], DATA.train.labels[half], SEED, BATCH)
    c = lazy_commitment(fake, fake_loss, SEED, BATCH, SAMPLES)
    spot = checked(PARAMS, ids, c)
    with pytest.raises(MlitbError) as exc:
        spot.on_result(Result(1, 0, fake, SAMPLES, fake_loss, 5, commitment=c))
    assert exc.value.code == ErrorCode.SPOT_CHECK_FAILED and "recomputed result differs" in exc.value.detail
    assert spot.stats.committed == 1 and spot.stats.batch_checks == 1


def test_a_result_computed_on_the_previous_parameters_fails_the_batch_check():
    ids, grad, loss, c = honest(PARAMS)
    later = PARAMS + np.float32(0.05) * np.sign(grad)  # the round's parameters moved on; the result did not
    spot = checked(later, ids, c)
    with pytest.raises(MlitbError) as exc:
        spot.on_result(Result(1, 0, grad, SAMPLES, loss, 5, commitment=c))
    assert exc.value.code == ErrorCode.SPOT_CHECK_FAILED


def test_an_uncommitted_result_is_checked_whole_at_the_full_rate_whatever_the_record():
    ids, grad, loss, c = honest(PARAMS)
    ledger, wholes = CreditLedger(), []
    ledger.join(1, "vestablished")
    ledger.rows["vestablished"].results = 500  # an established record buys no lower rate
    work = CommittedWork(NETWORK, PARAMS, DATA.train, lambda: ids, SEED, c)
    rng = random.Random(0)
    rng.random = lambda: 0.85  # just under the 0.9 rate
    spot = SpotChecked(Taken(), ledger, lambda r: wholes.append(r) or None, SpotCheckPolicy(), rng,
                       committed=lambda r: work)
    spot.on_result(Result(1, 0, grad, SAMPLES, loss, 5))
    assert len(wholes) == 1  # drawn, and checked whole (no commitments to check a batch against)
    spot.on_result(Result(1, 1, grad, SAMPLES, loss, 5, commitment=c))
    assert len(wholes) == 1  # a committed result is checked by one batch, not whole


def test_projections_of_the_sum_are_the_sum_of_the_batches_projections():
    _, grad, _, c = honest(PARAMS)
    np.testing.assert_allclose(c.projections.astype(np.float64).sum(0), project(directions(SEED, grad.size), grad),
                               rtol=1e-4, atol=1e-3)


def test_the_torch_engines_commitments_are_the_numpy_trainers_for_the_same_examples():
    pytest.importorskip("torch")
    from mlitb.workers.native.engine import TorchEngine

    engine = TorchEngine(NETWORK, "cpu", seed=1)
    engine.hold(DATA.train.images, DATA.train.labels)
    engine.set_params(PARAMS)
    order = (np.arange(300) * 7 % len(DATA.train)).astype(np.int64)
    r, c = engine.compute_committed(60, BATCH, order, SEED)  # clock-bounded: however many it computed, in order
    used = order[np.arange(r.samples) % len(order)]
    grad, loss, expected = committed_gradient(NETWORK, PARAMS, DATA.train.images[used], DATA.train.labels[used], SEED,
                                              BATCH)
    assert c.batch_size == BATCH and c.batches == expected.batches == -(-r.samples // BATCH)
    scale = np.linalg.norm(expected.projections, axis=1, keepdims=True)
    assert np.abs(c.projections - expected.projections).max() <= 1e-4 * scale.max()
    np.testing.assert_allclose(c.losses, expected.losses, rtol=1e-4)
    np.testing.assert_allclose(r.grad, grad, rtol=1e-3, atol=1e-3 * np.abs(grad).max())
