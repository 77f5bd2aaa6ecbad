"""The browser's frame codec and payload kinds (web/src/protocol/frames.ts, web/src/codec/, run in Node) are twins
of mlitb/protocol/frames.py and mlitb/codec: the same bytes out, the same vectors and error codes in."""

from __future__ import annotations

import numpy as np
import pytest

from mlitb.errors import MlitbError
from mlitb.protocol import MessageType, decode, encode
from tests.helpers import run_in_node

# what Node runs: encode each case, and decode each given frame's vector (or the error code it throws)
SCRIPT = """
const frames = await import(BUNDLE);
const input = INPUT;
const hex = (buf) => Buffer.from(buf).toString('hex');
const encoded = input.encode.map((c) => hex(frames.encode(c.type, {...c.fields,
  payload: c.floats === undefined ? c.fields.payload : new Float32Array(c.floats)})));
const decoded = input.decode.map((c) => {
  const f = frames.decode(new Uint8Array(Buffer.from(c.hex, 'hex')).buffer);
  try { return {kind: f.kind, vector: Array.from(frames.vector(f, c.paramCount))}; }
  catch (e) { return {kind: f.kind, error: e.code ?? String(e)}; }
});
console.log(JSON.stringify({encoded, decoded}));
"""

ENCODE = [
    {"type": 2, "fields": {"project": 7, "round": 3, "count": 2, "aux": 900, "value": 1.5}, "floats": [1.0, -2.0]},
    {"type": 18, "fields": {"project": 1, "round": 258, "count": 1}, "floats": [0.5]},
    {"type": 1, "fields": {"project": 4, "payload": {"role": "trainer"}}},
    {"type": 2, "fields": {"project": 1, "kind": 3}, "floats": [0.25]},
]


def python_encode(case: dict) -> bytes:
    fields = dict(case["fields"])
    payload = np.array(case["floats"], np.float32) if "floats" in case else fields.pop("payload", b"")
    return encode(MessageType(case["type"]), payload=payload, **fields)


def python_vector(data: bytes, param_count: int) -> dict:
    kind = int.from_bytes(data[2:4], "little")
    try:
        return {"kind": kind, "vector": decode(data, 1 << 20).vector(param_count).tolist()}
    except MlitbError as err:
        return {"kind": kind, "error": err.code.name}


DECODE = [
    (encode(MessageType.PARAMS, round=1, count=3, payload=np.array([1, 2.5, -3], np.float32)), 3),
    (encode(MessageType.PARAMS, count=3, payload=np.array([1, 2], np.float32)), 3),  # wrong length
    (encode(MessageType.PARAMS, count=1, payload=np.array([1], np.float32), kind=2), 1),  # reserved, no codec
    (encode(MessageType.GRADIENT, count=1, payload=np.array([1], np.float32), kind=77), 1),  # unassigned
]


@pytest.fixture(scope="module")
def node_side(tmp_path_factory):
    request = {"encode": ENCODE, "decode": [{"hex": d.hex(), "paramCount": p} for d, p in DECODE]}
    return run_in_node("protocol/frames.ts", tmp_path_factory.mktemp("ts"), SCRIPT, request)


@pytest.mark.parametrize("index", range(len(ENCODE)))
def test_the_browser_encodes_the_same_bytes_as_the_server(node_side, index):
    assert bytes.fromhex(node_side["encoded"][index]) == python_encode(ENCODE[index])


@pytest.mark.parametrize("index", range(len(DECODE)))
def test_the_browser_decodes_payload_kinds_as_the_server_does(node_side, index):
    assert node_side["decoded"][index] == python_vector(*DECODE[index])
