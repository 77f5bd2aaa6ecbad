"""Strategies: how checked results become updates of the model (docs/architecture.md, "Strategies")."""

from mlitb.training.strategies.base import Host, Result, Strategy, UpdateStats
from mlitb.training.strategies.sync_rounds import SyncRounds

__all__ = ["Host", "Result", "Strategy", "SyncRounds", "UpdateStats"]
