// Training kernels and whole-network gradients of one backend (wasm or webgpu) checked against the cpu backend.
import * as tf from "@tensorflow/tfjs-core";
import * as tfl from "@tensorflow/tfjs-layers";
import { GradientComputer } from "../compute/gradients";
import { cifarNetwork, paperNetwork } from "./networks";
import { syntheticData } from "./profile";

type Shape3 = [number, number, number];
export interface Compared { name: string; maxAbs: number; scale: number; maxRel: number; pass: boolean }

// float32 tolerance: sums of thousands of products in a different order differ by ~1e-6 relative.
const RTOL = 1e-4;
const ATOL = 1e-5;

export function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
}

export function compare(name: string, ref: ArrayLike<number>, got: ArrayLike<number>): Compared {
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

// Runs the same kernel on cpu and the target backend from identical inputs.
async function onBoth(target: string, make: () => tf.Tensor): Promise<[Float32Array, Float32Array]> {
  const out: Float32Array[] = [];
  for (const b of ["cpu", target]) {
    await tf.setBackend(b);
    const t = make();
    out.push((await t.data()) as Float32Array);
    t.dispose();
  }
  return [out[0], out[1]];
}

function randomArray(n: number, rnd: () => number, ints = false): Float32Array {
  return Float32Array.from({ length: n }, () => (ints ? Math.max(0, Math.round(rnd() * 4 - 1.5)) : rnd() * 2 - 1));
}

type Conv = [number[], number[], number | [number, number], string];
// [x shape, filter shape, stride, pad]: the paper's layer, the CIFAR-size network's (3x3, 32-64 channels,
// stride 1 and 2), and odd strides, paddings and kernel sizes.
const CONVS: Conv[] = [
  [[8, 28, 28, 1], [5, 5, 1, 16], 1, "same"],
  [[4, 32, 32, 3], [3, 3, 3, 32], 1, "same"],
  [[4, 32, 32, 32], [3, 3, 32, 32], 1, "same"],
  [[4, 16, 16, 32], [3, 3, 32, 64], 1, "same"],
  [[4, 16, 16, 64], [3, 3, 64, 64], 1, "same"],
  [[4, 16, 16, 32], [3, 3, 32, 64], 2, "same"],
  [[4, 15, 15, 64], [3, 3, 64, 64], 2, "valid"],
  [[3, 11, 13, 3], [3, 3, 3, 8], 2, "valid"],
  [[3, 11, 13, 3], [3, 3, 3, 8], 2, "same"],
  [[2, 9, 9, 4], [4, 4, 4, 6], 3, "valid"],
  [[2, 8, 10, 5], [3, 2, 5, 7], [2, 1], "same"],
  [[4, 6, 6, 8], [1, 1, 8, 3], 1, "valid"],
  // our own filter-gradient kernel's edge tiles: 4+1 input channels, 8+4 output channels, a wide vertical stride
  [[3, 10, 12, 5], [3, 3, 5, 12], 1, "same"],
  [[2, 9, 11, 6], [2, 3, 6, 20], [3, 2], "same"],
  // our own Winograd convolutions (3x3, stride 1, channels in multiples of 4): output sizes that leave partial
  // 4x4 blocks, the input gradient of the valid one padded by 2, and outputs under 4 wide (2x2 blocks, partial too)
  [[3, 7, 9, 8], [3, 3, 8, 12], 1, "same"],
  [[2, 10, 11, 4], [3, 3, 4, 8], 1, "valid"],
  [[2, 3, 5, 8], [3, 3, 8, 4], 1, "same"],
];

function outSize(inSize: number, f: number, s: number, pad: string): number {
  return pad === "same" ? Math.ceil(inSize / s) : Math.floor((inSize - f) / s) + 1;
}

export async function kernelChecks(target: string): Promise<Compared[]> {
  const rnd = seeded(7);
  const res: Compared[] = [];
  const e = () => tf.engine();
  for (const [xs, fs, s, pad] of CONVS) {
    const [sh, sw] = Array.isArray(s) ? s : [s, s];
    const dyShape = [xs[0], outSize(xs[1], fs[0], sh, pad), outSize(xs[2], fs[1], sw, pad), fs[3]];
    const xv = randomArray(xs.reduce((a, b) => a * b), rnd);
    const fv = randomArray(fs.reduce((a, b) => a * b), rnd);
    const dyv = randomArray(dyShape.reduce((a, b) => a * b), rnd);
    const tag = `x${JSON.stringify(xs)} f${JSON.stringify(fs)} s${JSON.stringify(s)} ${pad}`;
    const [a, b] = await onBoth(target, () => e().runKernel("Conv2DBackpropFilter",
      { x: tf.tensor(xv, xs), dy: tf.tensor(dyv, dyShape) },
      { strides: s, pad, dataFormat: "NHWC", filterShape: fs } as unknown as tf.NamedAttrMap) as tf.Tensor);
    res.push(compare(`Conv2DBackpropFilter ${tag}`, a, b));
    const [c, d] = await onBoth(target, () => e().runKernel("Conv2DBackpropInput",
      { dy: tf.tensor(dyv, dyShape), filter: tf.tensor(fv, fs) },
      { strides: s, pad, dataFormat: "NHWC", inputShape: xs } as unknown as tf.NamedAttrMap) as tf.Tensor);
    res.push(compare(`Conv2DBackpropInput ${tag}`, c, d));
    const [f, g] = await onBoth(target, () => tf.conv2d(tf.tensor4d(xv, xs as [number, number, number, number]),
      tf.tensor4d(fv, fs as [number, number, number, number]), s, pad as "same" | "valid"));
    res.push(compare(`Conv2D ${tag}`, f, g));
  }
  // Max-pool gradients: small integers give many tied maxima (the first must win, as on cpu and in TF);
  // values in [-1, 1] give all-negative windows.
  const pools: [number[], number, number, string, boolean][] = [
    [[8, 28, 28, 16], 2, 2, "valid", true],
    [[8, 28, 28, 16], 2, 2, "valid", false],
    [[4, 32, 32, 32], 2, 2, "valid", true],
    [[2, 9, 9, 3], 3, 3, "same", true],
    [[2, 7, 7, 2], 2, 2, "valid", true],
    [[2, 7, 7, 2], 2, 2, "valid", false],
    [[2, 8, 6, 5], 3, 1, "same", true],
    [[2, 8, 6, 5], 3, 2, "same", false],
    // our own kernel's channel tails (c % 4 != 0, scalar) and 3x3 tiling windows
    [[2, 8, 6, 6], 2, 2, "valid", true],
    [[2, 9, 9, 3], 3, 3, "valid", false],
    [[2, 8, 8, 5], 2, 2, "same", true],
  ];
  for (const [xs, f, s, pad, ties] of pools) {
    const xv = randomArray(xs.reduce((a, b) => a * b), rnd, ties);
    const [a, b] = await onBoth(target, () => tf.tidy(() => {
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
    const [a, b] = await onBoth(target, () => tf.matMul(tf.tensor(av, ta ? [23, 37] : [37, 23]), tf.tensor(bv, tb ? [11, 23] : [23, 11]), ta, tb));
    res.push(compare(`BatchMatMul transposeA=${ta} transposeB=${tb}`, a, b));
  }
  const sv = randomArray(16 * 28 * 28 * 16, rnd);
  const [sa, sb] = await onBoth(target, () => tf.sum(tf.tensor(sv, [16, 28, 28, 16]), [0, 1, 2]));
  res.push(compare("Sum over leading axes", sa, sb));
  return res;
}

type Net = { shape: Shape3; count: number; make: () => tfl.LayersModel };
type ConvLayer = { kernelSize: number; filters: number; strides: number; padding: "same" | "valid" };
const conv = (kernelSize: number, filters: number, strides: number, padding: "same" | "valid"): ConvLayer =>
  ({ kernelSize, filters, strides, padding });

/** ReLU convolutions on an input of `shape`, an optional max pool, flatten, hidden ReLU dense layers and a softmax
 * over `classes`; the checks compare its gradient over `count` synthetic examples. */
function convNet(shape: Shape3, count: number, convs: ConvLayer[], hidden: number[], classes: number,
                 pool?: Parameters<typeof tfl.layers.maxPooling2d>[0]): Net {
  return {
    shape,
    count,
    make: () => tfl.sequential({ layers: [
      ...convs.map((c, i) => tfl.layers.conv2d({ ...c, activation: "relu", ...(i === 0 ? { inputShape: shape } : {}) })),
      ...(pool ? [tfl.layers.maxPooling2d(pool)] : []),
      tfl.layers.flatten(),
      ...hidden.map((units) => tfl.layers.dense({ units, activation: "relu" })),
      tfl.layers.dense({ units: classes, activation: "softmax" }),
    ] }),
  };
}

// Networks whose gradients are compared: the paper's, the CIFAR-size one, and convolutions neither exercises.
const NETWORKS: Record<string, Net> = {
  paper: { shape: [28, 28, 1], count: 16, make: () => paperNetwork() },
  cifar: { shape: [32, 32, 3], count: 4, make: () => cifarNetwork() },
  "conv k3 s2 valid, 3->8->4 channels, pool 3/3 same":
    convNet([13, 13, 3], 16, [conv(3, 8, 2, "valid"), conv(3, 4, 1, "same")], [], 5,
            { poolSize: 3, strides: 3, padding: "same" }),
  "conv k4 s2 same, 2->6 channels, dense hidden": convNet([12, 10, 2], 16, [conv(4, 6, 2, "same")], [12], 3),
  "conv k3 s2 same 16->32 channels after a stride-1 conv":
    convNet([16, 16, 3], 8, [conv(3, 16, 1, "same"), conv(3, 32, 2, "same")], [], 4),
};

/** Weights drawn from a fixed seed (LeCun-uniform kernels, small biases), in the wire order. A whole-network
 * gradient is piecewise: a max-pool window or a ReLU whose inputs tie to within rounding can route the gradient
 * differently on two backends (CI once saw it: 1.5e-3 relative on the CIFAR-size network from the layers'
 * unseeded random initialisation). Fixed weights make the check the same on every run. */
function seededParams(model: tfl.LayersModel, seed: number): Float32Array {
  const rand = seeded(seed);
  const parts = model.trainableWeights.map((w) => {
    const shape = w.shape as number[];
    const isKernel = shape.length > 1;
    const fanIn = isKernel ? shape.slice(0, -1).reduce((a, b) => a * b, 1) : 1;
    const limit = isKernel ? Math.sqrt(3 / fanIn) : 0.05;
    return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (2 * rand() - 1) * limit);
  });
  const flat = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) { flat.set(p, off); off += p.length; }
  return flat;
}

export async function gradientChecks(target: string): Promise<Compared[]> {
  const res: Compared[] = [];
  for (const [name, net] of Object.entries(NETWORKS)) {
    let params: Float32Array | null = null;
    const grads: Float32Array[] = [];
    const losses: number[] = [];
    for (const b of ["cpu", target]) {
      await tf.setBackend(b);
      const gc = GradientComputer.fromModel(net.make());
      params ??= seededParams(gc.model, 7);
      gc.setParams(params);
      const data = syntheticData(net.count, net.shape, gc.numClasses, 11);
      // One mini-batch over the whole set: the summed gradient does not depend on the shuffled order.
      const r = gc.computeOn(data, Uint32Array.from({ length: data.count }, (_, i) => i), data.count);
      grads.push(r.grad);
      losses.push(r.lossSum);
      gc.model.dispose();
    }
    res.push(compare(`gradient: ${name}`, grads[0], grads[1]));
    res.push(compare(`loss: ${name}`, [losses[0]], [losses[1]]));
  }
  return res;
}
