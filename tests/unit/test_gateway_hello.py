"""A gateway's hello thread outlives a failed hello: it reads state the server's loop changes, and a thread that
died on one exception would leave the project with the gateway's stale load and data share for good."""

import pytest

pytest.importorskip("ray")

from mlitb.cluster import actors  # noqa: E402


class Handle:
    def __init__(self):
        self.said = []
        self.hello = self

    def remote(self, *args):
        self.said.append(args)


class Runtime:
    def __init__(self, capacities):
        self.capacities = iter(capacities)
        self.clients = {}

    def trainer_capacity(self):
        value = next(self.capacities)
        if isinstance(value, Exception):
            raise value
        return value


class Registry:
    def __init__(self, runtime):
        self.projects = {1: runtime}


def test_a_failed_hello_is_logged_and_the_next_one_goes_out(monkeypatch, caplog):
    gateway = object.__new__(actors.GatewayActor.__ray_metadata__.modified_class)
    handle = Handle()
    gateway.name, gateway.url, gateway.projects = "gw0", "http://gw0", {1: handle}
    gateway.registry = Registry(Runtime([RuntimeError("dictionary changed size during iteration"), 2000, 4000]))
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        if len(sleeps) == 3:
            raise SystemExit  # ends the endless loop after three hellos
    monkeypatch.setattr(actors.time, "sleep", sleep)
    with pytest.raises(SystemExit):
        gateway._hello_loop()
    assert handle.said == [("gw0", "http://gw0", 0, 2000), ("gw0", "http://gw0", 0, 4000)]
    assert "hello failed" in caplog.text
