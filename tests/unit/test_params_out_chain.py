"""The master's PARAMS frames under a download codec (mlitb/master/params_out.py): a client that skips versions
is sent the chain of deltas since the version it holds, and its parameters stay the master's shadow bit for bit;
further behind than the ring, or new, it gets the dense shadow; holding the newest shadow, it gets nothing."""

from __future__ import annotations

import numpy as np
import pytest

from mlitb.codec.link import DELTA_Q4, DELTA_Q8, DENSE_F32, Downlink
from mlitb.master.params_out import RING, ParamsOut
from mlitb.master.project import Hyper
from mlitb.protocol import decode

P = 1000


def receive(link: Downlink, frames: list[bytes]) -> list[int]:
    kinds = []
    for data in frames:
        f = decode(data, 1 << 24)
        link.apply(f.kind, f.payload, f.round, f.aux, f.count)
        kinds.append(f.kind)
    return kinds


@pytest.mark.parametrize("codec,kind", [("delta_q8", DELTA_Q8), ("delta_q4", DELTA_Q4)])
def test_a_client_skipping_versions_gets_the_chain_and_holds_the_masters_shadow_bit_for_bit(codec, kind):
    out = ParamsOut(Hyper(download_codec=codec, mode="async"))
    rng = np.random.default_rng(0)
    params = rng.normal(size=P).astype(np.float32)
    every, skipper, late = Downlink(), Downlink(), Downlink()
    seen, chains = {}, []
    sizes = {}  # payload kind -> bytes of its frame
    # the versions the skipper is dispatched at: gaps of 1 to RING + 3 versions
    skipper_at = {0, 1, 3, 4, 7, 12, 19, 19 + RING + 1, 19 + RING + 2}
    for version in range(max(skipper_at) + 1):
        params = params + rng.normal(scale=0.01, size=P).astype(np.float32)
        shadow = out.start(1, version, params).copy()
        frames = out.frames_for(1)
        seen[version] = receive(every, frames)
        sizes[seen[version][0]] = len(frames[0])
        np.testing.assert_array_equal(every.params, shadow)
        if version in skipper_at:
            gap = version - skipper.round
            kinds = receive(skipper, out.frames_for(2))
            np.testing.assert_array_equal(skipper.params, shadow)
            assert skipper.round == version == out.version
            # one delta per version skipped, in order, while the ring holds them and they cost less than dense
            if version and gap <= RING and gap * sizes[kind] < sizes[DENSE_F32]:
                assert kinds == [kind] * gap
                chains.append(gap)
            else:  # new, or too far behind: the dense shadow
                assert kinds == [DENSE_F32]
            assert out.frames_for(2) == []  # it holds the newest shadow: nothing to send
        if version == 10:
            assert receive(late, out.frames_for(3)) == [DENSE_F32]  # a client that just joined
            np.testing.assert_array_equal(late.params, shadow)
    assert seen[0] == [DENSE_F32] and all(k == [kind] for v, k in seen.items() if v)
    assert max(chains) >= 3 and len(chains) >= 3  # chains of several deltas were sent, not just single ones


def test_a_reset_clears_the_ring_and_a_chain_no_smaller_than_dense_is_not_sent():
    out = ParamsOut(Hyper(download_codec="delta_q8", mode="async"))
    params = np.zeros(P, np.float32)
    a = Downlink()
    out.start(1, 0, params)
    receive(a, out.frames_for(1))
    for version in range(1, 6):
        out.start(1, version, params + version)
    # five q8 deltas (P bytes and scales each) cost more than one dense frame (4 P bytes): dense instead
    assert receive(a, out.frames_for(1)) == [DENSE_F32] and a.round == 5
    out.start(1, 6, params + 6)
    out.reset()  # the parameters were replaced: the shadow restarts dense, no delta leads to it
    out.start(1, 7, params + 7)
    assert receive(a, out.frames_for(1)) == [DENSE_F32] and a.round == 7
    np.testing.assert_array_equal(a.params, params + 7)


def test_without_a_download_codec_every_client_gets_the_dense_parameters():
    out = ParamsOut(Hyper())
    out.start(1, 0, np.ones(P, np.float32))
    assert not out.coded and receive(Downlink(), out.frames_for(1)) == [DENSE_F32]
    assert receive(Downlink(), out.frames_for(1)) == [DENSE_F32]  # even when it has it: the sync broadcast's frame


DOWNLINK_SCRIPT = """
import { Downlink } from %s;
const frames = JSON.parse((await import("node:fs")).readFileSync(0, "utf8"));
const link = new Downlink();
const held = frames.map((group) => {
  for (const [kind, payload, round, aux, count] of group)
    link.apply(kind, new Uint8Array(Buffer.from(payload, "base64")), round, aux, count);
  const p = link.params;
  return [link.round, Buffer.from(p.buffer, p.byteOffset, p.byteLength).toString("base64")];
});
console.log(JSON.stringify(held));
"""


def test_the_browser_downlink_applies_the_chains_to_the_masters_shadow_bit_for_bit(tmp_path):
    """web/src/codec/link.ts (run in Node) given the frames a trainer skipping versions is sent."""
    import base64
    import json
    import subprocess

    from tests.unit import codec_twin

    if not codec_twin.available():
        pytest.skip("needs Node and web/node_modules (npm --prefix web install)")
    entry, bundled = tmp_path / "downlink.mjs", tmp_path / "downlink.bundle.mjs"
    entry.write_text(DOWNLINK_SCRIPT % json.dumps(str(codec_twin.WEB / "src/codec/link.ts")))
    subprocess.run([str(codec_twin.WEB / "node_modules/.bin/esbuild"), str(entry), "--bundle", "--format=esm",
                    "--platform=node", f"--outfile={bundled}", "--log-level=warning"], check=True)
    out = ParamsOut(Hyper(download_codec="delta_q4", mode="async"))
    rng = np.random.default_rng(1)
    params, groups, shadows = rng.normal(size=P).astype(np.float32), [], []
    for version in range(16):
        params = params + rng.normal(scale=0.01, size=P).astype(np.float32)
        shadow = out.start(1, version, params).copy()
        if version in (0, 2, 3, 7, 8, 15):  # gaps of 2, 1, 4, 1 and 7 versions
            group = [decode(data, 1 << 24) for data in out.frames_for(7)]
            groups.append([[f.kind, base64.b64encode(f.payload).decode(), f.round, f.aux, f.count] for f in group])
            shadows.append((version, shadow))
    assert [len(g) for g in groups] == [1, 2, 1, 4, 1, 7] and all(f[0] == DELTA_Q4 for g in groups[1:] for f in g)
    done = subprocess.run(["node", str(bundled)], input=json.dumps(groups), capture_output=True, text=True, check=True)
    for (round_, values), (version, shadow) in zip(json.loads(done.stdout), shadows):
        assert round_ == version
        np.testing.assert_array_equal(np.frombuffer(base64.b64decode(values), dtype="<f4"), shadow)
