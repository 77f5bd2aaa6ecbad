// Per-kernel profile of one training step (forward and backward by kernel and by layer type, share of the step).
import * as tf from "@tensorflow/tfjs-core";
import { chooseBackend } from "../compute/backend";
import { GradientComputer } from "../compute/gradients";
import type { LabelledImages } from "../compute/gradients";
import { BENCH_NETWORKS } from "./networks";

type Params = Record<string, string>;
interface Row { phase: "forward" | "backward"; name: string; ms: number; share: number }

// The layer a kernel works for, from its name and the rank of its first input: every conv layer here is
// 4-D (NHWC) and the dense layer 2-D, so an element-wise kernel's rank tells whose it is.
function layerType(name: string, rank: number): string {
  if (/^(Conv2D|FusedConv2D|Conv2DBackpropInput|Conv2DBackpropFilter)$/.test(name)) return "conv";
  if (/^(MaxPool|MaxPoolGrad)$/.test(name)) return "maxpool";
  if (/^(BatchMatMul|_FusedMatMul)$/.test(name)) return "dense";
  if (/^(Relu|Step|Multiply|Greater)$/.test(name) && rank === 4) return "conv relu";
  if (/^(Sum|Add|BiasAdd)$/.test(name) && rank === 4) return "conv bias";
  if (/^(Reshape|Identity)$/.test(name)) return "reshape/copy";
  return rank >= 3 ? `other ${name}` : "softmax, loss, dense bias";
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
}

export function syntheticData(count: number, shape: [number, number, number], classes: number, seed: number): LabelledImages {
  const rnd = seeded(seed);
  const images = Uint8Array.from({ length: count * shape[0] * shape[1] * shape[2] }, () => (rnd() < 0.5 ? 0 : Math.floor(rnd() * 256)));
  const labels = Uint8Array.from({ length: count }, () => Math.floor(rnd() * classes));
  return { images, labels, count, shape };
}

/** Milliseconds per training step in each kernel, split at the end of the forward pass (?network=paper|cifar). */
export async function profileStep(p: Params, opts: { wasmThreads?: number } = {}) {
  const choice = await chooseBackend(p.backend || undefined, opts);
  const net = BENCH_NETWORKS[p.network ?? "paper"];
  if (!net) throw new Error(`unknown network '${p.network}'`);
  const bs = Number(p.batch ?? 32);
  const reps = Number(p.reps ?? 10);
  const gc = GradientComputer.fromModel(net.make());
  const data = syntheticData(Math.max(256, bs * 2), net.shape, net.classes, 3);
  gc.computeFor(500, data, bs); // warm-up: operator caches, JIT
  const vars = gc.model.trainableWeights.map((w) => w.read() as tf.Variable);
  const rows = new Map<string, Row>();
  const layers = new Map<string, number>();
  // by kernel and input shapes (which layer's call is slow), the fastest of the repetitions: robust on a busy machine
  const calls = new Map<string, number>();
  let stepMs = 0;
  let wall = 0;
  for (let r = 0; r < reps; r++) {
    const x = tf.div(tf.tensor(data.images.subarray(0, bs * net.shape.reduce((a, b) => a * b)), [bs, ...net.shape], "float32"), 255);
    const y = tf.oneHot(tf.tensor1d(Int32Array.from(data.labels.subarray(0, bs)), "int32"), net.classes);
    let forwardKernels = 0;
    const t0 = performance.now();
    const info = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(() => {
        const prob = gc.model.apply(x, { training: true }) as tf.Tensor;
        const loss = tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(prob, 1e-7, 1 - 1e-7))))) as tf.Scalar;
        // the engine records kernels as they run: everything so far is the forward pass
        forwardKernels = (tf.engine().state as unknown as { activeProfile: { kernels: unknown[] } }).activeProfile.kernels.length;
        return loss;
      }, vars);
      value.dispose();
      Object.values(grads).forEach((g) => g.dispose());
    });
    wall += performance.now() - t0;
    x.dispose();
    y.dispose();
    const thisRep = new Map<string, number>();
    info.kernels.forEach((k, i) => {
      const phase = i < forwardKernels ? "forward" : "backward";
      const ms = (k.kernelTimeMs as number) / reps;
      const key = `${phase} ${k.name}`;
      const row = rows.get(key) ?? { phase, name: k.name, ms: 0, share: 0 };
      row.ms += ms;
      rows.set(key, row);
      const layer = `${phase} ${layerType(k.name, k.inputShapes[0]?.length ?? 0)}`;
      layers.set(layer, (layers.get(layer) ?? 0) + ms);
      const call = `${phase} ${k.name} ${k.inputShapes.map((s) => `[${s}]`).join(" ")}`;
      thisRep.set(call, (thisRep.get(call) ?? 0) + (k.kernelTimeMs as number));
      stepMs += ms;
    });
    for (const [call, ms] of thisRep) calls.set(call, Math.min(calls.get(call) ?? Infinity, ms));
  }
  const kernels = [...rows.values()].sort((a, b) => b.ms - a.ms).map((r) => ({ ...r, share: r.ms / stepMs }));
  const byLayer = [...layers.entries()].sort((a, b) => b[1] - a[1]).map(([name, ms]) => ({ name, ms, share: ms / stepMs }));
  const minStep = [...calls.values()].reduce((a, b) => a + b, 0);
  const byCall = [...calls.entries()].sort((a, b) => b[1] - a[1]).map(([name, ms]) => ({ name, ms, share: ms / minStep }));
  return { backend: choice, network: p.network ?? "paper", batchSize: bs, stepMs, wallMs: wall / reps, kernels, byLayer, byCall };
}
