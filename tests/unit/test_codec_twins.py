"""The TypeScript codecs (web/src/codec/, real code run in Node) and the Python ones (mlitb/codec/) agree byte for
byte: the same gradients give the same upload payloads and residuals, the same parameters give the same delta frames
and shadows, and the same hostile payloads are refused with the same error code."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from mlitb.codec import delta, topk
from tests.unit import codec_twin as twin


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    if not twin.available():
        pytest.skip("needs Node and web/node_modules (npm --prefix web install)")
    return twin.bundle(tmp_path_factory.mktemp("codec"))


def _vectors(rng, n, rounds, kind):
    if kind == "normal":
        return [rng.standard_normal(n).astype(np.float32) * np.float32(10.0 ** rng.integers(-6, 3)) for _ in range(rounds)]
    if kind == "ties":  # many equal magnitudes: the tie rule decides which indices are kept
        return [rng.choice(np.array([-1, 0, 1, 2, -2], np.float32), n) for _ in range(rounds)]
    if kind == "sparse":  # mostly zeros and blocks of zeros (scale 0)
        v = [np.zeros(n, np.float32) for _ in range(rounds)]
        for x in v:
            x[rng.integers(0, n, max(1, n // 50))] = rng.standard_normal(max(1, n // 50))
        return v
    return [(rng.standard_normal(n) * np.exp(rng.uniform(-30, 30, n))).astype(np.float32) for _ in range(rounds)]


CASES = [(n, kind, density) for n in (1, 7, 300, 1000, 31786) for kind in ("normal", "ties", "sparse", "wide")
         for density in (0.001, 0.01, 0.2, 0.9)]


def assert_same_verdicts(bundled, ops: list[dict], expected: set[str]) -> None:
    """Both twins answer every op alike, and among their verdicts are at least the `expected` ones (so the hostile
    inputs really reached each check)."""
    py, ts = twin.run_py(ops), twin.run_ts(bundled, ops)
    for op, a, b in zip(ops, py, ts):
        assert a == b, op
    verdicts = {r.get("error", "ok") for r in py}
    assert expected <= verdicts, verdicts


def test_error_feedback_uploads_are_byte_identical(bundled):
    rng = np.random.default_rng(1)
    ops = []
    for n, kind, density in CASES:
        grads = [twin.b64(g) for g in _vectors(rng, n, 3, kind)]
        for q in (False, True):
            ops.append({"op": "topk_ef", "length": n, "k": topk.count_for(density, n), "q": q, "grads": grads})
    py, ts = twin.run_py(ops), twin.run_ts(bundled, ops)
    for op, a, b in zip(ops, py, ts):
        assert a == b, (op["length"], op["k"], op["q"])
    codings = {__import__("base64").b64decode(p)[4] for r in py for p in r["payloads"]}
    assert codings == {0, 1}, "both index codings are exercised"


def test_shadow_deltas_are_byte_identical(bundled):
    rng = np.random.default_rng(2)
    ops = []
    for n, kind, _ in CASES[::4]:
        init = twin.b64(rng.standard_normal(n).astype(np.float32))
        params = [twin.b64(np.cumsum(np.stack(_vectors(rng, n, 4, kind)), axis=0)[i]) for i in range(4)]
        for bits in (8, 4):
            ops.append({"op": "shadow", "init": init, "params": params, "bits": bits})
    assert twin.run_py(ops) == twin.run_ts(bundled, ops)


def test_deflated_shadow_deltas_decode_to_the_same_shadow(bundled):
    """delta_q6z: the master's compressed frames, applied round after round by both decoders, give one shadow."""
    rng = np.random.default_rng(5)
    ops, shadows = [], []
    for n, kind, _ in CASES[::4]:
        init = rng.standard_normal(n).astype(np.float32)
        sh = delta.Shadow(init)
        params = np.cumsum(np.stack(_vectors(rng, n, 4, kind)), axis=0)
        payloads = [twin.b64(sh.advance(p, 6)) for p in params]
        shadows.append(twin.b64(sh.values))
        ops.append({"op": "shadow_apply", "init": twin.b64(init), "payloads": payloads, "bits": 6})
    assert twin.run_py(ops) == twin.run_ts(bundled, ops) == shadows


def _streams(raw: bytes):
    """The same bytes in every block type zlib writes: stored, fixed and dynamic Huffman, run-length."""
    for level, strategy in ((0, zlib.Z_DEFAULT_STRATEGY), (6, zlib.Z_FIXED), (6, zlib.Z_DEFAULT_STRATEGY),
                            (9, zlib.Z_HUFFMAN_ONLY), (6, zlib.Z_RLE), (1, zlib.Z_DEFAULT_STRATEGY)):
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
        yield c.compress(raw) + c.flush()


def test_hostile_deflate_streams_get_the_same_verdict_from_both(bundled):
    """Every block type, bit flips, cuts, trailing bytes, and zip bombs (far more output than the frame allows):
    inflated to the same shadow change or refused with the same code."""
    rng = np.random.default_rng(6)
    ops = []
    for n in (5, 300, 3000):
        sh = delta.Shadow(np.zeros(n, np.float32))
        raw = zlib.decompress(sh.advance(np.round(rng.standard_normal(n) * 3).astype(np.float32), 6), -15)
        for stream in _streams(raw):
            for m in _mutations(rng, stream, 40):
                ops.append({"op": "delta_decode", "payload": twin.b64(m), "length": n, "bits": 6})
        size = len(raw)
        for bomb in (bytes(size + 1), bytes(100 * size), raw + b"\0", raw[:-1]):
            ops.append({"op": "delta_decode", "payload": twin.b64(zlib.compress(bomb, 9, -15)), "length": n, "bits": 6})
        ops.append({"op": "delta_decode", "payload": twin.b64(rng.bytes(60)), "length": n, "bits": 6})
    assert_same_verdicts(bundled, ops, {"ok", "CODEC_LENGTH", "CODEC_MALFORMED", "CODEC_BAD_CODE"})


def test_warmup_densities_give_the_same_counts(bundled):
    ops = [{"op": "count", "length": n, "density": d, "warmup": w, "rounds": list(range(0, 40))}
           for n in (1, 999, 31786, 455000) for d in (0.001, 0.01, 0.3) for w in (0, 1, 7, 20)]
    assert twin.run_py(ops) == twin.run_ts(bundled, ops)


def _mutations(rng, payload: bytes, count: int):
    yield payload
    for _ in range(count):
        b = bytearray(payload)
        how = rng.integers(0, 4)
        if how == 0 and b:
            b[rng.integers(0, len(b))] ^= 1 << int(rng.integers(0, 8))
        elif how == 1 and b:
            b = b[: rng.integers(0, len(b))]
        elif how == 2:
            b += bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
        elif b:
            at = int(rng.integers(0, len(b)))
            b[at:at + 4] = bytes(rng.integers(0, 256, 4, dtype=np.uint8))
        yield bytes(b)


def test_hostile_payloads_get_the_same_verdict_from_both(bundled):
    rng = np.random.default_rng(3)
    ops = []
    for n in (5, 64, 1000):
        g = rng.standard_normal(n).astype(np.float32)
        for q in (False, True):
            for density in (0.02, 0.5):
                k = topk.count_for(density, n)
                payload, _, _ = topk.encode(g, k, q)
                for m in _mutations(rng, payload, 60):
                    ops.append({"op": "topk_decode", "payload": twin.b64(m), "length": n, "max": k, "q": q})
        for bits in (8, 4, 6):
            payload, _ = delta.encode(g, bits)
            for m in _mutations(rng, payload, 60):
                ops.append({"op": "delta_decode", "payload": twin.b64(m), "length": n, "bits": bits})
    assert_same_verdicts(bundled, ops, {"ok", "CODEC_LENGTH", "CODEC_MALFORMED", "CODEC_BAD_SCALE"})


def test_trainer_uplinks_send_the_same_kinds_and_bytes_round_after_round(bundled):
    rng = np.random.default_rng(4)
    ops = []
    for n in (1, 40, 5000):
        grads = [twin.b64(rng.standard_normal(n).astype(np.float32)) for _ in range(6)]
        for codec_name, density, warmup in (("topk", 0.01, 4), ("topk_q8", 0.05, 0), ("topk_q8", 0.97, 0)):
            config = {"upload_codec": codec_name, "topk_density": density, "topk_warmup_rounds": warmup}
            ops.append({"op": "uplink", "config": config, "length": n, "grads": grads})
    py, ts = twin.run_py(ops), twin.run_ts(bundled, ops)
    assert py == ts
    kinds = {kind for result in py for kind, _ in result}
    assert kinds == {0, 1, 2}, kinds  # a density near 1 is sent dense: never larger than float32
