"""Commit-and-sample spot checks: per-batch commitments a trainer sends with its result, and their checks.

Why: recomputing a whole result costs the master as much as the trainer spent, so whole-result checks cannot
both catch a 10% faker within 50 rounds (a check rate of 0.9 per result) and cost <= 5% of the compute. With
commitments a check recomputes ONE mini-batch of the result, 1/B of it, so every result can be drawn at 0.9.

The trainer (payload kind 6, mlitb/codec/committed.py) processes its seeded example order in batches of c
examples and sends, per batch b, K projections p[b][j] = <G_b, r_j> of the batch's summed gradient G_b onto
+-1 directions r_j, and the batch's summed loss. r_j is derived from the WORK seed by a counter-based hash
(murmur3's fmix32 of word index x golden ratio + a key per direction; each 32-bit word gives 32 signs, bit
i & 31 of word i >> 5, a set bit is -1), computable on the fly in NumPy and TypeScript alike
(web/src/compute/commitments.ts; tests/unit/test_commitments.py runs both). The master then
- checks every committed result (O(K P), no recomputation): sum_b p[b][j] against <S, r_j> (relative to ||S||
  plus the batches' norms, estimated by their projections' RMS) and sum_b loss[b] against the reported loss;
- recomputes one batch b drawn after the result arrived, at the round's parameters, and compares its K
  projections (their RMS difference relative to ||G_b||, divided by PROJECTION_SLACK: one projection of an
  error vector d has E<d, r>^2 = ||d||^2, and 4 of them rarely stray 3x) and its loss with the commitment.
A lazy faker (no computation) has every p[b] wrong, so each check catches it. Limits, said plainly: a trainer
that computed every G_b honestly (its commitments hold) but sent S + e with e orthogonal to the K known
directions passes; that is poisoning with paid-for work, which the robust default rule bounds, not unpaid
credit. A trainer that fakes a share f of a result's batches is caught per check with probability f.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mlitb.codec.committed import MAX_BATCHES, K, Commitment
from mlitb.model import Network
from mlitb.trust.numpy_net import GradientJob, gradient_sum

GOLDEN = 0x9E3779B9
PROJECTION_SLACK = 3.0


def _fmix32(h: np.ndarray) -> np.ndarray:
    """murmur3's 32-bit finaliser over uint32 arrays (wrapping arithmetic, as Math.imul)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def direction_words(seed: int, j: int | np.ndarray, count: int) -> np.ndarray:
    """The uint32 words whose bits are the signs of direction j (or of each j of an array: one row each)."""
    j = np.asarray(j, np.uint64)
    keys = _fmix32(((np.uint64(seed) + (j + np.uint64(1)) * np.uint64(GOLDEN)) & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    words = np.arange((count + 31) // 32, dtype=np.uint32)
    return _fmix32(words * np.uint32(GOLDEN) + keys[..., None])


def directions(seed: int, count: int, k: int = K) -> np.ndarray:
    """float32 [k, count] of +-1: the directions r_0..r_{k-1} of a WORK seed (all k at once: ~4 ms for 1M)."""
    words = direction_words(seed, np.arange(k), count).astype("<u4")
    bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")[:, :count]
    out = bits.astype(np.float32)
    out *= -2
    out += 1
    return out


def project(dirs: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """<vector, r_j> for each direction: a float32 BLAS product (~1e-6 of ||vector|| off the exact value, far
    inside every tolerance; float64 would cost 100x for a million parameters), as float64."""
    return (dirs @ np.asarray(vector, np.float32)).astype(np.float64)


class Committer:
    """A trainer's commitments: add each piece of the seeded order in order (a piece never crosses a batch
    boundary: batch b is examples b*c .. (b+1)*c - 1); `commitment()` merges neighbours until B <= MAX_BATCHES."""

    def __init__(self, seed: int, param_count: int, batch_size: int):
        self.dirs = directions(seed, param_count)  # param_count 0: projections come from elsewhere (add_projections)
        self.batch_size = batch_size
        self.projections: list[np.ndarray] = []
        self.losses: list[float] = []
        self.filled = 0  # examples in the open batch (0: the next piece opens a new one)

    def room(self) -> int:
        """Examples the open batch still takes (a whole batch when none is open)."""
        return self.batch_size - self.filled

    def add(self, grad: np.ndarray, loss: float, examples: int) -> None:
        self.add_projections(project(self.dirs, grad), loss, examples)

    def add_projections(self, projections: np.ndarray, loss: float, examples: int) -> None:
        """A piece whose projections were computed elsewhere (the torch worker's, on its device)."""
        if examples > self.room():
            raise ValueError(f"{examples} examples cross a batch boundary ({self.room()} left in the batch)")
        if self.filled == 0:
            self.projections.append(np.zeros(K))
            self.losses.append(0.0)
        self.projections[-1] += np.asarray(projections, np.float64)
        self.losses[-1] += float(loss)
        self.filled = (self.filled + examples) % self.batch_size

    def commitment(self) -> Commitment:
        proj, losses, c = np.array(self.projections).reshape(-1, K), np.array(self.losses), self.batch_size
        while len(losses) > MAX_BATCHES:  # batches 2i and 2i + 1 of c make batch i of 2c
            if len(losses) % 2:
                proj, losses = np.vstack([proj, np.zeros((1, K))]), np.append(losses, 0.0)
            proj, losses, c = proj[0::2] + proj[1::2], losses[0::2] + losses[1::2], 2 * c
        return Commitment(c, proj.astype(np.float32), losses.astype(np.float32))


def committed_gradient(network: Network, params: np.ndarray, images: np.ndarray, labels: np.ndarray, seed: int,
                       batch_size: int) -> tuple[np.ndarray, float, Commitment]:
    """An honest NumPy trainer's result with its commitments: (summed gradient, summed loss, commitment) over the
    examples in the order given, `batch_size` at a time."""
    committer = Committer(seed, network.param_count, batch_size)
    grad, loss = np.zeros(network.param_count, np.float32), 0.0
    for at in range(0, len(images), batch_size):
        g, l = gradient_sum(network, params, images[at:at + batch_size], labels[at:at + batch_size])
        committer.add(g, l, min(batch_size, len(images) - at))
        grad += g
        loss += l
    return grad, loss, committer.commitment()


class BatchCheck:
    """The recomputation of one committed batch (spot_check.Recomputation) and its comparison with the commitment."""

    def __init__(self, job: GradientJob, dirs: np.ndarray):
        self.job, self.dirs = job, dirs

    @property
    def remaining(self) -> int:
        return self.job.remaining

    def advance(self, examples: int) -> None:
        self.job.advance(examples)

    def expected(self) -> tuple[np.ndarray, float]:
        return self.job.expected()

    def difference(self, got: np.ndarray, got_loss: float) -> float:
        """`got`: the batch's K committed projections; relative to ||G_b||, projections count 1/PROJECTION_SLACK."""
        grad, loss = self.expected()
        rms = float(np.sqrt(np.mean((np.asarray(got, np.float64) - project(self.dirs, grad)) ** 2)))
        scale = max(float(np.linalg.norm(grad.astype(np.float64))), 1e-12)
        return max(rms / scale / PROJECTION_SLACK, abs(got_loss - loss) / max(abs(loss), 1e-12))


class CommittedWork:
    """What the master checks of one committed result: the examples it used (`ids()`, in order: computed only
    when a batch is drawn, the seeded shuffle being O(held examples) in Python), the round's parameters and the
    seed's directions."""

    def __init__(self, network: Network, params: np.ndarray, split, ids: Callable[[], np.ndarray], seed: int,
                 commitment: Commitment, share: float = 1.0):
        self.network, self.params, self.split, self.ids = network, params, split, ids
        self.commitment, self.share = commitment, share  # share: the result was cut to its allowance by this
        self.dirs = directions(seed, network.param_count)

    @property
    def batches(self) -> int:
        return self.commitment.batches

    def consistency(self, grad: np.ndarray, loss: float) -> float:
        """Relative difference between the result (sum and loss, cut alike) and the sum of its commitments."""
        c = self.commitment
        committed = c.projections.astype(np.float64).sum(axis=0) * self.share
        batch_norms = np.sqrt(np.mean(c.projections.astype(np.float64) ** 2, axis=1)).sum() * self.share
        scale = max(float(np.linalg.norm(np.asarray(grad, np.float64))) + batch_norms, 1e-12)
        projections = float(np.max(np.abs(project(self.dirs, grad) - committed))) / scale
        committed_loss = float(c.losses.astype(np.float64).sum()) * self.share
        return max(projections, abs(committed_loss - loss) / max(abs(loss), 1e-12))

    def batch(self, b: int) -> BatchCheck:
        c = self.commitment.batch_size
        return BatchCheck(GradientJob(self.network, self.params, self.split, self.ids()[b * c:(b + 1) * c]), self.dirs)
