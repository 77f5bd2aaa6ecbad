// Self-test Web Worker: checks the wasm training kernels against the cpu backend and measures training throughput.
import * as tf from "@tensorflow/tfjs-core";
import { chooseBackend } from "../compute/backend";
import type { BackendOptions } from "../compute/backend";
import { GradientComputer } from "../compute/gradients";
import { restoreStockKernels, setOwnKernelsEnabled } from "../compute/kernels";
import { parityCheck } from "./parity";
import type { LabelledImages } from "../compute/gradients";
import { BENCH_NETWORKS, paperNetwork } from "./networks";
import { compare, gradientChecks, kernelChecks, seeded } from "./checks";
import { profileStep, syntheticData } from "./profile";

type Params = Record<string, string>;

// ?threads=n: wasm threads; ?own=none|simd: without our own wasm kernels, or only their plain-SIMD build.
function threadOption(p: Params): BackendOptions {
  const o: BackendOptions = p.threads === undefined ? {} : { wasmThreads: Number(p.threads) };
  if (p.own === "none") o.ownBuilds = [];
  if (p.own === "simd") o.ownBuilds = ["SIMD"];
  return o;
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

// A long run as the trainer does it: new parameters each round, then gradients for a work time whose last
// sub-batch shrinks to fit (so batch shapes vary), with the live tensors, their bytes and the wasm heap
// recorded per round (?network=paper|cifar&rounds=&ms=).
async function memoryCheck(p: Params) {
  const choice = await chooseBackend(p.backend || undefined);
  const net = BENCH_NETWORKS[p.network ?? "paper"];
  const gc = GradientComputer.fromModel(net.make());
  const data = syntheticData(512, net.shape, net.classes, 5);
  const heap = () => (tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm?.HEAPU8.length ?? 0;
  const rounds: { samples: number; numTensors: number; numBytes: number; heapBytes: number }[] = [];
  const w = gc.getParams();
  for (let r = 0; r < Number(p.rounds ?? 40); r++) {
    gc.setParams(w);
    const g = gc.computeFor(Number(p.ms ?? 100) * (1 + (r % 3) / 2), data);
    for (let i = 0; i < w.length; i++) w[i] -= (0.01 * g.grad[i]) / g.samples;
    const m = tf.memory();
    rounds.push({ samples: g.samples, numTensors: m.numTensors, numBytes: m.numBytes, heapBytes: heap() });
  }
  return { backend: choice, network: p.network ?? "paper", rounds };
}

// Every layer type's gradients on WebGPU against the cpu backend, then a short training throughput; a clean
// skip (with the reason) where this browser exposes no WebGPU adapter. ?software=1 accepts a fallback adapter.
async function webgpuCheck(p: Params) {
  let choice;
  try {
    choice = await chooseBackend("webgpu");
  } catch (e) {
    return { skipped: String((e as Error).message ?? e) };
  }
  if (choice.software && p.software !== "1") return { skipped: choice.detail };
  const checks = [...(await kernelChecks("webgpu")), ...(await gradientChecks("webgpu"))];
  const rates: Record<string, number> = {};
  for (const name of ["paper", "cifar"]) {
    await tf.setBackend("webgpu");
    const net = BENCH_NETWORKS[name];
    const gc = GradientComputer.fromModel(net.make());
    const data = syntheticData(1024, net.shape, net.classes, 3);
    gc.computeFor(1000, data, 32);
    const r = gc.computeFor(Number(p.ms ?? 3000), data, 32);
    rates[name] = (r.samples / r.ms) * 1000;
    gc.model.dispose();
  }
  return { backend: choice, checks, pass: checks.every((c) => c.pass), samplesPerSec: rates };
}

function sumsOfRows(a: Float32Array, k: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.length; i += k) out.push(a.subarray(i, i + k).reduce((s, v) => s + v, 0));
  return out;
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function throughput(p: Params) {
  // ?stock=1 measures TF.js's own wasm kernels (plus the missing Conv2DBackpropFilter) for comparison.
  const stock = p.stock === "1" ? restoreStockKernels() : [];
  const choice = await chooseBackend(p.backend || undefined, threadOption(p));
  const seconds = Number(p.seconds ?? 10);
  const windowMs = Number(p.window ?? 1000);
  const batches = (p.batch ?? "64").split(",").map(Number);
  const net = BENCH_NETWORKS[p.network ?? "paper"];
  if (!net) throw new Error(`unknown network '${p.network}'`);
  const gc = GradientComputer.fromModel(net.make());
  gc.subBatches = 1; // whole batches of the size asked for: the figure is compared with PyTorch at that size
  const data = syntheticData(2048, net.shape, net.classes, 3);
  const results = [];
  for (const bs of batches) {
    gc.computeFor(Math.min(1000, windowMs), data, bs); // warm-up: operator caches, JIT
    // ?own=ab: windows alternate with and without our own wasm kernels (a busy machine slows both alike)
    const ab = p.own === "ab";
    const rates: number[] = [];
    const offRates: number[] = [];
    const tensors = tf.memory().numTensors;
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end) {
      const off = ab && rates.length > offRates.length;
      setOwnKernelsEnabled(!off);
      const r = gc.computeFor(windowMs, data, bs);
      (off ? offRates : rates).push((r.samples / r.ms) * 1000);
    }
    setOwnKernelsEnabled(true);
    results.push({ batchSize: bs, samplesPerSec: median(rates), windows: rates.length, leakedTensors: tf.memory().numTensors - tensors,
      ...(ab ? { withoutOwnSamplesPerSec: median(offRates), pairedRatios: rates.slice(0, offRates.length).map((r, i) => r / offRates[i]) } : {}) });
  }
  return { backend: choice, network: p.network ?? "paper", paramCount: gc.paramCount, windowMs, seconds, results, stockKernels: stock };
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
    // initialises wasm (paths, SIMD) and our own kernels once; ?own=simd checks their plain-SIMD build
    const backend = await chooseBackend("wasm", threadOption(p));
    const checks = [...(await kernelChecks("wasm")), ...(await gradientChecks("wasm"))];
    return { backend, checks, pass: checks.every((c) => c.pass) };
  }
  if (check === "throughput") return throughput(p);
  if (check === "train") return trainCheck(p);
  if (check === "memory") return memoryCheck(p);
  if (check === "webgpu") return webgpuCheck(p);
  if (check === "parity") return parityCheck(p);
  if (check === "artifacts") return artifactsCheck();
  if (check === "profile") return profileStep(p, threadOption(p));
  throw new Error(`unknown check '${check}'`);
}

self.onmessage = async (ev: MessageEvent<Params>) => {
  try {
    self.postMessage({ ok: true, result: await run(ev.data) });
  } catch (e) {
    self.postMessage({ ok: false, error: String((e as Error).stack ?? e) });
  }
};
