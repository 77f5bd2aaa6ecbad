// Makes the wasm BatchMatMul use XNNPACK for transposed operands (the dense layer's two gradient products).
//
// Stock 4.22 sends any matmul with transposeA/transposeB to a naive C++ triple loop (~20x slower than
// its XNNPACK path, which needs both operands untransposed and unbatched). Transposing the operand
// first with the wasm Transpose kernel is a single memory pass and then takes the fast path.
import { BatchMatMul, util } from "@tensorflow/tfjs-core";
import type { BatchMatMulAttrs, BatchMatMulInputs, KernelFunc } from "@tensorflow/tfjs-core";
import { replaceKernel, run, view } from "./run";
import type { KernelBackend, TensorInfo } from "./run";

function transposed2d(t: TensorInfo, backend: KernelBackend): TensorInfo {
  const r = t.shape.length;
  const [rows, cols] = [t.shape[r - 2], t.shape[r - 1]];
  return run("Transpose", backend, { x: view(t, [rows, cols]) }, { perm: [1, 0] });
}

replaceKernel(BatchMatMul, (stock: KernelFunc): KernelFunc => (args) => {
  const { inputs, backend, attrs } = args as unknown as {
    inputs: BatchMatMulInputs; backend: KernelBackend; attrs: BatchMatMulAttrs;
  };
  const a = inputs.a as TensorInfo;
  const b = inputs.b as TensorInfo;
  const unbatched = util.sizeFromShape(a.shape.slice(0, -2)) === 1 && util.sizeFromShape(b.shape.slice(0, -2)) === 1;
  if (!(attrs.transposeA || attrs.transposeB) || !unbatched || a.dtype !== "float32" || b.dtype !== "float32") {
    return stock(args);
  }
  const temps: TensorInfo[] = [];
  try {
    const a2 = attrs.transposeA ? transposed2d(a, backend) : a;
    if (a2 !== a) temps.push(a2);
    const b2 = attrs.transposeB ? transposed2d(b, backend) : b;
    if (b2 !== b) temps.push(b2);
    const out = stock({ inputs: { a: a2, b: b2 }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } }) as TensorInfo;
    // Keep the caller's rank (e.g. [1, m, n] for rank-3 inputs) as the stock kernel would.
    const outer = a.shape.length >= b.shape.length ? a.shape.slice(0, -2) : b.shape.slice(0, -2);
    return view(out, [...outer, out.shape[out.shape.length - 2], out.shape[out.shape.length - 1]]);
  } finally {
    for (const t of temps) backend.disposeData(t.dataId);
  }
});
