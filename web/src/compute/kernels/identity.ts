// Makes the wasm Identity, and a Cast to the dtype a tensor already has, share its input's buffer (reference
// counted) instead of copying it.
//
// The engine clones every tensor it saves for the backward pass through Identity; stock 4.22 wasm
// copies each one (~1 ms per step of the paper's network), while the cpu backend only counts a
// reference. TF.js tensors are immutable (a Variable's assign swaps in a new buffer), so sharing is safe.
import { Cast, Identity } from "@tensorflow/tfjs-core";
import type { CastAttrs, KernelFunc } from "@tensorflow/tfjs-core";
import { replaceKernel } from "./run";
import type { KernelBackend, TensorInfo } from "./run";

replaceKernel(Identity, (stock: KernelFunc): KernelFunc => (args) => {
  const x = args.inputs.x as TensorInfo;
  if (x.dtype === "string") return stock(args);
  (args.backend as KernelBackend & { incRef(id: object): void }).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
});

// ReLU's gradient is dy * cast(step(x), "float32"): stock 4.22 wasm copies the float32 step output (2% of a
// CIFAR-size training step, measured on a busy machine), the cpu backend shares it.
replaceKernel(Cast, (stock: KernelFunc): KernelFunc => (args) => {
  const x = args.inputs.x as TensorInfo;
  if (x.dtype === "string" || x.dtype !== (args.attrs as unknown as CastAttrs).dtype) return stock(args);
  (args.backend as KernelBackend & { incRef(id: object): void }).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
});
