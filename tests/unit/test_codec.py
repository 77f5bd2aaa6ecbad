"""The payload-kind registry (mlitb/codec): the dense float32 codec, reserved kinds refused with a stable code."""

from __future__ import annotations

import numpy as np
import pytest

from mlitb import codec
from mlitb.codec import Codec, Kind
from mlitb.errors import ErrorCode, MlitbError


def test_dense_decodes_exactly_p_float32_as_a_view_without_a_copy():
    values = np.array([1.5, -0.0, 3e38, np.nan], np.float32)  # finiteness is checked where the sum is taken
    payload = values.tobytes()
    out = codec.decode(Kind.DENSE_F32, payload, 4)
    assert out.dtype == np.float32 and out.tobytes() == payload and not out.flags.owndata


@pytest.mark.parametrize("length", [0, 15, 17, 20])
def test_dense_refuses_any_other_length_with_wrong_length(length):
    with pytest.raises(MlitbError) as exc:
        codec.decode(Kind.DENSE_F32, b"\0" * length, 4)
    assert exc.value.code == ErrorCode.WRONG_LENGTH


def test_dense_encode_is_the_little_endian_float32_bytes():
    assert codec.get(0).encode(np.array([1.0, 2.0], np.float64)) == np.array([1, 2], "<f4").tobytes()


@pytest.mark.parametrize("kind", [7, 1000, 65535])  # 7: the first kind without a codec (0-6 have theirs)
def test_kinds_without_a_registered_codec_are_refused_with_unknown_payload_kind(kind):
    assert not codec.supported(kind)
    with pytest.raises(MlitbError) as exc:
        codec.decode(kind, b"", 4)
    assert exc.value.code == ErrorCode.UNKNOWN_PAYLOAD_KIND and "0 dense_f32" in exc.value.detail


def test_the_reserved_numbers_are_fixed():
    assert [(k.name, int(k)) for k in Kind] == [("DENSE_F32", 0), ("TOPK_F32", 1), ("TOPK_Q8", 2), ("DELTA_Q8", 3),
                                                 ("DELTA_Q4", 4), ("DELTA_Q6Z", 5), ("DENSE_F32_COMMITTED", 6)]


def test_a_kind_can_be_registered_once_and_only_if_reserved():
    dense = codec.get(0)
    with pytest.raises(ValueError, match="already"):
        codec.register(dense)
    with pytest.raises(ValueError, match="not reserved"):
        codec.register(Codec(9, "x", dense.decode, dense.encode, dense.max_payload_bytes))


def test_the_joined_cap_is_the_largest_payload_any_codec_allows():
    assert codec.max_payload_bytes(1000) >= 4000
    assert codec.max_payload_bytes(1000) == max(codec.get(k).max_payload_bytes(1000) for k in Kind
                                                if codec.supported(k))
