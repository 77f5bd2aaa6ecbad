// Replaces the wasm MaxPoolGrad for tiling pools (window == stride, no padding: the usual 2x2/2) with fast wasm kernels.
//
// Where our own wasm kernels are loaded, one pass of max_pool_grad in web/assembly does it (below); otherwise:
// stock 4.22's MaxPoolGrad is a scalar C++ loop (~35% of a training step of the paper's network) and
// gives a tied window's gradient to its LAST maximum, where TF, PyTorch and the cpu backend pick the
// FIRST. Ties are common: ReLU outputs over a blank background are all equal. Here, with x viewed as
// [A, fh, OW, fw, C] and y, dy as [A, 1, OW, 1, C] (A = N*OH), using only XNNPACK-backed ops:
//   s  = step(y - x)              0 where x is its window's max, else 1
//   t  = -rank/(fh*fw) - s        distinct in a window; the first maximum has the largest t
//   m  = maxPool(t)               that largest t
//   dx = dy - dy * step(m - t)    dy at the first maximum, 0 elsewhere (exactly)
// Other pool shapes (overlapping, padded or non-dividing windows) are rare in practice; stock 4.22 gets them
// wrong (its running maximum starts at FLT_MIN, so an all-negative window sends its gradient to the
// window's first cell), so they get a plain scan of the wasm heap with TF's rule instead.
import { backend_util, MaxPoolGrad } from "@tensorflow/tfjs-core";
import type { KernelFunc, MaxPoolGradAttrs, MaxPoolGradInputs } from "@tensorflow/tfjs-core";
import { ownHeap, ownKernels } from "./own_wasm";
import type { OwnKernels, WasmHeap } from "./own_wasm";
import { replaceKernel, run, view } from "./run";
import type { KernelBackend, TensorInfo } from "./run";

// -rank/(fh*fw) per window position, one small constant per backend and window shape, kept for the page's life.
const ranks = new WeakMap<KernelBackend, Map<string, TensorInfo>>();

function negRanks(backend: KernelBackend, fh: number, fw: number): TensorInfo {
  let byShape = ranks.get(backend);
  if (!byShape) ranks.set(backend, (byShape = new Map()));
  const key = `${fh}x${fw}`;
  let t = byShape.get(key);
  if (!t) {
    const values = new Float32Array(fh * fw).map((_, r) => -r / (fh * fw));
    const dataId = backend.write(values, [1, fh, 1, fw, 1], "float32");
    t = { dataId, shape: [1, fh, 1, fw, 1], dtype: "float32" };
    byShape.set(key, t);
  }
  return t;
}

// One pass of our own wasm kernel (web/assembly/max_pool_grad.ts) instead of seven XNNPACK passes.
function ownMaxPoolGrad(own: OwnKernels, backend: WasmHeap, x: TensorInfo, y: TensorInfo, dy: TensorInfo,
  info: backend_util.Conv2DInfo): TensorInfo {
  const xs = backend.typedArrayFromHeap(x), ys = backend.typedArrayFromHeap(y), dys = backend.typedArrayFromHeap(dy);
  // sizes as numbers: makeOutput may grow the wasm heap, and a grown heap leaves these views empty (detached)
  const size = xs.length, yAt = size, dyAt = yAt + ys.length, dxAt = dyAt + dys.length;
  const heap = ownHeap(own, dxAt + size);
  heap.set(xs, 0);
  heap.set(ys, yAt);
  heap.set(dys, dyAt);
  own.maxPoolGrad(0, yAt * 4, dyAt * 4, dxAt * 4, info.batchSize, info.outHeight, info.outWidth, info.filterHeight,
    info.filterWidth, info.inChannels);
  const out = backend.makeOutput(x.shape, "float32");
  backend.typedArrayFromHeap(out).set(heap.subarray(dxAt, dxAt + size));
  return out;
}

// dx[first argmax of each window] += dy, windows scanned in row-major order, NaN counting as largest (as TF).
function scan(backend: WasmHeap, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo): TensorInfo {
  const out = backend.makeOutput(x.shape, "float32");
  // Views after the allocation: growing the heap would detach earlier ones.
  const dx = backend.typedArrayFromHeap(out).fill(0);
  const xv = backend.typedArrayFromHeap(x);
  const dyv = backend.typedArrayFromHeap(dy);
  const { batchSize: n, inHeight: h, inWidth: w, outHeight: oh, outWidth: ow, inChannels: c } = info;
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw } = info;
  const { top, left } = info.padInfo;
  let o = 0;
  for (let b = 0; b < n; b++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        for (let ch = 0; ch < c; ch++, o++) {
          let best = -1;
          let bestValue = -Infinity;
          for (let i = 0; i < fh; i++) {
            const yy = oy * sh - top + i;
            if (yy < 0 || yy >= h) continue;
            for (let j = 0; j < fw; j++) {
              const xx = ox * sw - left + j;
              if (xx < 0 || xx >= w) continue;
              const at = ((b * h + yy) * w + xx) * c + ch;
              const v = xv[at];
              if (best < 0 || v > bestValue || (Number.isNaN(v) && !Number.isNaN(bestValue))) {
                best = at;
                bestValue = v;
              }
            }
          }
          if (best >= 0) dx[best] += dyv[o];
        }
      }
    }
  }
  return out;
}

replaceKernel(MaxPoolGrad, (stock: KernelFunc): KernelFunc => (args) => {
  const { inputs, backend, attrs } = args as unknown as {
    inputs: MaxPoolGradInputs; backend: KernelBackend; attrs: MaxPoolGradAttrs;
  };
  const x = inputs.input as TensorInfo;
  const y = inputs.output as TensorInfo;
  const dy = inputs.dy as TensorInfo;
  const { filterSize, strides, pad, dimRoundingMode } = attrs;
  const info = backend_util.computePool2DInfo(
    x.shape as [number, number, number, number], filterSize, strides, 1, pad, dimRoundingMode);
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw, padInfo: p } = info;
  const { batchSize: n, inHeight: h, inWidth: w, outHeight: oh, outWidth: ow, inChannels: c } = info;
  const tiles = fh === sh && fw === sw && h === oh * fh && w === ow * fw
    && p.top === 0 && p.bottom === 0 && p.left === 0 && p.right === 0;
  if (x.dtype !== "float32") return stock(args);
  if (!tiles || y == null) return scan(backend as WasmHeap, x, dy, info);
  const own = ownKernels();
  if (own && y.dtype === "float32" && dy.dtype === "float32") return ownMaxPoolGrad(own, backend as WasmHeap, x, y, dy, info);

  const windows = [n * oh, fh, ow, fw, c];
  const pooled = [n * oh, 1, ow, 1, c];
  const temps: TensorInfo[] = [];
  const keep = (t: TensorInfo) => (temps.push(t), t);
  try {
    const s = keep(run("Step", backend, { x: keep(run("Sub", backend, { a: view(y, pooled), b: view(x, windows) })) }, { alpha: 0 }));
    const t = keep(run("Sub", backend, { a: negRanks(backend, fh, fw), b: s }));
    const m = keep(run("MaxPool", backend, { x: view(t, x.shape) }, { filterSize: [fh, fw], strides: [sh, sw], pad: "valid" }));
    const s2 = keep(run("Step", backend, { x: keep(run("Sub", backend, { a: view(m, pooled), b: t })) }, { alpha: 0 }));
    const notFirst = keep(run("Multiply", backend, { a: view(dy, pooled), b: s2 }));
    return view(run("Sub", backend, { a: view(dy, pooled), b: notFirst }), x.shape);
  } finally {
    for (const tmp of temps) backend.disposeData(tmp.dataId);
  }
});
