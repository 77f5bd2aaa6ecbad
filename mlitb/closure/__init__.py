"""Research closures (docs/closure.md): one file with a whole experiment, that verifies and replays.

Python SDK: `load(path)` reads and checks a closure; `save(server, project, path)` saves one from a
running server; `verify` and `replay` recompute with the stored browser code (headless Chromium).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from mlitb.closure.format import FORMAT, FORMAT_VERSION, Closure, build_closure, read_closure, snapshot


@dataclass
class LoadedClosure:
    """What a closure holds, ready to use: the project spec, the weights by layer, labels, metrics."""

    spec: dict  # the project definition (name, dataset, network, hyper, seed) as given to POST /api/projects
    weights: dict[str, dict[str, np.ndarray]]  # layer name -> {"kernel": ..., "bias": ...}, TF.js shapes
    label_map: list[str]  # class index -> label
    metrics: list[dict]  # one record per round
    manifest: dict
    closure: Closure

    @property
    def description(self) -> str:
        return self.manifest.get("description", "")


def load(path: str | Path | bytes) -> LoadedClosure:
    """Read and check a closure file (every hash, the format version, the network); raises MlitbError."""
    from mlitb.model import split_weights

    c = read_closure(path)
    by_layer: dict[str, dict[str, np.ndarray]] = {}
    for name, array in split_weights(c.network, c.params).items():
        layer, kind = name.split("/")
        by_layer.setdefault(layer, {})[kind] = array
    labels = list((c.data or {}).get("labels") or [str(i) for i in range(c.network.num_classes)])
    return LoadedClosure(c.config["project"], by_layer, labels, c.metrics, c.manifest, c)


def save(server: str, project: int, path: str | Path, token: str | None = None, description: str = "",
         timeout_s: float = 120.0) -> dict:
    """Save a closure of a running project (owner or admin token) and download it to `path`; returns its info."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = server.rstrip("/")
    with httpx.Client(timeout=timeout_s, headers=headers) as client:
        res = client.post(f"{base}/api/projects/{project}/closures", json={"description": description})
        if res.status_code >= 400:
            raise RuntimeError(f"save failed ({res.status_code}): {res.text}")
        info = res.json()
        res = client.get(f"{base}/api/closures/{info['id']}/download")
        res.raise_for_status()
    Path(path).write_bytes(res.content)
    return info


def start_project(server: str, path: str | Path, mode: str = "continue", token: str | None = None,
                  name: str | None = None, timeout_s: float = 120.0) -> dict:
    """Start a new project on `server` from a closure file: upload it to the zoo, then fork it (`mode`
    "continue" from its weights, or "restart" from its seed). Returns the project with its owner token.
    The file is checked here first, so a bad one is refused before anything is sent (MlitbError)."""
    raw = Path(path).read_bytes()
    read_closure(raw)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = server.rstrip("/")
    with httpx.Client(timeout=timeout_s, headers=headers) as client:
        res = client.post(f"{base}/api/closures", content=raw, headers={"Content-Type": "application/zip"})
        if res.status_code < 400:
            res = client.post(f"{base}/api/closures/{res.json()['id']}/fork",
                              json={"mode": mode, **({"name": name} if name else {})})
    if res.status_code >= 400:
        raise RuntimeError(f"not loaded ({res.status_code}): {res.text}")
    return res.json()


__all__ = ["FORMAT", "FORMAT_VERSION", "LoadedClosure", "load", "save", "start_project", "read_closure", "build_closure", "snapshot"]
