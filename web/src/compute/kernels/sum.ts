// Makes the wasm Sum over all leading axes (a bias gradient: [N,H,W,C] -> [C]) use XNNPACK average pooling.
//
// Stock 4.22 first transposes the reduced axes innermost (a full copy) and then runs a scalar loop.
// Viewing x as one image [1, M, 1, C] and average-pooling it with an [M, 1] window reads it once; the
// mean times M is the sum (float32 rounding of the same order as a sequential sum).
import { Sum, util } from "@tensorflow/tfjs-core";
import type { KernelFunc, SumAttrs } from "@tensorflow/tfjs-core";
import { replaceKernel, run, view } from "./run";
import type { KernelBackend, TensorInfo } from "./run";

replaceKernel(Sum, (stock: KernelFunc): KernelFunc => (args) => {
  const x = args.inputs.x as TensorInfo;
  const backend = args.backend as KernelBackend;
  const { axis, keepDims } = args.attrs as unknown as SumAttrs;
  const rank = x.shape.length;
  const axes = util.parseAxisParam(axis, x.shape).sort((a, b) => a - b);
  const leading = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i);
  const m = util.sizeFromShape(x.shape.slice(0, axes.length));
  if (!leading || x.dtype !== "float32" || m < 2) return stock(args);
  const rest = x.shape.slice(axes.length);
  const c = util.sizeFromShape(rest);
  const mean = run("AvgPool", backend, { x: view(x, [1, m, 1, c]) }, { filterSize: [m, 1], strides: [1, 1], pad: "valid" });
  const scale = backend.write(new Float32Array([m]), [], "float32");
  try {
    const out = run("Multiply", backend, { a: mean, b: { dataId: scale, shape: [], dtype: "float32" } });
    return view(out, keepDims ? [...axes.map(() => 1), ...rest] : rest);
  } finally {
    backend.disposeData(mean.dataId);
    backend.disposeData(scale);
  }
});
