"""The WebSocket endpoint's lean stream reader parses exactly what websockets' own reader does,
whatever the chunking of the bytes."""

import random

import numpy as np
import pytest
import websockets.frames
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



def _xor(data: bytes, mask: bytes) -> bytes:
    return (np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), len(data))).tobytes()


@pytest.mark.parametrize("n", [65_536, 65_537, 65_543, 65_544, 100_003])  # at least LARGE; every tail length mod 8
def test_a_large_payload_still_arriving_is_unmasked_in_place_to_the_same_bytes(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    stream = client_frame(data)
    reader = wsmod.LeanReader()
    parser = Frame.parse(reader.read_exact, mask=True, max_size=1 << 30, extensions=None)
    reader.feed_data(stream[:len(stream) - n])  # the header: the payload is still to come
    next(parser)
    reader.feed_data(stream[len(stream) - n:])
    with pytest.raises(StopIteration) as done:
        parser.send(None)
    got = done.value.value.data
    assert isinstance(got, np.ndarray)  # the reader's own buffer, handed over and unmasked in place, not a copy
    mask = stream[len(stream) - n - 4:len(stream) - n]
    assert bytes(got) == _xor(stream[len(stream) - n:], mask) == data
    assert got.decode("latin-1") == data.decode("latin-1")  # bytes' decode, for uvicorn's text messages


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 100_003])
def test_the_installed_apply_mask_gives_the_librarys_bytes_for_anything_else(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    mask = b"\x9a\x01\xff\x37"
    assert websockets.frames.apply_mask(data, mask) == _xor(data, mask)
