"""Binary frame codec: layout, size cap, and rejection of malformed frames."""

import struct

import numpy as np
import pytest

from mlitb.errors import ErrorCode, MlitbError
from mlitb.protocol import HEADER_SIZE, MessageType, decode, encode, error_frame


def test_header_is_24_bytes_little_endian_with_fields_in_documented_order():
    data = encode(MessageType.GRADIENT, project=7, round=3, count=32, aux=900, value=1.5)
    assert len(data) == HEADER_SIZE == 24
    assert struct.unpack("<BBHIIIIf", data) == (2, 1, 0, 7, 3, 32, 900, 1.5)


def test_float32_payload_round_trips_bit_exact():
    grad = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    frame = decode(encode(MessageType.GRADIENT, project=1, round=2, count=5, payload=grad), 1 << 20)
    assert frame.type == MessageType.GRADIENT and frame.round == 2 and frame.count == 5
    np.testing.assert_array_equal(frame.floats(), grad)
    assert len(frame.payload) == 4000


def test_uint32_and_json_payloads_round_trip():
    ids = np.array([0, 5, 4294967295], dtype=np.uint32)
    assert decode(encode(MessageType.ALLOC, payload=ids), 1000).uint32s().tolist() == ids.tolist()
    assert decode(encode(MessageType.JOIN, payload={"role": "trainer"}), 1000).json() == {"role": "trainer"}


def test_frame_exactly_at_the_cap_is_accepted_and_one_byte_more_is_refused():
    data = encode(MessageType.GRADIENT, payload=np.zeros(10, np.float32))
    assert decode(data, len(data)).count == 0
    with pytest.raises(MlitbError) as exc:
        decode(data + b"\0", len(data))
    assert exc.value.code == ErrorCode.FRAME_TOO_LARGE


@pytest.mark.parametrize("data,code", [
    (b"", ErrorCode.FRAME_MALFORMED),
    (b"\x02\x01" + b"\0" * 21, ErrorCode.FRAME_MALFORMED),
    (struct.pack("<BBHIIIIf", 2, 9, 0, 0, 0, 0, 0, 0), ErrorCode.UNSUPPORTED_VERSION),
    (struct.pack("<BBHIIIIf", 99, 1, 0, 0, 0, 0, 0, 0), ErrorCode.UNKNOWN_MESSAGE),
    (struct.pack("<BBHIIIIf", 2, 1, 7, 0, 0, 0, 0, 0), ErrorCode.UNKNOWN_PAYLOAD_KIND),  # the first unreserved
    (struct.pack("<BBHIIIIf", 2, 1, 999, 0, 0, 0, 0, 0), ErrorCode.UNKNOWN_PAYLOAD_KIND),  # not even reserved
    (struct.pack("<BBHIIIIf", 3, 1, 1, 0, 0, 0, 0, 0), ErrorCode.FRAME_MALFORMED),  # EVAL has no payload kind
    (struct.pack("<BBHIIIIf", 2, 1, 0, 0, 0, 0, 0, float("nan")), ErrorCode.NON_FINITE),
    (struct.pack("<BBHIIIIf", 2, 1, 0, 0, 0, 0, 0, float("inf")), ErrorCode.NON_FINITE),
])
def test_malformed_headers_are_refused_with_a_stable_code(data, code):
    with pytest.raises(MlitbError) as exc:
        decode(data, 1 << 20)
    assert exc.value.code == code


def test_payloads_of_the_wrong_shape_are_refused():
    frame = decode(encode(MessageType.GRADIENT, payload=b"\0" * 7), 1000)
    with pytest.raises(MlitbError, match="multiple of 4"):
        frame.floats()
    for body in (b"\xff\xfe", b"[1, 2]", b"{nope"):
        with pytest.raises(MlitbError) as exc:
            decode(encode(MessageType.JOIN, payload=body), 1000).json()
        assert exc.value.code == ErrorCode.FRAME_MALFORMED


def test_error_frame_carries_the_code_number_and_message():
    frame = decode(error_frame(MlitbError(ErrorCode.NON_FINITE, "NaN at 3"), project=4, round=9), 1000)
    assert (frame.type, frame.project, frame.round, frame.count) == (MessageType.ERROR, 4, 9, 1011)
    assert frame.json() == {"code": "NON_FINITE", "number": 1011, "message": "NaN at 3"}


def test_frames_of_payload_kind_0_are_byte_identical_to_the_frames_before_payload_kinds():
    """The offset-2 field was `flags` (0); it is now the payload kind, 0 = dense float32, so these bytes,
    written out by hand from the layout, are what every server and client sent before."""
    grad = encode(MessageType.GRADIENT, project=7, round=3, count=2, aux=900, value=1.5,
                  payload=np.array([1.0, -2.0], np.float32))
    assert grad == bytes.fromhex("02 01 0000 07000000 03000000 02000000 84030000 0000c03f 0000803f 000000c0")
    params = encode(MessageType.PARAMS, project=1, round=258, count=1, payload=np.array([0.5], np.float32))
    assert params == bytes.fromhex("12 01 0000 01000000 02010000 01000000 00000000 00000000 0000003f")
    frame = decode(grad, 1000)
    assert frame.kind == 0 and frame.vector(2).tolist() == [1.0, -2.0]


def test_the_payload_kind_is_carried_in_the_header_at_offset_2():
    data = encode(MessageType.GRADIENT, payload=b"", kind=0)
    assert struct.unpack_from("<H", data, 2) == (0,)
    assert decode(encode(MessageType.GRADIENT, payload=b"", kind=2), 1000).kind == 2  # topk_q8 (mlitb.codec)
    with pytest.raises(MlitbError) as exc:
        decode(encode(MessageType.PARAMS, payload=b"", kind=7), 1000)
    assert exc.value.code == ErrorCode.UNKNOWN_PAYLOAD_KIND and "topk_q8" in exc.value.detail
