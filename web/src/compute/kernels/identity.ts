// Makes the wasm Identity share its input's buffer (reference counted) instead of copying it.
//
// The engine clones every tensor it saves for the backward pass through Identity; stock 4.22 wasm
// copies each one (~1 ms per step of the paper's network), while the cpu backend only counts a
// reference. TF.js tensors are immutable (a Variable's assign swaps in a new buffer), so sharing is safe.
import { Identity } from "@tensorflow/tfjs-core";
import type { KernelFunc } from "@tensorflow/tfjs-core";
import { replaceKernel } from "./run";
import type { KernelBackend, TensorInfo } from "./run";

replaceKernel(Identity, (stock: KernelFunc): KernelFunc => (args) => {
  const x = args.inputs.x as TensorInfo;
  if (x.dtype === "string") return stock(args);
  (args.backend as KernelBackend & { incRef(id: object): void }).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
});
