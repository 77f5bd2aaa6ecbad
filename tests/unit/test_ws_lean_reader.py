"""The WebSocket endpoint's lean stream reader parses exactly what websockets' own reader does,
whatever the chunking of the bytes."""

import random

import numpy as np
import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from mlitb.server import ws_lean as wsmod

pytestmark = pytest.mark.skipif(wsmod.LeanReader is None, reason="websockets' sans-I/O reader is not available")


def client_frame(payload: bytes, opcode=Opcode.BINARY, fin=True) -> bytes:
    return Frame(opcode, payload, fin).serialize(mask=True)


def parse_all(reader_cls, stream: bytes, chunks: list[int], max_size=1 << 30) -> list[tuple]:
    """Feed `stream` to a reader in chunks of the given sizes and parse frames until it is used up."""
    reader = reader_cls()
    out, i = [], 0
    pending = iter(chunks)
    while True:
        parser = Frame.parse(reader.read_exact, mask=True, max_size=max_size, extensions=None)
        try:
            next(parser)
            while True:
                if i >= len(stream):
                    reader.feed_eof()
                size = next(pending, len(stream))
                reader.feed_data(stream[i:i + size]) if i < len(stream) else None
                i += size
                parser.send(None)
        except StopIteration as done:
            f = done.value
            out.append((f.opcode, f.fin, bytes(f.data)))
        except EOFError:
            return out
        if i >= len(stream) and not reader.buffer:
            return out


@pytest.mark.parametrize("seed", range(6))
def test_lean_reader_parses_like_the_library(seed):
    rng = random.Random(seed)
    payloads = [bytes(rng.getrandbits(8) for _ in range(n)) for n in (24, 70_000, 5, 300_001, 1 << 16, 200)]
    stream = b"".join(client_frame(p) for p in payloads) + client_frame(b"\x03\xe8", Opcode.CLOSE)
    chunks = [rng.choice([1, 7, 1000, 65_536, 262_144, 400_000]) for _ in range(10_000)]
    lean = parse_all(wsmod.LeanReader, stream, chunks)
    lib = parse_all(StreamReader, stream, chunks)
    assert lean == lib
    assert [p for _, _, p in lean[:-1]] == payloads


def test_a_large_payload_in_one_chunk_and_the_next_frame_behind_it():
    big = np.arange(100_000, dtype=np.float32).tobytes()
    stream = client_frame(big) + client_frame(b"next")
    # the header alone first, then the payload with the next frame in the same chunk
    assert parse_all(wsmod.LeanReader, stream, [14, len(stream)]) == [(Opcode.BINARY, True, big),
                                                                       (Opcode.BINARY, True, b"next")]


def test_a_stream_that_ends_in_a_large_payload_is_an_eof():
    stream = client_frame(b"x" * 100_000)[:50_000]
    reader = wsmod.LeanReader()
    parser = Frame.parse(reader.read_exact, mask=True, max_size=None, extensions=None)
    next(parser)
    reader.feed_data(stream)
    parser.send(None)
    reader.feed_eof()
    with pytest.raises(EOFError):
        parser.send(None)



@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 65_536, 100_003])
def test_in_place_unmasking_matches_the_library(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    mask = b"\x9a\x01\xff\x37"
    expected = wsmod._library_apply_mask(data, mask)
    payload = wsmod._payload(n)
    payload[:] = np.frombuffer(data, np.uint8)
    assert wsmod._apply_mask(payload, mask) is payload and bytes(payload) == expected
    assert payload.decode("latin-1") == expected.decode("latin-1")
    assert wsmod._apply_mask(data, mask) == expected  # anything else: the library's copy
