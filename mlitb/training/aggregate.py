"""Sample-weighted gradient averaging (the reduce step of MLitB, Meeds et al. 2015, §3.3 c).

Trainers send the SUM of their per-sample gradients and their sample count, so the
weighted average is sum(grad_sums) / sum(counts). `GradientAccumulator` adds each
gradient as it arrives, so the reduce holds one vector whatever the number of clients.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from math import isfinite

import numpy as np

_add, _dot = np.add, np.dot


def client_arrays(grad_sums, counts) -> tuple[np.ndarray, np.ndarray]:
    """Checked (clients, parameters) float32 gradient sums and float64 sample counts, the
    common input of the robust rules."""
    sums = np.asarray(grad_sums, dtype=np.float32)
    n = np.asarray(counts, dtype=np.float64)
    if sums.ndim != 2 or len(sums) == 0 or n.shape != (len(sums),):
        raise ValueError("need a (clients, parameters) array of gradient sums and one count per client")
    if not (n > 0).all():
        raise ValueError("every sample count must be positive")
    return sums, n


FUSED_MIN = 1 << 18  # gradients of more float32 than this (1 MB) are checked and added block by block
BLOCK = 1 << 16  # float32 per block (256 KB): a gradient block is still in cache when it is added
REDO_BYTES = 64 << 20  # fused mode: gradient bytes kept (by reference) to redo the sum exactly after a refusal
MIN_KEEP = 8  # fused mode only where REDO_BYTES holds this many gradients (snapshots are costly; see below)
SPLIT_CHECK_MIN = 1 << 21  # larger gradients (8 MB) are checked in two halves at once, one on a helper thread

_helper: ThreadPoolExecutor | None = None
_helper_lock = threading.Lock()


def _checker() -> ThreadPoolExecutor:
    global _helper
    with _helper_lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(1, thread_name_prefix="mlitb-check")
        return _helper


def _finite_dot(grad: np.ndarray) -> bool:
    return isfinite(_dot(grad, grad))


def all_finite(grad: np.ndarray) -> bool:
    """Every value finite: one dot product (it releases the GIL), split over two threads for large gradients;
    only when it is not finite (a NaN, an infinity, or finite values whose squares overflow) is the
    element-wise test needed."""
    if grad.size >= SPLIT_CHECK_MIN:
        half = grad.size // 2
        lower, upper = grad[:half], grad[half:]
        try:
            pending = _checker().submit(_dot, upper, upper)
        except RuntimeError:  # the interpreter is shutting down: no new threads
            return _finite_dot(grad) or bool(np.isfinite(grad).all())
        ok = isfinite(_dot(lower, lower))
        ok = isfinite(pending.result()) and ok
    else:
        ok = isfinite(_dot(grad, grad))
    return ok or bool(np.isfinite(grad).all())


class GradientAccumulator:
    """Streaming sum of gradient sums and counts; `mean()` gives the weighted average.

    `add_finite` is the server's path: it adds a gradient only if every value is finite and
    leaves the sum bit for bit unchanged otherwise. A gradient that fits in cache (up to 1 MB)
    is added into a spare buffer (read from memory once), and the new sum is checked from cache
    (one dot product: finite exactly when every value is, unless it overflows; then an
    element-wise test of the gradient decides); the buffers swap only if it is accepted. A
    larger one would come from memory twice with a separate check, so it is checked
    and added block by block (each block is checked just before it is added, while it is in
    cache); when a block is refused, the blocks already added are redone exactly from the
    last base (zeros, or a sum kept at a snapshot) and the gradients added since, which are
    kept by reference (at most REDO_BYTES of them; past that the next add writes the new sum
    into a second buffer, and the old one becomes the base). Float32 addition is exact to
    repeat, so the redone blocks are the same bits as before. A snapshot costs about one and a
    half adds, so gradients too large for REDO_BYTES to hold MIN_KEEP of them (over 2 M
    parameters) are checked whole and then added (from memory twice); the check of one
    over SPLIT_CHECK_MIN values runs in two halves at once (the second on a helper thread).
    """

    def __init__(self, size: int):
        # float32, at memory speed: a sum that overflows (absurd gradients) makes the step
        # non-finite, and the round loop skips such a step rather than apply it
        self.sum = np.zeros(size, dtype=np.float32)
        self.samples = 0
        self.loss_sum = 0.0
        self.contributions = 0
        self._keep = REDO_BYTES // (4 * size) if size else 0
        self._fused = size > FUSED_MIN and self._keep >= MIN_KEEP
        self._split = size >= SPLIT_CHECK_MIN
        self._base: np.ndarray | None = None  # fused mode: the sum before the kept gradients (None: zeros)
        self._spare: np.ndarray | None = None  # the buffer the next snapshot (fused mode) or add (small) writes into
        self._since: list[np.ndarray] = []  # fused mode: gradients added since the base, in order

    @property
    def mode(self) -> str:
        """How `add_finite` checks: "blocks" (block by block, with redo from snapshots), "whole" (the gradient checked
        whole, then added) or "spare" (added into a spare buffer from cache, the new sum checked)."""
        return "blocks" if self._fused else "whole" if self._split else "spare"

    @property
    def snapshot_every(self) -> int | None:
        """In "blocks" mode, how many gradients are kept for a redo before the next add takes a snapshot."""
        return self._keep if self._fused else None

    def add(self, grad_sum: np.ndarray, samples: int, loss_sum: float = 0.0, group: object = None) -> None:
        """Add a gradient sum without checking its values. `group` (one vote per address, for the robust rules)
        changes nothing in a sum."""
        if not self._fused:
            _add(self.sum, grad_sum, out=self.sum)
        elif len(self._since) < self._keep:
            if grad_sum.shape != self.sum.shape:
                raise ValueError(f"gradient of shape {grad_sum.shape}; expected {self.sum.shape}")
            _add(self.sum, grad_sum, out=self.sum)
            self._since.append(grad_sum)
        else:
            self._add_blocks(grad_sum, False)
        self.samples += samples
        self.loss_sum += loss_sum
        self.contributions += 1

    def add_finite(self, grad_sum: np.ndarray, samples: int, loss_sum: float = 0.0, group: object = None) -> bool:
        """Add a gradient sum if every value is finite; otherwise return False and leave the
        accumulator unchanged."""
        total = self.sum
        if self._fused:
            if not self._add_blocks(grad_sum, True):
                return False
        elif self._split:
            if not all_finite(grad_sum):
                return False
            _add(total, grad_sum, out=total)
        else:
            # fits in cache: the new sum goes to a spare buffer (the gradient comes from memory once, in the add)
            # and is checked there, from cache; `sum` is untouched until the two buffers swap. A sum that is not
            # finite although the gradient is (an overflow) is accepted, as `add` would: the step is skipped then
            if grad_sum.shape != total.shape:  # np.add would broadcast a single value
                raise ValueError(f"gradient of shape {grad_sum.shape}; expected {total.shape}")
            spare = self._spare
            if spare is None:
                spare = self._spare = np.empty_like(total)
            _add(total, grad_sum, out=spare)
            if not isfinite(_dot(spare, spare)) and not np.isfinite(grad_sum).all():
                return False
            self.sum, self._spare = spare, total
        self.samples += samples
        self.loss_sum += loss_sum
        self.contributions += 1
        return True

    def _add_blocks(self, grad: np.ndarray, check: bool) -> bool:
        total, n = self.sum, self.sum.size
        if grad.shape != (n,):
            raise ValueError(f"gradient of shape {grad.shape}; expected ({n},)")
        since = self._since
        if len(since) < self._keep:  # in place; a refusal is undone from the base
            for start in range(0, n, BLOCK):
                g = grad[start:start + BLOCK]
                if check and not isfinite(_dot(g, g)) and not np.isfinite(g).all():
                    self._redo(start)
                    return False
                t = total[start:start + BLOCK]
                _add(t, g, out=t)
            since.append(grad)
            return True
        # snapshot: the new sum goes to the spare buffer, the current one (unchanged) becomes the base
        out = self._spare if self._spare is not None else np.empty_like(total)
        for start in range(0, n, BLOCK):
            g = grad[start:start + BLOCK]
            if check and not isfinite(_dot(g, g)) and not np.isfinite(g).all():
                return False  # only the spare buffer was written
            _add(total[start:start + BLOCK], g, out=out[start:start + BLOCK])
        self._spare, self._base, self.sum = self._base, total, out
        since.clear()
        since.append(grad)
        return True

    def _redo(self, stop: int) -> None:
        """Restore the first `stop` values of the sum: the base plus, in order, every gradient added since."""
        head = self.sum[:stop]
        if self._base is None:
            head.fill(0)
        else:
            np.copyto(head, self._base[:stop])
        for g in self._since:
            _add(head, g[:stop], out=head)

    def mean(self) -> np.ndarray:
        if self.samples <= 0:
            raise ValueError("no samples accumulated")
        return self.sum / np.float32(self.samples)
