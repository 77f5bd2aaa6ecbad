"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from mlitb.config import Settings
from mlitb.server.run import BackgroundServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real server on a free loopback port with its own data folder, one per test module (a module that
    needs other settings defines its own). Every test client connects from loopback, one address, so the
    per-address connection limit is raised to the per-project worker limit (its default is tested on its own)."""
    settings = Settings(port=0, data_dir=tmp_path_factory.mktemp("data"), max_connections_per_address=4096)
    with BackgroundServer(settings) as srv:
        yield srv
