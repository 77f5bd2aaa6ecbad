// Trainer Web Worker: downloads its allocated examples once, then every round trains for the
// work time the master gave it and sends back the summed gradient and the sample count.

import { exampleOrder } from "../compute/example_order";
import { Committer, directions, withCommitments } from "../compute/commitments";
import { GradientComputer } from "../compute/gradients";
import * as tf from "@tensorflow/tfjs-core";
import { Downlink, Uplink } from "../codec/link";
import { Kind } from "../codec/index";
import { Frame, MessageType, uint32s } from "../protocol/frames";
import { fetchRange, modelSource, idRuns, WorkerStatus } from "./connection";
import { WorkerSession } from "./session";

const session = new WorkerSession("trainer", onFrame);
const post = (patch: Partial<WorkerStatus>) => session.post(patch);

let computer: GradientComputer | undefined;
let params: Float32Array | undefined;
let data: { images: Uint8Array; labels: Uint8Array; count: number; shape: [number, number, number] } | undefined;
let allocVersion = 0;
let dataBase = ""; // base version of the data set `data` came from (examples are only appended within one)
const CHUNK = 2000; // examples per data request
let position = new Map<number, number>(); // example id -> index in `data` (deterministic rounds name ids)
// parameters: dense frames replace them, shadow deltas advance them; never reset on WELCOME, since a (re)joined
// client's first PARAMS is dense and may arrive before its WELCOME
const downlink = new Downlink();
let uplink: Uplink | undefined; // the project's upload codec and this trainer's error-feedback residual
let inner: tf.Optimizer | undefined; // local SGD: the inner optimizer, its state kept across rounds
let held = new Uint32Array(0); // the allocated ids (sorted, as ALLOC sends them): a WORK seed orders these


// Makes `data` hold exactly the allocated ids: examples already held are kept (a pie-cut or a
// refresh moves few ids), the rest are fetched in small chunks (or taken from the IndexedDB
// cache), and training goes on over what has arrived while the rest download.
async function download(ids: Uint32Array) {
  const version = ++allocVersion;
  const info = session.conn.welcome!.data;
  // examples labelled on the fly are appended: within one base version every held id keeps its content
  const old = info && dataBase === info.base_version && data ? { data, position } : undefined;
  data = undefined;
  position = new Map();
  if (!info) return; // an empty allocation of a project that has no data yet
  dataBase = info.base_version;
  const shape = info.shape;
  const pixels = shape[0] * shape[1] * shape[2];
  const images = new Uint8Array(ids.length * pixels);
  const labels = new Uint8Array(ids.length);
  const missing: number[] = [];
  let offset = 0;
  for (const id of ids) {
    const j = old?.position.get(id);
    if (j === undefined) {
      missing.push(id);
      continue;
    }
    images.set(old!.data.images.subarray(j * pixels, (j + 1) * pixels), offset * pixels);
    labels[offset] = old!.data.labels[j];
    position.set(id, offset++);
  }
  const kept = offset;
  const publish = () => (data = { images: images.subarray(0, offset * pixels), labels: labels.subarray(0, offset), count: offset, shape });
  if (offset) publish();
  post({ state: missing.length ? "downloading" : "idle", allocated: ids.length, downloaded: offset, kept });
  let fromCache = 0;
  for (const [start, count] of idRuns(Uint32Array.from(missing), CHUNK)) {
    const part = await fetchRange(info.train_url, start, count, pixels, session.options.token, info.version);
    if (version !== allocVersion) return; // a newer allocation replaced this one
    images.set(part.images, offset * pixels);
    labels.set(part.labels, offset);
    for (let k = 0; k < count; k++) position.set(start + k, offset + k);
    offset += count;
    fromCache += part.cached ? count : 0;
    publish();
    post({ downloaded: offset, fromCache });
  }
  post({ state: "idle" });
}

async function onFrame(f: Frame) {
  switch (f.type) {
    case MessageType.WELCOME: {
      const w = session.conn.welcome!;
      post({ state: w.data ? "loading" : "waiting for data", clientId: w.client_id, volunteer: w.volunteer ?? null,
        error: undefined });
      if (!computer || computer.paramCount !== w.param_count) // a reconnect keeps the loaded model
        computer = await GradientComputer.fromArtifacts(modelSource(w.model_url, session.options.token));
      if (computer.paramCount !== w.param_count) throw new Error(`model has ${computer.paramCount} parameters, server says ${w.param_count}`);
      // the residual survives a reconnect (it is this trainer's unsent work); a model change resets it (Uplink.encode)
      uplink ??= new Uplink(w, w.param_count);
      inner?.dispose();
      inner = w.algorithm === "local_sgd" ? (w.inner_optimizer === "adam" ? tf.train.adam(w.inner_lr) : tf.train.sgd(w.inner_lr)) : undefined;
      break;
    }
    case MessageType.ALLOC:
      held = uint32s(f).slice();
      download(held).catch((e) => post({ state: "error", error: String(e) }));
      break;
    case MessageType.PARAMS:
      params = downlink.apply(f.kind, new Uint8Array(f.payload), f.round, f.aux, f.count);
      break;
    case MessageType.WORK: {
      if (!computer || !params || !data || data.count === 0) return; // not ready: skip this round
      // A trainer that fell behind skips to the newest round instead of answering late forever,
      // and the time this frame waited in the queue comes off its work time.
      if (f.round < session.conn.newestRound) return;
      if (f.payload.byteLength && position.size === 0) return; // deterministic rounds wait for the whole allocation
      const waited = performance.now() - (session.conn.arrivedAt.get(f) ?? performance.now());
      const workMs = Math.max(1, f.aux - waited);
      computer.setParams(params);
      post({ state: "training", round: f.round, workMs: Math.round(workMs), error: undefined });
      // In deterministic mode the WORK frame names the example ids to use this round (see docs/closure.md).
      const chosen = f.payload.byteLength ? Uint32Array.from(uint32s(f), (id) => position.get(id) ?? data!.count) : null;
      // In an open project the WORK frame's count is a seed: train on the held examples in the order it gives
      // (the master can recompute any result: mlitb/trust/spot_check.py); wait until every held example is here.
      let seeded: Uint32Array | undefined;
      if (!chosen && f.count !== 0) {
        if (position.size !== held.length || held.some((id) => !position.has(id))) return;
        seeded = Uint32Array.from(exampleOrder(f.count, held.length), (k) => position.get(held[k])!);
      }
      const bs = session.conn.welcome!.batch_size;
      // a seeded gradient round commits to each batch of c examples (compute/commitments.ts): the master then
      // recomputes one batch to check the result, not all of it
      const commit = seeded && !inner && uplink!.kind === Kind.DENSE_F32
        ? { directions: directions(f.count, computer.paramCount), committer: new Committer(Math.max(1, Math.min(bs, data.count))) }
        : undefined;
      const r = chosen ? computer.computeOn(data, chosen, bs)
        : inner ? computer.trainFor(workMs, data, bs, inner) : computer.computeFor(workMs, data, bs, seeded, commit);
      const t0 = performance.now();
      let [kind, payload] = uplink!.encode(r.grad, f.round);
      if (commit && kind === Kind.DENSE_F32) [kind, payload] = [Kind.DENSE_F32_COMMITTED, withCommitments(payload, commit.committer.commitment())];
      const codecMs = performance.now() - t0;
      session.conn.send(MessageType.GRADIENT, { round: f.round, count: r.samples, aux: r.ms, value: r.lossSum, payload, kind });
      post({ state: "idle", samples: r.samples, computeMs: Math.round(r.ms), samplesPerS: Math.round((r.samples / r.ms) * 1000),
        loss: r.lossSum / r.samples, codecMs: Math.round(codecMs * 10) / 10, bytesUp: 24 + payload.byteLength });
      break;
    }
  }
}
