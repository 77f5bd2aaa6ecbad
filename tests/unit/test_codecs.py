"""Update codecs (mlitb/codec/): round trips, the error-feedback invariant, shadows that stay identical on master and
clients, and each refusal of a malformed or hostile payload with its stable code."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from mlitb.codec import delta, indices, quant, topk
from mlitb.errors import ErrorCode, MlitbError

RNG = np.random.default_rng(0)


def code_of(fn) -> ErrorCode:
    with pytest.raises(MlitbError) as err:
        fn()
    return err.value.code


@pytest.mark.parametrize("n,density", [(1, 0.01), (10, 0.3), (31786, 0.01), (31786, 0.5), (100000, 0.001)])
def test_topk_f32_round_trip_keeps_exactly_the_largest_coordinates(n, density):
    g = RNG.standard_normal(n).astype(np.float32)
    k = topk.count_for(density, n)
    payload, idx, sent = topk.encode(g, k, quantized=False)
    dense = topk.decode(payload, n, k, quantized=False)
    assert np.count_nonzero(dense) == k
    assert np.array_equal(dense[idx], g[idx])
    assert np.abs(g[dense == 0]).max(initial=0) <= np.abs(g[idx]).min()


def test_topk_q8_values_are_within_half_a_step_of_their_block_scale():
    g = RNG.standard_normal(50000).astype(np.float32)
    k = topk.count_for(0.05, g.size)
    payload, idx, sent = topk.encode(g, k, quantized=True)
    dense = topk.decode(payload, g.size, k, quantized=True)
    assert np.array_equal(dense[idx], sent)
    steps = np.repeat(quant.block_scales(g[idx], 8), quant.BLOCK)[:k]
    assert np.all(np.abs(sent - g[idx]) <= steps * 0.5 * (1 + 1e-6))


def test_ties_keep_the_lowest_indices_and_exactly_k():
    g = np.array([1, -1, 1, 0.5, -1, 1], np.float32)
    _, idx, _ = topk.encode(g, 3, quantized=False)
    assert idx.tolist() == [0, 1, 2]


def test_index_coding_is_the_smaller_of_delta_and_bitmap():
    sparse = np.array([3, 900, 70000], dtype=np.int64)
    assert indices.encode_indices(sparse, 100000)[0] == indices.DELTA
    dense = np.arange(0, 1000, 2)
    coding, data = indices.encode_indices(dense, 1000)
    assert coding == indices.BITMAP and len(data) == 125
    for idx, n in ((sparse, 100000), (dense, 1000)):
        c, d = indices.encode_indices(idx, n)
        assert np.array_equal(indices.decode_indices(c, d, idx.size, n), idx)


@pytest.mark.parametrize("quantized", [False, True])
def test_error_feedback_sent_plus_residual_equals_the_accumulated_gradient_bit_for_bit(quantized):
    n, k = 20000, 200
    ef = topk.ErrorFeedback(n)
    total_sent = np.zeros(n, np.float64)
    total_grad = np.zeros(n, np.float64)
    for _ in range(30):
        g = (RNG.standard_normal(n) * RNG.uniform(0.01, 10)).astype(np.float32)
        acc = ef.residual + g  # float32 bookkeeping of this round
        sent = topk.decode(ef.compress(g, k, quantized), n, k, quantized)
        assert np.array_equal(sent + ef.residual, acc)  # exact, in float32
        total_sent += sent
        total_grad += g
    # over many rounds nothing is lost, only delayed (float64 sums; float32 additions round per round)
    assert np.allclose(total_sent + ef.residual, total_grad, rtol=0, atol=1e-3)


@pytest.mark.parametrize("bits", [8, 4])
def test_shadows_stay_identical_on_master_and_clients_that_join_between_rounds(bits):
    n = 31786
    params = RNG.standard_normal(n).astype(np.float32)
    master = delta.Shadow(params)
    clients = [delta.Shadow(master.values)]
    for r in range(60):
        params = params - np.float32(0.01) * RNG.standard_normal(n).astype(np.float32)
        payload = master.advance(params, bits)
        for c in clients:
            c.apply(payload, bits)
        if r % 7 == 3:  # a client joins: it gets the master's shadow as dense float32
            clients.append(delta.Shadow(np.frombuffer(master.values.astype("<f4").tobytes(), "<f4")))
        if r % 11 == 5:  # one misses a frame: it is reset from the shadow, never from the parameters
            clients[0].reset(master.values)
    for c in clients:
        assert np.array_equal(c.values, master.values)
    # server-side error feedback: the shadow tracks the parameters within one step of the last delta
    assert np.abs(master.values - params).max() < 0.05


def test_delta_payload_sizes_are_a_quarter_and_an_eighth_plus_scales():
    assert delta.payload_size(455000, 8) == 455000 + 4 * 1778
    assert delta.payload_size(455001, 4) == 227501 + 4 * 1778


def _topk_payload(k=3, coding=0, index=b"\x01\x02\x03", values=None, reserved=b"\0\0\0", pad=None):
    values = np.ones(k, "<f4").tobytes() if values is None else values
    pad = b"\0" * (-len(index) % 4) if pad is None else pad
    return struct.pack("<IB", k, coding) + reserved + struct.pack("<I", len(index)) + index + pad + values


def test_a_well_formed_sparse_payload_decodes():
    dense = topk.decode(_topk_payload(), 10, 3, quantized=False)
    assert np.flatnonzero(dense).tolist() == [1, 3, 6]


@pytest.mark.parametrize("payload,code", [
    (b"\0" * 11, ErrorCode.CODEC_LENGTH),
    (_topk_payload(reserved=b"\0\1\0"), ErrorCode.CODEC_MALFORMED),
    (_topk_payload(k=4, index=b"\1\1\1\1"), ErrorCode.CODEC_TOO_DENSE),
    (_topk_payload()[:-1], ErrorCode.CODEC_LENGTH),
    (_topk_payload() + b"\0", ErrorCode.CODEC_LENGTH),
    (_topk_payload(pad=b"\1"), ErrorCode.CODEC_MALFORMED),
    (_topk_payload(coding=2), ErrorCode.CODEC_MALFORMED),
    (_topk_payload(index=b"\x01\x00\x03"), ErrorCode.CODEC_INDEX_ORDER),
    (_topk_payload(index=b"\x01\x02\x07"), ErrorCode.CODEC_INDEX_RANGE),
    (_topk_payload(index=b"\x01\x82\x00\x03"), ErrorCode.CODEC_MALFORMED),
    (_topk_payload(index=b"\x01\x82"), ErrorCode.CODEC_MALFORMED),
    (_topk_payload(index=b"\x01\x02\xff\xff\xff\xff\xff\x01"), ErrorCode.CODEC_MALFORMED),
    (_topk_payload(index=b"\x01\x02\xff\xff\xff\xff\x1f"), ErrorCode.CODEC_INDEX_RANGE),
    (_topk_payload(index=b"\x01\x02\xf9\xff\xff\xff\x0f"), ErrorCode.CODEC_INDEX_RANGE),
    (_topk_payload(coding=1, index=b"\x03\x00"), ErrorCode.CODEC_MALFORMED),
    (_topk_payload(coding=1, index=b"\x03\x04"), ErrorCode.CODEC_INDEX_RANGE),
    (_topk_payload(coding=1, index=b"\x07"), ErrorCode.CODEC_MALFORMED),
    (_topk_payload(values=np.array([1, np.nan, 1], "<f4").tobytes()), ErrorCode.NON_FINITE),
])
def test_each_malformed_sparse_payload_is_refused_with_its_code(payload, code):
    assert code_of(lambda: topk.decode(payload, 10, 3, quantized=False)) == code


@pytest.mark.parametrize("scale,codes,code", [
    (np.nan, [1, 2, 3], ErrorCode.CODEC_BAD_SCALE),
    (-1.0, [1, 2, 3], ErrorCode.CODEC_BAD_SCALE),
    (3e37, [1, 2, 3], ErrorCode.CODEC_BAD_SCALE),
    (1.0, [1, -128, 3], ErrorCode.CODEC_BAD_CODE),
])
def test_bad_scales_and_codes_in_a_q8_sparse_payload_are_refused(scale, codes, code):
    tail = np.array([scale], "<f4").tobytes() + np.array(codes, np.int8).tobytes()
    assert code_of(lambda: topk.decode(_topk_payload(values=tail), 10, 3, quantized=True)) == code


def test_delta_payloads_are_checked_for_length_scales_codes_and_pad_nibble():
    good, _ = delta.encode(np.ones(5, np.float32), 4)
    assert np.array_equal(delta.decode(good, 5, 4), np.ones(5, np.float32))
    assert code_of(lambda: delta.decode(good + b"\0", 5, 4)) == ErrorCode.CODEC_LENGTH
    assert code_of(lambda: delta.decode(good[:4] + bytes([0x88, 0, 0]), 5, 4)) == ErrorCode.CODEC_BAD_CODE
    assert code_of(lambda: delta.decode(good[:4] + bytes([0, 0, 0x10]), 5, 4)) == ErrorCode.CODEC_BAD_CODE
    inf = np.array([np.inf], "<f4").tobytes()
    assert code_of(lambda: delta.decode(inf + good[4:], 5, 4)) == ErrorCode.CODEC_BAD_SCALE
    assert code_of(lambda: delta.decode(good[:4] + b"\x80" * 5, 5, 8)) == ErrorCode.CODEC_BAD_CODE


def test_warm_up_falls_by_quarters_to_the_target_density():
    assert [topk.density_at(r, 0.001, 8) for r in range(0, 10, 2)] == [0.25, 0.0625, 0.015625, 0.00390625, 0.001]
    assert topk.density_at(0, 0.5, 8) == 0.5
    assert topk.density_at(3, 0.01, 0) == 0.01
