"""Strategies: how checked results become updates of the model (docs/architecture.md, "Strategies")."""

from mlitb.training.strategies.async_buffer import AsyncBuffer, staleness_weight
from mlitb.training.strategies.base import Host, Result, Strategy, StrategyWrapper, UpdateStats
from mlitb.training.strategies.sync_rounds import SyncRounds

STRATEGIES = {"sync": SyncRounds, "async": AsyncBuffer}  # by hyper.mode


def make_strategy(hyper) -> Strategy:
    """A fresh strategy for a project's `hyper.mode`."""
    return STRATEGIES[hyper.mode]()


__all__ = ["AsyncBuffer", "Host", "Result", "STRATEGIES", "Strategy", "StrategyWrapper", "SyncRounds", "UpdateStats", "make_strategy",
           "staleness_weight"]
