"""Server optimizers: how an aggregated update moves the model, as swappable objects with their own state.

A strategy (mlitb/training/strategies/) turns results into one update vector (a mean gradient in
synchronous rounds); the runtime hands it to the project's `ServerOptimizer`, which returns the new
parameters or None. The optimizer owns its state arrays (AdaGrad: the squared-gradient history), each
the size of the parameters; the runtime stores them, concatenated in this order, as the checkpoint's
optimizer state (the `history` column of the store and `optimizer/history.bin` of a closure), so a
project with AdaGrad checkpoints byte for byte as before. An optimizer with momentum (the outer
Nesterov step of local SGD) is one more class here with its own `STATE` names.

The step itself stays a pure function (`adagrad_step`); the object only holds its state and makes the
step all-or-nothing: it runs on copies and keeps them only if every value is finite.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from mlitb.training.adagrad import adagrad_step
from mlitb.training.nesterov import nesterov_step


class OptimizerHyper(Protocol):
    learning_rate: float
    epsilon: float
    l1: float
    l2: float


class ServerOptimizer(Protocol):
    STATE: tuple[str, ...]  # names of the state arrays, in checkpoint order

    def step(self, params: np.ndarray, update: np.ndarray, hyper: OptimizerHyper) -> np.ndarray | None:
        """New parameters (a new array) after applying `update`, the state advanced with them; or None, with
        the state unchanged, if the result would not be finite. `params` is never written."""

    def state(self) -> np.ndarray:
        """The state arrays concatenated (a copy-free view is fine: the optimizer replaces, never writes, them)."""

    def load(self, state: np.ndarray) -> None:
        """Take a checkpoint's state (len(STATE) x parameters float32); ValueError if the size is wrong."""

    def reset(self, size: int) -> None:
        """A fresh state for a model of `size` parameters (loaded weights start a new optimization)."""

    def arrays(self) -> list[np.ndarray]:
        """The state arrays, one per name in STATE (for laying them out anew when the model grows)."""

    def replace(self, arrays: list[np.ndarray]) -> None:
        """Take re-laid-out state arrays (a grown model), one per name in STATE."""


class AdaGrad:
    """AdaGrad with L1/L2 decay (mlitb/training/adagrad.py); its state is the history of squared gradients."""

    STATE = ("history",)

    def __init__(self, size: int):
        self.history = np.zeros(size, dtype=np.float32)

    def step(self, params: np.ndarray, update: np.ndarray, hyper: OptimizerHyper) -> np.ndarray | None:
        # on copies: a step whose result is not finite (finite but huge gradients overflowing float32, say)
        # is refused, never written into the model or the history
        new, history = params.copy(), self.history.copy()
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is expected here, and refused below
            adagrad_step(new, history, update, learning_rate=hyper.learning_rate, epsilon=hyper.epsilon,
                         l1=hyper.l1, l2=hyper.l2)
        if not (np.isfinite(new).all() and np.isfinite(history).all()):
            return None
        self.history = history
        return new

    def state(self) -> np.ndarray:
        return self.history

    def load(self, state: np.ndarray) -> None:
        if state.shape != self.history.shape:
            raise ValueError(f"optimizer state has {state.size} values; expected {self.history.size}")
        self.history = state.astype(np.float32)

    def reset(self, size: int) -> None:
        self.history = np.zeros(size, dtype=np.float32)

    def arrays(self) -> list[np.ndarray]:
        return [self.history]

    def replace(self, arrays: list[np.ndarray]) -> None:
        """Take re-laid-out state arrays (a grown model), one per name in STATE."""
        (self.history,) = (a.astype(np.float32) for a in arrays)


class Nesterov(AdaGrad):
    """The outer step of local-SGD rounds (mlitb/training/nesterov.py, DiLoCo): the update is the mean parameter
    change of the trainers' inner steps; its state is the momentum velocity. Checkpoints store it where AdaGrad's
    history goes (one array of the parameters' size)."""

    STATE = ("velocity",)

    def step(self, params: np.ndarray, update: np.ndarray, hyper) -> np.ndarray | None:
        new, velocity = params.copy(), self.history.copy()
        nesterov_step(new, velocity, update, learning_rate=hyper.outer_lr, momentum=hyper.outer_momentum)
        if not (np.isfinite(new).all() and np.isfinite(velocity).all()):
            return None
        self.history = velocity
        return new


def make_optimizer(hyper: OptimizerHyper, size: int) -> ServerOptimizer:
    """The project's server optimizer: AdaGrad with L1/L2 (the paper's rule), or outer Nesterov momentum for
    local-SGD rounds."""
    return Nesterov(size) if getattr(hyper, "algorithm", "gradient") == "local_sgd" else AdaGrad(size)
