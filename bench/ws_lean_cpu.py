"""CPU per large WebSocket message, the lean /ws reader (mlitb/server/ws_lean.py) against the library's own path.

Reading: one client gradient frame (masked, 24 + 4·P bytes) fed to websockets' sans-I/O
`ServerProtocol` in the chunks an asyncio transport delivers (256 KiB), with the connection's
reader left as the library's or made lean as `ws_lean.attach` does, until the message event
comes out. Writing: one PARAMS frame made ready for the transport, as uvicorn's `send` does
(`send_binary`, `data_to_send`, the join it writes) against the lean writer this session
measured and removed (a 2-10 byte header written with the frame, which Python 3.11's
`writelines` joins into one copy anyway; `frame_head` below). Runs alternate lean and library in the same
process; the best of `--repeats` is printed (the machine is shared: the minimum filters
preemption), per message and per parameter byte.

    .venv/bin/python bench/ws_lean_cpu.py --params 455000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import struct  # noqa: E402

import numpy as np  # noqa: E402
from websockets.frames import Frame, Opcode  # noqa: E402
from websockets.protocol import State  # noqa: E402
from websockets.server import ServerProtocol  # noqa: E402
from websockets.streams import StreamReader  # noqa: E402

from mlitb.server import ws_lean  # noqa: E402

HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
CHUNK = 256 * 1024  # asyncio's selector transport reads at most this much per data_received


def frame_head(length: int) -> bytes:
    """RFC 6455 header of an unmasked binary frame of `length` bytes: what the removed lean writer sent first."""
    if length < 126:
        return bytes((0x82, length))
    if length < 1 << 16:
        return struct.pack("!BBH", 0x82, 126, length)
    return struct.pack("!BBQ", 0x82, 127, length)


def server(lean: bool) -> ServerProtocol:
    conn = ServerProtocol(max_size=1 << 30)
    conn.receive_data(HANDSHAKE)  # past the handshake, as uvicorn's protocol is when the app reads
    conn.send_response(conn.accept(conn.events_received()[0]))
    conn.data_to_send()
    assert conn.state is State.OPEN
    if lean:
        conn.reader.__class__ = ws_lean.LeanReader
    else:
        assert type(conn.reader) is StreamReader
    return conn


def read_once(lean: bool, wire: bytes) -> float:
    conn = server(lean)
    chunks = [wire[i:i + CHUNK] for i in range(0, len(wire), CHUNK)]
    t0 = time.perf_counter()
    for c in chunks:
        conn.receive_data(c)
    events = conn.events_received()
    took = time.perf_counter() - t0
    assert len(events) == 1 and len(events[0].data) == len(wire) - 14
    return took


def write_once(lean: bool, frame: bytes) -> float:
    conn = None if lean else server(False)
    t0 = time.perf_counter()
    if lean:
        out = b"".join((frame_head(len(frame)), frame))  # what writelines does on Python 3.11
    else:
        conn.send_binary(frame)
        out = b"".join(conn.data_to_send())  # uvicorn's send: transport.write(b"".join(output))
    took = time.perf_counter() - t0
    assert len(out) == len(frame) + 10
    return took


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--params", type=int, default=455_000)
    p.add_argument("--repeats", type=int, default=40)
    args = p.parse_args()
    payload = np.random.default_rng(0).standard_normal(args.params).astype(np.float32).tobytes()
    frame = b"\0" * 24 + payload
    wire = Frame(Opcode.BINARY, frame).serialize(mask=True)
    best = {(op, lean): float("inf") for op in ("read", "write") for lean in (True, False)}
    for _ in range(args.repeats):
        for lean in (True, False):
            best["read", lean] = min(best["read", lean], read_once(lean, wire))
            best["write", lean] = min(best["write", lean], write_once(lean, frame))
    mb = len(frame) / 1e6
    print(f"P = {args.params} ({mb:.2f} MB per message), best of {args.repeats}, alternating:")
    for op in ("read", "write"):
        lean, lib = best[op, True], best[op, False]
        print(f"  {op:5s}: lean {lean * 1e3:7.3f} ms ({mb / lean / 1e3:5.2f} GB/s), library {lib * 1e3:7.3f} ms "
              f"({mb / lib / 1e3:5.2f} GB/s): lean saves {100 * (1 - lean / lib):4.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
