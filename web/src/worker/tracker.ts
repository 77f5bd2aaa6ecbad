// Tracker Web Worker: receives the parameters every round and measures the classification
// error on the project's test set whenever it is free, reporting it to the master.

import { GradientComputer } from "../compute/gradients";
import { Downlink } from "../codec/link";
import { Frame, MessageType } from "../protocol/frames";
import { fetchRange, modelSource, WorkerStatus } from "./connection";
import { WorkerSession } from "./session";

const MAX_TEST = 10000;
// Evaluating 10,000 images takes a second or more of CPU that trainers on the same machine
// would otherwise use, so a tracker evaluates at most this often.
const MIN_EVAL_INTERVAL_MS = 4000;
let lastEval = -Infinity;
const session = new WorkerSession("tracker", onFrame);
const post = (patch: Partial<WorkerStatus>) => session.post(patch);

let computer: GradientComputer | undefined;
let test: { images: Uint8Array; labels: Uint8Array; count: number; shape: [number, number, number] } | undefined;
let latest: { round: number; params: Float32Array } | undefined;
let busy = false;
const downlink = new Downlink(); // the parameters as dense frames replace and shadow deltas advance them


async function prepare() {
  const w = session.conn.welcome!;
  if (!w.data?.test_url) return post({ state: "waiting for a test set", clientId: w.client_id });
  post({ state: "loading", clientId: w.client_id, error: undefined });
  if (!computer || computer.paramCount !== w.param_count)
    computer = await GradientComputer.fromArtifacts(modelSource(w.model_url, session.options.token));
  if (test && test.count === Math.min(MAX_TEST, w.data.test_count)) return evaluateLatest(); // a reconnect keeps it
  const shape = w.data.shape;
  const pixels = shape[0] * shape[1] * shape[2];
  const count = Math.min(MAX_TEST, w.data.test_count);
  post({ state: "downloading", allocated: count });
  const part = await fetchRange(w.data.test_url, 0, count, pixels, session.options.token, w.data.version);
  test = { images: part.images, labels: part.labels, count, shape };
  post({ state: "idle", downloaded: count });
  evaluateLatest();
}

// Evaluates the newest parameters; rounds that arrive meanwhile are skipped, not queued.
async function evaluateLatest() {
  if (busy || !latest || !computer || !test) return;
  // parameters of a grown network (a class was added) wait until the WELCOME's model has loaded
  if (latest.params.length !== computer.paramCount) return;
  const wait = lastEval + MIN_EVAL_INTERVAL_MS - performance.now();
  if (wait > 0) {
    busy = true;
    setTimeout(() => { busy = false; evaluateLatest(); }, wait);
    return;
  }
  busy = true;
  lastEval = performance.now();
  const { round, params } = latest;
  latest = undefined;
  post({ state: "evaluating", round });
  const t0 = performance.now();
  computer.setParams(params);
  const r = computer.evaluate(test);
  const ms = performance.now() - t0;
  session.conn.send(MessageType.EVAL, { round, count: test.count, aux: ms, value: r.error });
  post({ state: "idle", testError: r.error, loss: r.loss, computeMs: Math.round(ms) });
  busy = false;
  setTimeout(evaluateLatest, 0);
}

async function onFrame(f: Frame) {
  // (a WELCOME does not reset the downlink: a (re)joined client's first PARAMS is dense, and it may come first)
  if (f.type === MessageType.WELCOME) prepare().catch((e) => post({ state: "error", error: String(e) }));
  if (f.type === MessageType.PARAMS) {
    latest = { round: f.round, params: downlink.apply(f.kind, new Uint8Array(f.payload), f.round, f.aux, f.count).slice() };
    evaluateLatest();
  }
}
