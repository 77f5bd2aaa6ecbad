"""Strategies: how checked results become updates of the model (docs/architecture.md, "Strategies")."""

from mlitb.training.strategies.base import Host, Result, Strategy, UpdateStats
from mlitb.training.strategies.sync_rounds import SyncRounds


def make_strategy(hyper) -> Strategy:
    """A fresh strategy for a project with these hyper-parameters: the one place a new strategy is chosen
    (synchronous time-boxed rounds are the only one so far)."""
    return SyncRounds()


__all__ = ["Host", "Result", "Strategy", "SyncRounds", "UpdateStats", "make_strategy"]
