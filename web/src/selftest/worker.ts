// Self-test Web Worker: checks the wasm training kernels against the cpu backend and measures training throughput.
import * as tf from "@tensorflow/tfjs-core";
import * as tfl from "@tensorflow/tfjs-layers";
import { chooseBackend } from "../compute/backend";
import { GradientComputer } from "../compute/gradients";
import { restoreStockKernels } from "../compute/kernels";
import { parityCheck } from "./parity";
import type { LabelledImages } from "../compute/gradients";

type Params = Record<string, string>;
type Shape3 = [number, number, number];
interface Compared { name: string; maxAbs: number; scale: number; maxRel: number; pass: boolean }

// float32 tolerance: sums of thousands of products in a different order differ by ~1e-6 relative.
const RTOL = 1e-4;
const ATOL = 1e-5;

function threadOption(p: Params): { wasmThreads?: number } {
  return p.threads === undefined ? {} : { wasmThreads: Number(p.threads) };
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
}

function compare(name: string, ref: ArrayLike<number>, got: ArrayLike<number>): Compared {
  if (ref.length !== got.length) return { name, maxAbs: Infinity, scale: 0, maxRel: Infinity, pass: false };
  let maxAbs = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(ref[i] - got[i]);
    maxAbs = d > maxAbs || Number.isNaN(d) ? d : maxAbs;
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  const pass = maxAbs <= ATOL + RTOL * scale;
  return { name, maxAbs, scale, maxRel: scale ? maxAbs / scale : maxAbs, pass };
}

// Runs the same kernel on cpu and wasm from identical inputs.
async function onBoth(make: () => tf.Tensor): Promise<[Float32Array, Float32Array]> {
  const out: Float32Array[] = [];
  for (const b of ["cpu", "wasm"]) {
    await tf.setBackend(b);
    const t = make();
    out.push(t.dataSync() as Float32Array);
    t.dispose();
  }
  return [out[0], out[1]];
}

function randomArray(n: number, rnd: () => number, ints = false): Float32Array {
  return Float32Array.from({ length: n }, () => (ints ? Math.max(0, Math.round(rnd() * 4 - 1.5)) : rnd() * 2 - 1));
}

async function kernelChecks(): Promise<Compared[]> {
  const rnd = seeded(7);
  const res: Compared[] = [];
  const e = () => tf.engine();
  // [x shape, filter shape, stride, pad]
  const convs: [number[], number[], number | [number, number], string][] = [
    [[8, 28, 28, 1], [5, 5, 1, 16], 1, "same"],
    [[3, 11, 13, 3], [3, 3, 3, 8], 2, "valid"],
    [[3, 11, 13, 3], [3, 3, 3, 8], 2, "same"],
    [[2, 9, 9, 4], [4, 4, 4, 6], 3, "valid"],
    [[2, 8, 10, 5], [3, 2, 5, 7], [2, 1], "same"],
    [[4, 6, 6, 8], [1, 1, 8, 3], 1, "valid"],
  ];
  for (const [xs, fs, s, pad] of convs) {
    const xv = randomArray(xs.reduce((a, b) => a * b), rnd);
    const oh = pad === "same" ? Math.ceil(xs[1] / (Array.isArray(s) ? s[0] : s)) : Math.floor((xs[1] - fs[0]) / (Array.isArray(s) ? s[0] : s)) + 1;
    const ow = pad === "same" ? Math.ceil(xs[2] / (Array.isArray(s) ? s[1] : s)) : Math.floor((xs[2] - fs[1]) / (Array.isArray(s) ? s[1] : s)) + 1;
    const dyShape = [xs[0], oh, ow, fs[3]];
    const dyv = randomArray(dyShape.reduce((a, b) => a * b), rnd);
    const [a, b] = await onBoth(() => e().runKernel("Conv2DBackpropFilter",
      { x: tf.tensor(xv, xs), dy: tf.tensor(dyv, dyShape) },
      { strides: s, pad, dataFormat: "NHWC", filterShape: fs } as unknown as tf.NamedAttrMap) as tf.Tensor);
    res.push(compare(`Conv2DBackpropFilter x${JSON.stringify(xs)} f${JSON.stringify(fs)} s${JSON.stringify(s)} ${pad}`, a, b));
  }
  // Max-pool gradients: small integers give many tied maxima (the first must win, as on cpu and in TF);
  // values in [-1, 1] give all-negative windows.
  const pools: [number[], number, number, string, boolean][] = [
    [[8, 28, 28, 16], 2, 2, "valid", true],
    [[8, 28, 28, 16], 2, 2, "valid", false],
    [[2, 9, 9, 3], 3, 3, "same", true],
    [[2, 7, 7, 2], 2, 2, "valid", true],
    [[2, 7, 7, 2], 2, 2, "valid", false],
    [[2, 8, 6, 5], 3, 1, "same", true],
    [[2, 8, 6, 5], 3, 2, "same", false],
  ];
  for (const [xs, f, s, pad, ties] of pools) {
    const xv = randomArray(xs.reduce((a, b) => a * b), rnd, ties);
    const [a, b] = await onBoth(() => tf.tidy(() => {
      const x = tf.tensor4d(xv, xs as [number, number, number, number]);
      const y = tf.maxPool(x, f, s, pad as "valid");
      const dy = tf.tensor(randomArray(y.size, seeded(3)), y.shape);
      return e().runKernel("MaxPoolGrad", { dy, input: x, output: y }, { filterSize: f, strides: s, pad }) as tf.Tensor;
    }));
    res.push(compare(`MaxPoolGrad x${JSON.stringify(xs)} ${f}/${s} ${pad} ${ties ? "ties" : "signed"}`, a, b));
  }
  for (const [ta, tb] of [[true, false], [false, true], [true, true]]) {
    const av = randomArray(37 * 23, rnd);
    const bv = randomArray(23 * 11, rnd);
    const [a, b] = await onBoth(() => tf.matMul(tf.tensor(av, ta ? [23, 37] : [37, 23]), tf.tensor(bv, tb ? [11, 23] : [23, 11]), ta, tb));
    res.push(compare(`BatchMatMul transposeA=${ta} transposeB=${tb}`, a, b));
  }
  const sv = randomArray(16 * 28 * 28 * 16, rnd);
  const [sa, sb] = await onBoth(() => tf.sum(tf.tensor(sv, [16, 28, 28, 16]), [0, 1, 2]));
  res.push(compare("Sum over leading axes", sa, sb));
  return res;
}

export function paperNetwork(classes = 10): tfl.LayersModel {
  return tfl.sequential({
    layers: [
      tfl.layers.conv2d({ inputShape: [28, 28, 1], kernelSize: 5, filters: 16, strides: 1, padding: "same", activation: "relu" }),
      tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: classes, activation: "softmax" }),
    ],
  });
}

// Networks whose gradients are compared: the paper's, and convolutions the paper's does not exercise.
const NETWORKS: Record<string, { shape: Shape3; make: () => tfl.LayersModel }> = {
  paper: { shape: [28, 28, 1], make: () => paperNetwork() },
  "conv k3 s2 valid, 3->8->4 channels, pool 3/3 same": {
    shape: [13, 13, 3],
    make: () => tfl.sequential({ layers: [
      tfl.layers.conv2d({ inputShape: [13, 13, 3], kernelSize: 3, filters: 8, strides: 2, padding: "valid", activation: "relu" }),
      tfl.layers.conv2d({ kernelSize: 3, filters: 4, strides: 1, padding: "same", activation: "relu" }),
      tfl.layers.maxPooling2d({ poolSize: 3, strides: 3, padding: "same" }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 5, activation: "softmax" }),
    ] }),
  },
  "conv k4 s2 same, 2->6 channels, dense hidden": {
    shape: [12, 10, 2],
    make: () => tfl.sequential({ layers: [
      tfl.layers.conv2d({ inputShape: [12, 10, 2], kernelSize: 4, filters: 6, strides: 2, padding: "same", activation: "relu" }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 12, activation: "relu" }),
      tfl.layers.dense({ units: 3, activation: "softmax" }),
    ] }),
  },
};

function syntheticData(count: number, shape: Shape3, classes: number, seed: number): LabelledImages {
  const rnd = seeded(seed);
  const images = Uint8Array.from({ length: count * shape[0] * shape[1] * shape[2] }, () => (rnd() < 0.5 ? 0 : Math.floor(rnd() * 256)));
  const labels = Uint8Array.from({ length: count }, () => Math.floor(rnd() * classes));
  return { images, labels, count, shape };
}

async function gradientChecks(): Promise<Compared[]> {
  const res: Compared[] = [];
  for (const [name, net] of Object.entries(NETWORKS)) {
    let params: Float32Array | null = null;
    const grads: Float32Array[] = [];
    const losses: number[] = [];
    for (const b of ["cpu", "wasm"]) {
      await tf.setBackend(b);
      const gc = GradientComputer.fromModel(net.make());
      if (params) gc.setParams(params);
      else params = gc.getParams();
      const data = syntheticData(16, net.shape, gc.numClasses, 11);
      // One mini-batch over the whole set: the summed gradient does not depend on the shuffled order.
      const r = gc.computeFor(0, data, data.count);
      grads.push(r.grad);
      losses.push(r.lossSum);
      gc.model.dispose();
    }
    res.push(compare(`gradient: ${name}`, grads[0], grads[1]));
    res.push(compare(`loss: ${name}`, [losses[0]], [losses[1]]));
  }
  return res;
}

// A learnable task: a bright 8x8 square in one of `classes` positions; the label is the position.
function squares(count: number, classes: number, seed: number): LabelledImages {
  const rnd = seeded(seed);
  const images = new Uint8Array(count * 784);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const k = Math.floor(rnd() * classes);
    labels[i] = k;
    const r0 = 2 + 8 * Math.floor(k / 3);
    const c0 = 2 + 8 * (k % 3);
    for (let r = 0; r < 8; r++) for (let c = 0; c < 8; c++) images[i * 784 + (r0 + r) * 28 + c0 + c] = 150 + Math.floor(rnd() * 100);
  }
  return { images, labels, count, shape: [28, 28, 1] };
}

// Plain SGD on the summed gradients, as the master would apply them; records loss, error and live tensors.
async function trainCheck(p: Params) {
  const choice = await chooseBackend(p.backend || undefined);
  const gc = GradientComputer.fromModel(paperNetwork(9));
  const train = squares(512, 9, 5);
  const test = squares(256, 9, 6);
  const before = gc.evaluate(test);
  const rounds: { samples: number; meanLoss: number; numTensors: number }[] = [];
  const lr = Number(p.lr ?? 0.5);
  for (let r = 0; r < Number(p.rounds ?? 8); r++) {
    const g = gc.computeFor(Number(p.ms ?? 200), train);
    const w = gc.getParams();
    for (let i = 0; i < w.length; i++) w[i] -= (lr * g.grad[i]) / g.samples;
    gc.setParams(w);
    rounds.push({ samples: g.samples, meanLoss: g.lossSum / g.samples, numTensors: tf.memory().numTensors });
  }
  const after = gc.evaluate(test);
  const probs = gc.predict(test.images, 4, test.shape);
  return { backend: choice, before, after, rounds, predictShape: [4, gc.numClasses], predictSums: sumsOfRows(probs, gc.numClasses) };
}

function sumsOfRows(a: Float32Array, k: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.length; i += k) out.push(a.subarray(i, i + k).reduce((s, v) => s + v, 0));
  return out;
}

async function throughput(p: Params) {
  // ?stock=1 measures TF.js's own wasm kernels (plus the missing Conv2DBackpropFilter) for comparison.
  const stock = p.stock === "1" ? restoreStockKernels() : [];
  const choice = await chooseBackend(p.backend || undefined, threadOption(p));
  const seconds = Number(p.seconds ?? 10);
  const windowMs = Number(p.window ?? 1000);
  const batches = (p.batch ?? "64").split(",").map(Number);
  const gc = GradientComputer.fromModel(paperNetwork());
  const data = syntheticData(4096, [28, 28, 1], 10, 3);
  const results = [];
  for (const bs of batches) {
    gc.computeFor(Math.min(1000, windowMs), data, bs); // warm-up: operator caches, JIT
    const rates: number[] = [];
    const tensors = tf.memory().numTensors;
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end) {
      const r = gc.computeFor(windowMs, data, bs);
      rates.push((r.samples / r.ms) * 1000);
    }
    rates.sort((a, b) => a - b);
    results.push({ batchSize: bs, samplesPerSec: rates[Math.floor(rates.length / 2)], windows: rates.length, leakedTensors: tf.memory().numTensors - tensors });
  }
  return { backend: choice, windowMs, seconds, results, stockKernels: stock };
}

// Milliseconds per training step spent in each kernel (nested kernels count inside their caller).
async function profile(p: Params) {
  const choice = await chooseBackend(p.backend || undefined);
  const bs = Number(p.batch ?? 32);
  const reps = Number(p.reps ?? 20);
  const gc = GradientComputer.fromModel(paperNetwork());
  const data = syntheticData(1024, [28, 28, 1], 10, 3);
  gc.computeFor(1000, data, bs);
  const perKernel: Record<string, number> = {};
  let wall = 0;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    const info = await tf.profile(() => { gc.computeFor(0, data, bs); });
    wall += performance.now() - t0;
    for (const k of info.kernels) perKernel[k.name] = (perKernel[k.name] ?? 0) + (k.kernelTimeMs as number) / reps;
  }
  const kernels = Object.entries(perKernel).sort((a, b) => b[1] - a[1]).map(([name, ms]) => ({ name, ms }));
  return { backend: choice, batchSize: bs, stepMs: wall / reps, kernels };
}

async function artifactsCheck() {
  await chooseBackend("wasm");
  const model = paperNetwork();
  let saved: tf.io.ModelArtifacts | null = null;
  await model.save(tf.io.withSaveHandler(async (a) => ((saved = a), { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } })));
  const gc = await GradientComputer.fromArtifacts(tf.io.fromMemory(saved as unknown as tf.io.ModelArtifacts));
  const same = compare("artifacts round trip", GradientComputer.fromModel(model).getParams(), gc.getParams());
  let wrongLength = "";
  try {
    gc.setParams(new Float32Array(gc.paramCount + 1));
  } catch (e) {
    wrongLength = (e as Error).message;
  }
  return { paramCount: gc.paramCount, numClasses: gc.numClasses, same, wrongLength };
}

async function run(p: Params) {
  const check = p.check ?? "kernels";
  if (check === "backend") {
    const backend = await chooseBackend(p.backend || undefined, threadOption(p));
    return { backend, crossOriginIsolated: self.crossOriginIsolated };
  }
  if (check === "kernels") {
    await chooseBackend("wasm"); // initialises wasm (paths, SIMD) once
    const checks = [...(await kernelChecks()), ...(await gradientChecks())];
    return { checks, pass: checks.every((c) => c.pass) };
  }
  if (check === "throughput") return throughput(p);
  if (check === "train") return trainCheck(p);
  if (check === "parity") return parityCheck(p);
  if (check === "artifacts") return artifactsCheck();
  if (check === "profile") return profile(p);
  throw new Error(`unknown check '${check}'`);
}

self.onmessage = async (ev: MessageEvent<Params>) => {
  try {
    self.postMessage({ ok: true, result: await run(ev.data) });
  } catch (e) {
    self.postMessage({ ok: false, error: String((e as Error).stack ?? e) });
  }
};
