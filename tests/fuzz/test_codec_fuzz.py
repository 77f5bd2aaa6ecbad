"""Fuzzing the compressed-payload decoders (q6z: the deflate stream too, and zip bombs): only MlitbError may come out, and anything accepted is a finite float32
vector of exactly the project's length with no more non-zeros than the density allows."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlitb.codec import delta, topk
from mlitb.errors import MlitbError

FUZZ = settings(max_examples=1500, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LENGTH = 300
MAX = 12


def _valid_sparse(quantized: bool) -> bytes:
    g = np.random.default_rng(quantized).standard_normal(LENGTH).astype(np.float32)
    return topk.encode(g, MAX, quantized)[0]


def _valid_delta(bits: int) -> bytes:
    return delta.encode(np.random.default_rng(bits).standard_normal(LENGTH).astype(np.float32), bits)[0]


@st.composite
def mutated(draw, base: bytes):
    b = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "cut", "grow", "poke"]))
        if how == "flip" and b:
            b[draw(st.integers(0, len(b) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            b = b[: draw(st.integers(0, len(b)))]
        elif how == "grow":
            b += draw(st.binary(min_size=1, max_size=16))
        elif b:
            at = draw(st.integers(0, len(b) - 1))
            b[at:at + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(b)


def _payloads(base: bytes):
    return st.one_of(st.binary(max_size=2 * len(base)), mutated(base))


def _check(fn, tally, name):
    try:
        dense = fn()
    except MlitbError as err:
        tally(name)[err.code.name] += 1
        return None
    tally(name)["accepted"] += 1
    assert dense.dtype == np.float32 and dense.shape == (LENGTH,)
    assert np.all(np.isfinite(dense))
    return dense


@FUZZ
@given(st.booleans(), st.data())
def test_sparse_decoder_only_refuses_with_codes_and_keeps_its_promises(tally, quantized, data):
    payload = data.draw(_payloads(_valid_sparse(quantized)))
    dense = _check(lambda: topk.decode(payload, LENGTH, MAX, quantized), tally, f"topk q={quantized}")
    if dense is not None:
        assert np.count_nonzero(dense) <= MAX


@FUZZ
@given(st.sampled_from([8, 4, 6]), st.data())
def test_delta_decoder_only_refuses_with_codes_and_keeps_its_promises(tally, bits, data):
    payload = data.draw(_payloads(_valid_delta(bits)))
    _check(lambda: delta.decode(payload, LENGTH, bits), tally, f"delta q{bits}" + ("z" if bits == 6 else ""))


@FUZZ
@given(st.integers(LENGTH + 5 * 4 + 1, 50 * LENGTH), st.binary(max_size=64), st.integers(0, 9))
def test_a_deflated_delta_never_inflates_past_its_frame(tally, size, tail, level):
    """Zip bombs: a stream of any length of output is refused once it passes the q6z layout's size."""
    import zlib

    bomb = zlib.compress(bytes(size) + tail, level, -15)
    _check(lambda: delta.decode(bomb, LENGTH, 6), tally, "delta q6z bomb")
