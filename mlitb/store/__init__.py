"""Persistence: projects, checkpoints and metrics in SQLite."""

from mlitb.store.sqlite import ProjectStore, StoredProject

__all__ = ["ProjectStore", "StoredProject"]
