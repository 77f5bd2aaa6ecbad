"""Server memory under anonymous connections that each send one large message before JOIN (issue 12 item 5).

Starts `mlitb serve` in its own process, opens N raw WebSocket connections to /ws (the RFC 6455
handshake and framing written out here), and on each sends one binary message of M MiB, streamed
in 1 MiB writes, without joining. The server's resident memory (VmRSS, /proc) is sampled every
20 ms. Printed: the RSS before, its peak, how many bytes each connection got to send before the
server closed it, and the close codes.

    .venv/bin/python bench/pre_join_memory.py                      # 16 connections x 40 MiB
    .venv/bin/python bench/pre_join_memory.py --connections 16 --mib 40

On a server that reads each message whole before checking it, every connection's message is
buffered (issue 12 measured 78 MB -> 665 MB); with the cap enforced while reading, the message
is refused from its header (close 1009) and nothing is buffered.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlitb.workers.simulate import ServerProcess  # noqa: E402

CHUNK = 1 << 20


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one(host: str, port: int, size: int) -> tuple[int, str]:
    """Handshake, then one masked binary message of `size` bytes; returns (bytes written, how it ended)."""
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0] + b" ":
        return 0, head.split(b"\r\n", 1)[0].decode()
    mask = os.urandom(4)
    # masked payload: any bytes (the server never gets to decode them); zeros xor the mask
    chunk = (mask * (CHUNK // 4))
    sent = 0
    ended = "sent whole"
    try:
        writer.write(struct.pack("!BBQ", 0x82, 0x80 | 127, size) + mask)
        while sent < size:
            n = min(CHUNK, size - sent)
            writer.write(chunk[:n])
            await writer.drain()
            sent += n
        frame = await asyncio.wait_for(reader.read(64), 30)  # the server's answer: a close frame, or EOF
        ended = f"close {struct.unpack('!H', frame[2:4])[0]}" if len(frame) >= 4 and frame[0] & 0x0F == 8 else \
            ("EOF" if not frame else f"frame {frame[:8].hex()}")
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        ended = type(exc).__name__
    except asyncio.TimeoutError:
        ended = "no answer in 30 s"
    finally:
        writer.close()
    return sent, ended


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--mib", type=int, default=40, help="size of each connection's message in MiB")
    args = p.parse_args()
    server = ServerProcess().start()
    try:
        time.sleep(1.0)
        before = rss_mb(server.pid)
        peak = [before]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb(server.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        async def run():
            return await asyncio.gather(*(one(server.host, server.port, args.mib * CHUNK)
                                          for _ in range(args.connections)))

        t0 = time.monotonic()
        results = asyncio.run(run())
        took = time.monotonic() - t0
        time.sleep(0.5)
        stop.set()
        sampler.join()
        after = rss_mb(server.pid)
    finally:
        server.stop()
    sent = [s for s, _ in results]
    ends: dict[str, int] = {}
    for _, e in results:
        ends[e] = ends.get(e, 0) + 1
    print(f"{args.connections} connections x {args.mib} MiB before JOIN, in {took:.1f} s: server RSS "
          f"{before:.0f} MB before, peak {peak[0]:.0f} MB (+{peak[0] - before:.0f}), {after:.0f} MB after")
    print(f"bytes each got to send before the server stopped reading: min {min(sent) / CHUNK:.1f} MiB, "
          f"max {max(sent) / CHUNK:.1f} MiB; ends: {ends}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
