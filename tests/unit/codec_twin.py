"""Runs the real TypeScript codecs (web/src/codec/, bundled by esbuild, run by Node) on a batch of operations.

Shared by the twin tests: `run_ts(ops)` returns one result per op, in the JSON shape `run_py(ops)`
gives for the Python codecs, so a test compares the two for equality.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

from types import SimpleNamespace

from mlitb.codec import delta, link, topk
from mlitb.errors import MlitbError

WEB = Path(__file__).resolve().parents[2] / "web"
SCRIPT = """
import * as topk from %(topk)s;
import * as delta from %(delta)s;
import * as link from %(link)s;
const b64 = (u8) => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString("base64");
const bytes = (s) => new Uint8Array(Buffer.from(s, "base64"));
const f32 = (s) => { const b = bytes(s); return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)); };
const u8 = (a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
function attempt(fn) {
  try { return { ok: b64(u8(fn())) }; } catch (e) { if (!e.code) throw e; return { error: e.code }; }
}
function run(op) {
  if (op.op === "topk_ef") {
    const ef = new topk.ErrorFeedback(op.length);
    const payloads = op.grads.map((g) => b64(ef.compress(f32(g), op.k, op.q)));
    return { payloads, residual: b64(u8(ef.residual)) };
  }
  if (op.op === "shadow") {
    const sh = new delta.Shadow(f32(op.init));
    const payloads = op.params.map((p) => b64(sh.advance(f32(p), op.bits)));
    return { payloads, values: b64(u8(sh.values)) };
  }
  if (op.op === "uplink") {
    const up = new link.Uplink(op.config, op.length);
    return op.grads.map((g, r) => { const [kind, p] = up.encode(f32(g), r); return [kind, b64(p)]; });
  }
  if (op.op === "topk_decode") return attempt(() => topk.decode(bytes(op.payload), op.length, op.max, op.q));
  if (op.op === "delta_decode") return attempt(() => delta.decode(bytes(op.payload), op.length, op.bits));
  if (op.op === "shadow_apply") { // the master's payloads (q6z is compressed by the master only) applied in order
    const sh = new delta.Shadow(f32(op.init));
    op.payloads.forEach((p) => sh.apply(bytes(p), op.bits));
    return b64(u8(sh.values));
  }
  if (op.op === "count") return op.rounds.map((r) => topk.countFor(topk.densityAt(r, op.density, op.warmup), op.length));
  throw new Error("unknown op " + op.op);
}
const ops = JSON.parse((await import("node:fs")).readFileSync(0, "utf8"));
console.log(JSON.stringify(ops.map(run)));
"""


def available() -> bool:
    return (WEB / "node_modules" / ".bin" / "esbuild").exists() and shutil.which("node") is not None


def bundle(out_dir: Path) -> Path:
    entry = out_dir / "twin.mjs"
    entry.write_text(SCRIPT % {"topk": json.dumps(str(WEB / "src/codec/topk.ts")),
                               "delta": json.dumps(str(WEB / "src/codec/delta.ts")),
                               "link": json.dumps(str(WEB / "src/codec/link.ts"))})
    out = out_dir / "twin.bundle.mjs"
    subprocess.run([str(WEB / "node_modules/.bin/esbuild"), str(entry), "--bundle", "--format=esm", "--platform=node",
                    f"--outfile={out}", "--log-level=warning"], check=True)
    return out


def run_ts(bundled: Path, ops: list[dict]) -> list:
    done = subprocess.run(["node", str(bundled)], input=json.dumps(ops), capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def b64(data: bytes | np.ndarray) -> str:
    return base64.b64encode(data.tobytes() if isinstance(data, np.ndarray) else bytes(data)).decode()


def f32(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").copy()


def _attempt(fn) -> dict:
    try:
        return {"ok": b64(fn().astype("<f4"))}
    except MlitbError as err:
        return {"error": err.code.name}


def run_py(ops: list[dict]) -> list:
    out = []
    for op in ops:
        if op["op"] == "topk_ef":
            ef = topk.ErrorFeedback(op["length"])
            payloads = [b64(ef.compress(f32(g), op["k"], op["q"])) for g in op["grads"]]
            out.append({"payloads": payloads, "residual": b64(ef.residual)})
        elif op["op"] == "shadow":
            sh = delta.Shadow(f32(op["init"]))
            payloads = [b64(sh.advance(f32(p), op["bits"])) for p in op["params"]]
            out.append({"payloads": payloads, "values": b64(sh.values)})
        elif op["op"] == "topk_decode":
            pl = base64.b64decode(op["payload"])
            out.append(_attempt(lambda: topk.decode(pl, op["length"], op["max"], op["q"])))
        elif op["op"] == "delta_decode":
            pl = base64.b64decode(op["payload"])
            out.append(_attempt(lambda: delta.decode(pl, op["length"], op["bits"])))
        elif op["op"] == "shadow_apply":
            sh = delta.Shadow(f32(op["init"]))
            for p in op["payloads"]:
                sh.apply(base64.b64decode(p), op["bits"])
            out.append(b64(sh.values))
        elif op["op"] == "uplink":
            up = link.Uplink(SimpleNamespace(**op["config"]), op["length"])
            out.append([[kind, b64(p)] for kind, p in (up.encode(f32(g), r) for r, g in enumerate(op["grads"]))])
        elif op["op"] == "count":
            out.append([topk.count_for(topk.density_at(r, op["density"], op["warmup"]), op["length"]) for r in op["rounds"]])
    return out
