// Training core of the trainer worker: clock-bounded summed gradients, evaluation and prediction for a TF.js Layers model.
import * as tf from "@tensorflow/tfjs-core";
import * as tfl from "@tensorflow/tfjs-layers";
import "./kernels";
import { Committer, K } from "./commitments";

/** Labelled uint8 images, row-major [count, height, width, channels]; pixels 0..255. */
export interface LabelledImages {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  shape: [number, number, number];
}

export interface GradientResult {
  grad: Float32Array; // sum over samples of the per-sample gradient, flat, in parameter order
  samples: number;
  lossSum: number;
  ms: number;
}

// Measured on the paper's network (wasm SIMD, Chromium worker, 2 cores; selftest ?check=throughput&batch=...):
// 32-48 is fastest (16: -10%, 64-128: -15..25%, its activations outgrow the cache), and a small batch
// overshoots the work time less.
export const DEFAULT_BATCH_SIZE = 32;
const EVAL_BATCH_SIZE = 256;
const PROBE_SAMPLES = 4; // the first sub-batch of a fresh trainer, which measures its speed
const SUB_BATCHES = 8; // a sub-batch takes at most this share of the work time
const PER_SAMPLE_SMOOTHING = 0.3; // weight of the newest full batch in the time-per-sample average
const EPSILON = 1e-7; // Keras' clip for log(p)

export class GradientComputer {
  readonly model: tfl.LayersModel;
  readonly paramCount: number;
  readonly numClasses: number;
  batchSize = DEFAULT_BATCH_SIZE;
  /** A sub-batch takes at most 1/subBatches of the work time (1: whole batches, as benchmarks measure them). */
  subBatches = SUB_BATCHES;
  private readonly vars: tf.Variable[];
  private readonly sizes: number[];
  private readonly inputShape: number[];
  // Shuffled visiting order of the current data set, kept across calls so every sample is used once per epoch.
  private order: Uint32Array = new Uint32Array(0);
  private cursor = 0;
  private orderOf: Uint8Array | null = null;
  private msPerSample = 0; // measured compute time per sample (0 = not measured yet)

  private constructor(model: tfl.LayersModel) {
    this.model = model;
    // Trainable weights come first in model.weights, each layer's kernel then bias: the wire order.
    this.vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    this.sizes = this.vars.map((v) => v.size);
    this.paramCount = this.sizes.reduce((a, b) => a + b, 0);
    const out = model.outputs[0].shape;
    this.numClasses = out[out.length - 1] as number;
    this.inputShape = model.inputs[0].shape.slice(1) as number[];
  }

  /** Loads TF.js Layers artifacts: a model.json URL (weights next to it), or any TF.js IOHandler. */
  static async fromArtifacts(modelJsonUrl: string | tf.io.IOHandler): Promise<GradientComputer> {
    return new GradientComputer(await tfl.loadLayersModel(modelJsonUrl));
  }

  static fromModel(model: tfl.LayersModel): GradientComputer {
    return new GradientComputer(model);
  }

  setParams(flat: Float32Array): void {
    if (flat.length !== this.paramCount) {
      throw new Error(`expected ${this.paramCount} parameters, got ${flat.length}`);
    }
    let off = 0;
    for (const v of this.vars) {
      const t = tf.tensor(flat.subarray(off, off + v.size), v.shape, "float32");
      v.assign(t);
      t.dispose();
      off += v.size;
    }
  }

  getParams(): Float32Array {
    const flat = new Float32Array(this.paramCount);
    let off = 0;
    for (const v of this.vars) {
      flat.set(v.dataSync() as Float32Array, off);
      off += v.size;
    }
    return flat;
  }

  /**
   * Sums gradients over mini-batches until `workMs` is used up. Before each batch the clock is checked
   * against the measured time per sample: a batch that would run past the work time shrinks to what still
   * fits, and the loop ends when not one sample fits, so the result is sent at the work time instead of up
   * to one batch later (the master then needs no whole batch of margin). At least one sample is computed.
   * With `order` (positions in `data`, the seeded order of an open project: compute/example_order.ts) the
   * examples are order[0], order[1], ... cycling, so the master can recompute the result from its count;
   * without it, a shuffled order kept across calls. With `commit` (the seed's directions, [K][P], and a
   * Committer) each sub-batch stays inside its committed batch and adds its K projections and loss to it
   * (compute/commitments.ts): one [K, size] x [size, 1] product per weight on the device, read with the loss.
   */
  computeFor(workMs: number, data: LabelledImages, batchSize?: number, order?: Uint32Array,
    commit?: { directions: Float32Array; committer: Committer }): GradientResult {
    let at = 0;
    const take = (n: number) =>
      order ? Uint32Array.from({ length: n }, () => order[at++ % order.length]) : this.nextIndices(data, n);
    this.check(data);
    const bs = Math.max(1, Math.min(batchSize ?? this.batchSize, data.count));
    const start = performance.now();
    let acc: tf.Tensor[] | null = null;
    let samples = 0;
    let lossSum = 0;
    const rs = commit ? this.directionTensors(commit.directions) : null;
    try {
      for (;;) {
        const left = workMs - (performance.now() - start);
        // Before its speed is known the trainer measures it on a few samples, not a whole (maybe long) batch.
        const fits = this.msPerSample > 0 ? Math.floor(left / this.msPerSample) : Math.min(PROBE_SAMPLES, bs);
        if (samples > 0 && fits < 1) break;
        // A slow device splits its batches so one sub-batch is at most 1/subBatches of the work time: the
        // summed gradient is the same, and a misjudged last sub-batch overshoots by less.
        const slice = this.msPerSample > 0 ? Math.floor(workMs / (this.subBatches * this.msPerSample)) : bs;
        const room = commit ? commit.committer.room() : bs;
        const idx = take(Math.max(1, Math.min(bs, fits, slice, room)));
        const t0 = performance.now();
        const prev: tf.Tensor[] | null = acc;
        const step: { value: tf.Tensor; sums: tf.Tensor[] } = tf.tidy(() => {
          const { x, y } = this.batch(data, idx);
          // The loss is the batch SUM, so its gradient is already the per-sample gradient summed.
          const { value, grads } = tf.variableGrads(() => tf.sum(this.loss(x, y, true)) as tf.Scalar, this.vars);
          const sums: tf.Tensor[] = this.vars.map((v, i) => (prev ? tf.add(prev[i], grads[v.name]) : grads[v.name]));
          if (!rs) return { value, sums };
          const proj = tf.addN(this.vars.map((v, i) => tf.matMul(rs[i], tf.reshape(grads[v.name], [-1, 1]))));
          return { value: tf.concat([tf.reshape(value, [1]), tf.reshape(proj, [K])]), sums };
        });
        if (prev) prev.forEach((t) => t.dispose());
        acc = step.sums;
        // Reading the loss each batch also waits for asynchronous (GPU) backends, so the clock is honest.
        const read = step.value.dataSync();
        lossSum += read[0];
        if (commit) commit.committer.add(read.subarray(1), read[0], idx.length);
        step.value.dispose();
        samples += idx.length;
        this.timed(idx.length, Math.min(bs, Math.max(slice, 1)), performance.now() - t0);
      }
    } catch (e) {
      (acc as tf.Tensor[] | null)?.forEach((t) => t.dispose()); // no leak when a kernel throws
      throw e;
    } finally {
      rs?.forEach((t) => t.dispose());
    }
    const grad = new Float32Array(this.paramCount);
    let off = 0;
    (acc as tf.Tensor[]).forEach((t, i) => {
      grad.set(t.dataSync() as Float32Array, off);
      off += this.sizes[i];
      t.dispose();
    });
    return { grad, samples, lossSum, ms: performance.now() - start };
  }

  // The directions [K][P] cut into one [K, size] tensor per weight, in parameter order.
  private directionTensors(directions: Float32Array): tf.Tensor[] {
    let off = 0;
    return this.sizes.map((size) => {
      const d = new Float32Array(K * size);
      for (let j = 0; j < K; j++) d.set(directions.subarray(j * this.paramCount + off, j * this.paramCount + off + size), j * size);
      off += size;
      return tf.tensor2d(d, [K, size]);
    });
  }

  // Moving average of the compute time per sample, kept across rounds; a small batch pays the same fixed
  // cost per batch as a full one, so it counts less, and a slow-down (a busy device) is taken at once.
  private timed(n: number, full: number, ms: number): void {
    const sample = ms / n;
    if (this.msPerSample === 0 || sample > 2 * this.msPerSample) this.msPerSample = sample;
    else this.msPerSample += PER_SAMPLE_SMOOTHING * (n / full) * (sample - this.msPerSample);
  }

  /** Local SGD (DiLoCo's inner loop): steps of `optimizer` on the model's own weights, one per mini-batch, until
   * `workMs` has passed; `grad` is samples x (weights before - weights after), the pseudo-gradient the master
   * averages by samples for its outer Nesterov step. */
  trainFor(workMs: number, data: LabelledImages, batchSize: number | undefined, optimizer: tf.Optimizer): GradientResult {
    this.check(data);
    const bs = Math.max(1, Math.min(batchSize ?? this.batchSize, data.count));
    const before = this.getParams();
    const start = performance.now();
    let samples = 0;
    let lossSum = 0;
    do {
      const idx = this.nextIndices(data, bs);
      const value = tf.tidy(() => {
        const { x, y } = this.batch(data, idx);
        const { value, grads } = tf.variableGrads(() => tf.mean(this.loss(x, y, true)) as tf.Scalar, this.vars);
        optimizer.applyGradients(grads);
        return value;
      });
      lossSum += value.dataSync()[0] * idx.length; // also waits for asynchronous backends: an honest clock
      value.dispose();
      samples += idx.length;
    } while (performance.now() - start < workMs);
    const grad = this.getParams();
    for (let i = 0; i < grad.length; i++) grad[i] = (before[i] - grad[i]) * samples;
    return { grad, samples, lossSum, ms: performance.now() - start };
  }

  /** Deterministic mode: the summed gradient over exactly these examples, in this order, `batchSize` at a time
   * (the master chose them; a replay recomputes the same sums). Indices are positions in `data`. */
  computeOn(data: LabelledImages, indices: Uint32Array, batchSize?: number): GradientResult {
    this.check(data);
    if (indices.length < 1) throw new Error("no examples to compute on");
    const bs = Math.max(1, batchSize ?? this.batchSize);
    const start = performance.now();
    const grad = new Float32Array(this.paramCount);
    let lossSum = 0;
    for (let s = 0; s < indices.length; s += bs) {
      const idx = indices.subarray(s, Math.min(s + bs, indices.length));
      for (const j of idx) if (j >= data.count) throw new Error(`example ${j} is not below ${data.count}`);
      const { value, grads } = tf.tidy(() => {
        const { x, y } = this.batch(data, idx);
        return tf.variableGrads(() => tf.sum(this.loss(x, y, true)) as tf.Scalar, this.vars);
      });
      lossSum += value.dataSync()[0];
      value.dispose();
      let off = 0;
      this.vars.forEach((v, i) => {
        const g = grads[v.name].dataSync() as Float32Array;
        for (let k = 0; k < g.length; k++) grad[off + k] += g[k];
        off += this.sizes[i];
      });
      Object.values(grads).forEach((t) => t.dispose());
    }
    return { grad, samples: indices.length, lossSum, ms: performance.now() - start };
  }

  evaluate(data: LabelledImages): { error: number; loss: number } {
    this.check(data);
    let wrong = 0;
    let lossSum = 0;
    for (let s = 0; s < data.count; s += EVAL_BATCH_SIZE) {
      const idx = range(s, Math.min(s + EVAL_BATCH_SIZE, data.count));
      const [w, l] = tf.tidy(() => {
        const { x, y } = this.batch(data, idx);
        const p = this.model.apply(x, { training: false }) as tf.Tensor;
        const miss = tf.sum(tf.notEqual(tf.argMax(p, -1), tf.argMax(y, -1)));
        return [miss, tf.sum(crossEntropy(p, y))];
      });
      wrong += w.dataSync()[0];
      lossSum += l.dataSync()[0];
      w.dispose();
      l.dispose();
    }
    return { error: data.count ? wrong / data.count : 0, loss: data.count ? lossSum / data.count : 0 };
  }

  predict(images: Uint8Array, count: number, shape: [number, number, number]): Float32Array {
    this.checkShape(shape, images.length, count);
    const out = new Float32Array(count * this.numClasses);
    const per = shape[0] * shape[1] * shape[2];
    for (let s = 0; s < count; s += EVAL_BATCH_SIZE) {
      const n = Math.min(EVAL_BATCH_SIZE, count - s);
      const p = tf.tidy(() => {
        const x = toInput(images.subarray(s * per, (s + n) * per), [n, ...shape]);
        return this.model.apply(x, { training: false }) as tf.Tensor;
      });
      out.set(p.dataSync() as Float32Array, s * this.numClasses);
      p.dispose();
    }
    return out;
  }

  private loss(x: tf.Tensor, y: tf.Tensor, training: boolean): tf.Tensor {
    return crossEntropy(this.model.apply(x, { training }) as tf.Tensor, y);
  }

  private batch(data: LabelledImages, idx: ArrayLike<number>): { x: tf.Tensor; y: tf.Tensor } {
    const per = data.shape[0] * data.shape[1] * data.shape[2];
    const n = idx.length;
    const pix = new Uint8Array(n * per);
    const lab = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const j = idx[i];
      pix.set(data.images.subarray(j * per, (j + 1) * per), i * per);
      lab[i] = data.labels[j];
      if (lab[i] >= this.numClasses) throw new Error(`label ${lab[i]} is not below ${this.numClasses} classes`);
    }
    const x = toInput(pix, [n, ...data.shape]);
    const y = tf.oneHot(tf.tensor1d(lab, "int32"), this.numClasses);
    return { x, y };
  }

  private nextIndices(data: LabelledImages, n: number): Uint32Array {
    if (this.orderOf !== data.images || this.order.length !== data.count) {
      this.order = shuffled(data.count);
      this.cursor = 0;
      this.orderOf = data.images;
    }
    const idx = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      if (this.cursor === this.order.length) {
        this.order = shuffled(data.count);
        this.cursor = 0;
      }
      idx[i] = this.order[this.cursor++];
    }
    return idx;
  }

  private check(data: LabelledImages): void {
    this.checkShape(data.shape, data.images.length, data.count);
    if (data.labels.length < data.count) throw new Error(`${data.count} samples but ${data.labels.length} labels`);
    if (data.count < 1) throw new Error("no samples");
  }

  private checkShape(shape: number[], bytes: number, count: number): void {
    if (shape.length !== 3 || shape.some((d, i) => d !== this.inputShape[i])) {
      throw new Error(`image shape [${shape}] does not match the model input [${this.inputShape}]`);
    }
    if (bytes < count * shape[0] * shape[1] * shape[2]) throw new Error(`${bytes} bytes are fewer than ${count} images`);
  }
}

// uint8 pixels go up as float32 (a native typed-array conversion) and are scaled to [0,1] on the device.
function toInput(pix: Uint8Array, shape: number[]): tf.Tensor {
  return tf.div(tf.tensor(pix, shape, "float32"), 255);
}

// Categorical cross-entropy per sample of probabilities p against one-hot y (as Keras: clip, then -sum y log p).
function crossEntropy(p: tf.Tensor, y: tf.Tensor): tf.Tensor {
  return tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(p, EPSILON, 1 - EPSILON))), -1));
}

function shuffled(n: number): Uint32Array {
  const a = new Uint32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a;
}

function range(a: number, b: number): Uint32Array {
  const r = new Uint32Array(b - a);
  for (let i = 0; i < r.length; i++) r[i] = a + i;
  return r;
}
