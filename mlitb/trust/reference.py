"""The master's reference gradient, the yardstick of the bound on public votes (mlitb/master/trust_hooks.py),
computed off the server's event loop.

Why a helper thread: the reference is a NumPy gradient over REFERENCE_EXAMPLES training examples at the
update's parameters. For the CIFAR-size network that is 0.2-1 s of CPU, and computed when the update closed it
stopped the event loop, and with it every project's frames, for that long at every update: a paper-network
trainer beside a CIFAR-size project saw 250-550 ms round trips on loopback and lost a quarter of its work
time to the margin they called for (bench/work_fill.py). The parameters of an update are fixed when it opens,
so the reference is started then, in a helper thread (NumPy's products release the GIL), and taken when the
update closes, by then normally done. It is started only where a public vote may need it, and taken only if
the closed update holds one; its value is the same as computing it at the close (a recorded run recomputes it).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from mlitb.model import Network
from mlitb.trust import numpy_net

REFERENCE_EXAMPLES = 64

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _helper() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:  # one thread for every project: references queue rather than crowd the server's cores
            _pool = ThreadPoolExecutor(1, thread_name_prefix="mlitb-reference")
        return _pool


def reference_gradient(network: Network, params: np.ndarray, train, seed: list[int]) -> np.ndarray:
    """The per-sample mean gradient over REFERENCE_EXAMPLES training examples drawn by `seed` (per project and
    version: the same reference wherever that update is aggregated)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(train), min(REFERENCE_EXAMPLES, len(train)), replace=False)
    grad, _ = numpy_net.gradient_sum(network, params, train.images[pick], train.labels[pick])
    return grad / np.float32(len(pick))


class ReferenceGradients:
    """One project's reference: started when an update opens, taken when it closes."""

    def __init__(self) -> None:
        self._pending: tuple[object, Future] | None = None

    def start(self, key: object, network: Network, params: np.ndarray, train, seed: list[int]) -> None:
        """Begin the reference of the update `key` (a copy of the parameters: the optimizer may step in place)."""
        self.drop()
        self._pending = (key, _helper().submit(reference_gradient, network, params.copy(), train, seed))

    def take(self, key: object, network: Network, params: np.ndarray, train, seed: list[int]) -> np.ndarray:
        """The reference of the update `key`: the one started for it if it is done or being computed; else (none
        was started, or it still waits behind other projects' references in the helper thread) computed now, so
        an update never waits for another project's work."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == key and not pending[1].cancel():
            return pending[1].result()  # done, or running: at most the rest of its own computation
        if pending is not None:
            pending[1].cancel()
        return reference_gradient(network, params, train, seed)

    def drop(self) -> None:
        """The update closed without needing its reference (no public vote): a queued one is not computed."""
        if self._pending is not None:
            self._pending[1].cancel()
            self._pending = None
