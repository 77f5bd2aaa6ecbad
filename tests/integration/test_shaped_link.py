"""The benchmark's shaped links are real: a tbf bucket in a network namespace limits a real socket's throughput, a
veth link shapes each direction on its own, and the delay proxy adds its latency to a real round trip."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import shaped  # noqa: E402

TRANSFER = """
import socket, threading, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def sink():
    c, _ = srv.accept()
    while c.recv(1 << 16): pass
threading.Thread(target=sink, daemon=True).start()
s = socket.create_connection(srv.getsockname()); t = time.monotonic()
s.sendall(b"x" * 1_000_000); s.shutdown(socket.SHUT_WR); s.recv(1)
print(time.monotonic() - t)
"""


@pytest.fixture(scope="module")
def can_shape():
    why = shaped.available()
    if why:
        pytest.skip(f"shaped links unavailable here: {why}")


def _seconds_for_a_megabyte(setup: str) -> float:
    done = subprocess.run(shaped.in_new_namespace([sys.executable, "-c", TRANSFER], setup), capture_output=True,
                          text=True, timeout=60, check=True)
    return float(done.stdout.strip())


def test_a_shared_bottleneck_limits_a_real_socket_to_its_rate(can_shape):
    unshaped = _seconds_for_a_megabyte("ip link set lo up")
    limited = _seconds_for_a_megabyte(shaped.shared_bottleneck(8))  # 1 MB = 8 Mbit: about 1 s
    assert 0.8 < limited < 3.0 and limited > 5 * unshaped, (limited, unshaped)


def test_the_delay_proxy_adds_its_delay_to_each_direction_of_a_round_trip():
    async def main():
        async def echo(reader, writer):
            while data := await reader.read(100):
                writer.write(data)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            listen = s.getsockname()
        relay = asyncio.create_task(shaped.DelayProxy(listen, ("127.0.0.1", port), delay_ms=40).serve())
        for _ in range(200):
            try:
                reader, writer = await asyncio.open_connection(*listen)
                break
            except OSError:
                await asyncio.sleep(0.05)
        times = []
        for _ in range(3):
            t = time.monotonic()
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            times.append(time.monotonic() - t)
        writer.close()
        server.close()
        relay.cancel()
        return times

    times = asyncio.run(main())
    # 40 ms each way: at least 80 ms a round trip (no upper bound: a loaded machine only adds to it)
    assert all(t >= 0.079 for t in times), times


VETH = """
import socket, subprocess, sys, threading, time
sys.path.insert(0, ROOT)
from bench import shaped
srv = socket.socket(); srv.bind(("0.0.0.0", 0)); srv.listen(2)
port = srv.getsockname()[1]
def serve():
    c, _ = srv.accept()  # upload: read 1 MB, then send 1 MB down
    got = 0
    while got < 1_000_000:
        got += len(c.recv(1 << 16))
    c.sendall(b"y" * 1_000_000); c.close()
threading.Thread(target=serve, daemon=True).start()
client = '''
import socket, sys, time
s = socket.create_connection(("10.77.0.1", int(sys.argv[1])))
t = time.monotonic(); s.sendall(b"x" * 1_000_000); s.recv(1); up = time.monotonic() - t
t = time.monotonic(); got = 1
while (b := s.recv(1 << 16)):
    got += len(b)
print(up, time.monotonic() - t)
'''
with shaped.ClientNamespace(up_mbit=8, down_mbit=40) as ns:
    p = ns.popen([sys.executable, "-c", client, str(port)], stdout=subprocess.PIPE, text=True)
    print(p.communicate(timeout=60)[0].strip())
"""


def test_a_veth_link_shapes_up_and_down_each_at_its_own_rate(can_shape):
    script = VETH.replace("ROOT", repr(str(ROOT)))
    done = subprocess.run(shaped.in_new_namespace([sys.executable, "-c", script]), capture_output=True, text=True,
                          timeout=90, check=True)
    up, down = map(float, done.stdout.split())
    # 8 Mbit/s: at least 0.8 s for a megabyte (the shaper's floor; a loaded machine only adds to it), and
    # 40 Mbit/s down, measured in the same run: well under the up time
    assert up > 0.8, (up, down)
    assert down < 0.6 * up, (up, down)
