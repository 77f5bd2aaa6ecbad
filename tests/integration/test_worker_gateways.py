"""Finding a gateway (mlitb/workers/gateways.py): which listed URLs a worker follows, the least loaded (or its slot's)
first, another after a loss, a single-process server left exactly as before; and a torch trainer that moves to the
other of two servers faking a cluster's GET /api/gateways when its own is stopped, and trains on there."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from mlitb.config import Settings
from mlitb.server.app import create_app
from mlitb.server.run import BackgroundServer
from mlitb.workers.gateways import GatewayChooser, gateway_origin, ranked
from tests.helpers import wait_for

NETWORK = [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"},
           {"type": "dense", "units": 10, "activation": "softmax"}]


@pytest.mark.parametrize("url, origin", [
    ("http://10.0.0.2:8001", "http://10.0.0.2:8001"),
    ("http://gw.example:8001/", "http://gw.example:8001"),
    ("https://gw.example", "https://gw.example"),
    ("ws://gw.example:8001", None),  # http(s) only: the worker derives ws(s) itself
    ("file:///etc/passwd", None),
    ("javascript:alert(1)", None),
    ("http://user:pw@gw.example:8001", None),  # no credentials
    ("http://gw.example:8001/elsewhere", None),  # an origin only
    ("http://gw.example:8001?x=1", None),
    ("http://gw.example:99999", None),
    ("http://:8001", None),
    (8001, None),
    (None, None),
])
def test_only_http_origins_are_followed(url, origin):
    assert gateway_origin("http://127.0.0.1:8000", url) == origin


def test_a_server_opened_over_https_is_never_left_for_plain_http():
    assert gateway_origin("https://a.example", "http://b.example:8001") is None
    assert gateway_origin("https://a.example", "https://b.example:8001") == "https://b.example:8001"


def test_a_listing_keeps_its_order_and_drops_what_is_not_followed():
    listed = [{"url": "http://b:2"}, {"url": "ftp://c:3"}, "http://d:4", {"url": "http://b:2/"}, {"url": "http://a:1"}]
    assert ranked("http://a:1", listed) == ["http://b:2", "http://a:1"]
    assert ranked("http://a:1", {"url": "http://b:2"}) == []
    assert len(ranked("http://a:1", [{"url": f"http://h{i}:1"} for i in range(500)])) == 64


def _mock(routes: dict[str, object], asked: list[str]) -> httpx.AsyncClient:
    """Each gateway URL -> its /api/gateways answer: a list, a status code, or an exception class (gone)."""
    def handler(request: httpx.Request) -> httpx.Response:
        origin = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        asked.append(origin)
        answer = routes.get(origin, 404)
        if isinstance(answer, type):
            raise answer("gone", request=request)
        return httpx.Response(answer, json={}) if isinstance(answer, int) else httpx.Response(200, json=answer)
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_a_single_process_server_is_kept_and_asked_only_once():
    asked: list[str] = []
    async with _mock({}, asked) as http:
        chooser = GatewayChooser("http://a:1/")
        assert [await chooser.choose(http) for _ in range(3)] == ["http://a:1"] * 3
    assert asked == ["http://a:1"] and chooser.clustered is False


async def test_the_first_connection_takes_its_slot_then_a_loss_takes_the_least_loaded_other_gateway():
    listing = [{"url": "http://b:2", "clients": 0}, {"url": "http://a:1", "clients": 5}, {"url": "http://c:3"}]
    asked: list[str] = []
    async with _mock({"http://a:1": listing}, asked) as http:
        assert await GatewayChooser("http://a:1", slot=0).choose(http) == "http://b:2"
        assert await GatewayChooser("http://a:1", slot=4).choose(http) == "http://a:1"
        chooser = GatewayChooser("http://a:1", slot=0)
        assert await chooser.choose(http) == "http://b:2"
        assert await chooser.choose(http) == "http://a:1"  # b went away: the least loaded of the others
    # b itself is gone and not listed any more: a's answer (asked next) leads to c, the only other one
    gone = [{"url": "http://a:1", "clients": 5}, {"url": "http://c:3"}]
    async with _mock({"http://b:2": httpx.ConnectError, "http://a:1": gone}, asked) as http:
        chooser = GatewayChooser("http://a:1")
        chooser.known, chooser.current, chooser.first, chooser.clustered = ["http://b:2", "http://a:1"], "http://a:1", False, True
        assert await chooser.choose(http) == "http://c:3"
    # nobody answers a list: the other gateways known are tried in turn
    async with _mock({u: httpx.ConnectError for u in ("http://a:1", "http://b:2", "http://c:3")}, asked) as http:
        assert await chooser.choose(http) == "http://a:1"
        assert await chooser.choose(http) in ("http://b:2", "http://c:3")


class FakeCluster:
    """Single-process servers that each answer GET /api/gateways with all of them, `loads` deciding the order."""

    def __init__(self, tmp_path_factory, servers: int = 2, **settings):
        self.loads: dict[str, int] = {}
        self.servers = [BackgroundServer(Settings(port=0, data_dir=tmp_path_factory.mktemp("gw"),
                                                   max_connections_per_address=4096, **settings), app_factory=self._app)
                        for _ in range(servers)]

    def _app(self, settings):
        app = create_app(settings)

        @app.get("/api/gateways")
        def gateways() -> list[dict]:
            return [{"url": u, "clients": n} for u, n in sorted(self.loads.items(), key=lambda kv: kv[1])]
        app.router.routes.insert(0, app.router.routes.pop())  # ahead of the page's catch-all
        return app


@pytest.fixture
def fake_cluster(tmp_path_factory, request):
    """Servers a, b (and c), listed b (0 clients), c (1), a (3); `@pytest.mark.parametrize("fake_cluster", [{...}],
    indirect=True)` passes the number of servers and settings."""
    cluster = FakeCluster(tmp_path_factory, **getattr(request, "param", {}))
    for s in cluster.servers:
        s.start()
    cluster.loads.update({s.url: n for s, n in zip(cluster.servers, (3, 0, 1))})
    for s in cluster.servers:
        r = httpx.post(f"{s.url}/api/projects", json={"name": "gw", "dataset": "mnist", "network": NETWORK,
                                                       "hyper": {"period_s": 1, "aggregation": "mean"}})
        assert r.status_code == 201 and r.json()["id"] == 1, r.text
    yield cluster
    for s in cluster.servers:
        if s.thread.is_alive():
            s.stop()


def _contributions(url: str) -> int:
    return sum(m["contributions"] for m in httpx.get(f"{url}/api/projects/1/metrics", timeout=10).json())


async def test_a_torch_trainer_joins_the_least_loaded_gateway_and_moves_to_the_other_when_it_stops(fake_cluster,
                                                                                                      tmp_path):
    pytest.importorskip("torch")
    from mlitb.workers.native.client import NativeWorker, Options

    a, b = fake_cluster.servers
    stop = asyncio.Event()
    worker = NativeWorker(Options(a.url, 1, "trainer", cache_dir=tmp_path))  # opened a, listed b first
    task = asyncio.create_task(worker.run(stop))
    try:
        await wait_for(lambda: _contributions(b.url) >= 2, 60, "rounds with the trainer's gradients on b")
        assert worker.status.gateway == b.url and _contributions(a.url) == 0
        before = worker.status.connections
        await asyncio.to_thread(b.stop)  # b goes away; it is still listed (first) by a, the worker must not return
        took = await wait_for(lambda: worker.status.gateway == a.url and worker.status.connections > before
                            and worker.status.state in ("idle", "training"), 10, "the trainer on a")
        await wait_for(lambda: _contributions(a.url) >= 2, 60, "rounds with the trainer's gradients on a")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert took < 10 and worker.fatal is None


def _trainers(url: str) -> int:
    try:
        return sum(c["role"] == "trainer" for c in httpx.get(f"{url}/api/projects/1/clients", timeout=5).json())
    except httpx.HTTPError:
        return -1  # stopped


@pytest.mark.browser
def test_the_page_trains_on_the_least_loaded_gateway_and_moves_to_its_own_when_that_one_stops(fake_cluster):
    """The page (web/src/worker/gateways.ts) is served by a, which lists b as least loaded: its trainer's WebSocket
    goes to b (model and data still from a); when b stops, it reconnects to a within 10 s and trains on there."""
    from mlitb.workers.browser import BrowserPool

    a, b = fake_cluster.servers
    with BrowserPool(a.url) as pool:
        pool.open(1, "trainer")
        deadline = time.monotonic() + 90
        while not (_trainers(b.url) == 1 and _contributions(b.url) >= 2) and time.monotonic() < deadline:
            pool.wait(0.5)
        assert _trainers(b.url) == 1 and _contributions(b.url) >= 2, pool.statuses()
        assert _trainers(a.url) == 0
        b.stop()
        stopped = time.monotonic()
        while _trainers(a.url) != 1 and time.monotonic() - stopped < 10:
            pool.wait(0.2)
        took = time.monotonic() - stopped
        assert _trainers(a.url) == 1, (took, pool.statuses())
        while _contributions(a.url) < 2 and time.monotonic() - stopped < 60:
            pool.wait(0.5)
        statuses = pool.statuses()
    assert took < 10 and _contributions(a.url) >= 2, statuses


@pytest.mark.browser
@pytest.mark.parametrize("fake_cluster", [{"servers": 3, "address_limits_exempt": ()}], indirect=True)  # loopback pays
def test_a_page_trainer_asked_for_a_proof_of_work_at_another_gateway_joins_its_own(fake_cluster):
    """A second trainer page from this address is asked for a proof of work at b, whose challenge this page cannot
    fetch (another origin): it joins a, its own gateway, with a challenge from there (not c, the next least loaded,
    where it would join free: the rule is that a refused proof of work goes home)."""
    from mlitb.workers.browser import BrowserPool

    a, b, c = fake_cluster.servers
    with BrowserPool(a.url) as pool:
        pool.open(1, "trainer")
        deadline = time.monotonic() + 60
        while _trainers(b.url) != 1 and time.monotonic() < deadline:
            pool.wait(0.5)
        pool.open(1, "trainer")
        while _trainers(a.url) != 1 and time.monotonic() < deadline:
            pool.wait(0.5)
        placed = (_trainers(b.url), _trainers(a.url), _trainers(c.url))
        statuses = pool.statuses()
    assert placed == (1, 1, 0), statuses
