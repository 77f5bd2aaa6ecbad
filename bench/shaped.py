"""Real shaped links for benchmarks: token-bucket (`tc ... tbf`) limits on real sockets in network namespaces.

This kernel has no `netem`, so latency is added by `DelayProxy`, a TCP relay that holds every chunk for
`delay_ms` in each direction (order kept), on the client's side of the link. Two shapes:

* `shared_bottleneck(rate)`: shell lines that shape `lo` of the current namespace, one bucket for all
  traffic both ways (the 8-trainer experiment: `unshare --net` then these lines).
* `ClientNamespace`: called inside a process that runs in its own namespace (`unshare --net`, see
  `in_new_namespace`): a veth pair to a new namespace for the clients, `up` Mbit/s on the clients' egress,
  `down` Mbit/s on the server's; `run()` starts a command in the client namespace.

Needs root (or a user namespace with CAP_NET_ADMIN) and `ip`, `tc`, `unshare`; nothing outside the
namespaces is touched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

SERVER_IP, CLIENT_IP = "10.77.0.1", "10.77.0.2"
BURST = "64kb"  # bucket depth: a few packets at these rates
QUEUE = "400ms"  # most a packet may wait in the bucket's queue before it is dropped


def available() -> str | None:
    """Why shaping cannot run here, or None."""
    missing = [t for t in ("ip", "tc", "unshare") if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)}"
    probe = subprocess.run(["unshare", "--net", "sh", "-c", "ip link set lo up && tc qdisc add dev lo root tbf rate "
                            f"10mbit burst {BURST} latency {QUEUE}"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"tc/unshare refused: {probe.stderr.strip()}"


def shared_bottleneck(rate_mbit: float) -> str:
    """Shell lines for a fresh namespace: loopback up and shaped to one `rate_mbit` bucket."""
    # an Ethernet MTU: loopback's 64 KiB packets would not fit the bucket (a packet over the burst is never sent)
    return (f"ip link set lo mtu 1500 && ip link set lo up && "
            f"tc qdisc add dev lo root tbf rate {rate_mbit}mbit burst {BURST} latency {QUEUE}")


def in_new_namespace(argv: list[str], setup: str = "ip link set lo up") -> list[str]:
    """A command line that runs `argv` in a new network namespace after `setup`."""
    quoted = " ".join(_quote(a) for a in argv)
    return ["unshare", "--net", "sh", "-c", f"{setup} && exec {quoted}"]


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


class ClientNamespace:
    """A namespace for clients behind a veth link: `up_mbit` from it, `down_mbit` to it."""

    def __init__(self, up_mbit: float, down_mbit: float):
        self.name = f"mlitb-clients-{os.getpid()}"
        self.up, self.down = up_mbit, down_mbit

    def __enter__(self) -> "ClientNamespace":
        n, srv, cli = self.name, f"vs{os.getpid() % 100000}", f"vc{os.getpid() % 100000}"
        for line in (f"ip link set lo up", f"ip netns add {n}", f"ip link add {srv} type veth peer name {cli}",
                     f"ip link set {cli} netns {n}", f"ip addr add {SERVER_IP}/24 dev {srv}", f"ip link set {srv} up",
                     f"ip netns exec {n} ip addr add {CLIENT_IP}/24 dev {cli}", f"ip netns exec {n} ip link set {cli} up",
                     f"ip netns exec {n} ip link set lo up",
                     f"tc qdisc add dev {srv} root tbf rate {self.down}mbit burst {BURST} latency {QUEUE}",
                     f"ip netns exec {n} tc qdisc add dev {cli} root tbf rate {self.up}mbit burst {BURST} latency {QUEUE}"):
            subprocess.run(line.split(), check=True, capture_output=True)
        return self

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kw)

    def __exit__(self, *exc) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class DelayProxy:
    """TCP relay: listen on `listen`, connect to `target`, hold each chunk `delay_ms` in both directions."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], delay_ms: float):
        self.listen, self.target, self.delay = listen, target, delay_ms / 1000

    async def serve(self) -> None:
        server = await asyncio.start_server(self._client, *self.listen)
        async with server:
            await server.serve_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver():
            while (item := await queue.get()) is not None:
                due, chunk = item
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()
            writer.close()

        sender = asyncio.create_task(deliver())
        try:
            while chunk := await reader.read(1 << 16):
                queue.put_nowait((loop.time() + self.delay, chunk))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait(None)
        try:
            await sender
        except (ConnectionError, OSError):
            pass


if __name__ == "__main__":  # python bench/shaped.py proxy HOST:PORT TARGET_HOST:PORT DELAY_MS
    _, _, listen, target, delay = sys.argv
    lh, lp = listen.rsplit(":", 1)
    th, tp = target.rsplit(":", 1)
    asyncio.run(DelayProxy((lh, int(lp)), (th, int(tp)), float(delay)).serve())
