// Helpers for composing wasm kernels from other wasm kernels, and for replacing a stock wasm kernel.
import "@tensorflow/tfjs-backend-wasm"; // its kernels must be registered before we look them up or wrap them
import { getKernel, registerKernel, unregisterKernel } from "@tensorflow/tfjs-core";
import type { KernelBackend, KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from "@tensorflow/tfjs-core";

export const WASM = "wasm";

/** Calls a registered wasm kernel directly (no engine, no tape): the caller frees what it does not return. */
export function run(name: string, backend: KernelBackend, inputs: NamedTensorInfoMap, attrs: object = {}): TensorInfo {
  const k = getKernel(name, WASM);
  if (k == null) throw new Error(`wasm kernel '${name}' is not registered`);
  return k.kernelFunc({ inputs, backend, attrs: attrs as NamedAttrMap }) as TensorInfo;
}

/** A view of t with another shape (same data, no copy, no reference count): for inputs of other kernels only. */
export function view(t: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: t.dataId, shape, dtype: t.dtype };
}

const WRAPPED = Symbol("mlitb-wrapped");
const stockConfigs = new Map<string, KernelConfig>();

/**
 * Replaces the stock wasm kernel `name` by make(stock), keeping the stock setup (it binds the wasm export
 * that the stock function calls). Idempotent.
 */
export function replaceKernel(name: string, make: (stock: KernelFunc) => KernelFunc): void {
  const stock = getKernel(name, WASM) as (KernelConfig & { [WRAPPED]?: true }) | undefined;
  if (stock == null) throw new Error(`wasm kernel '${name}' is not registered`);
  if (stock[WRAPPED]) return;
  stockConfigs.set(name, stock);
  unregisterKernel(name, WASM);
  registerKernel({ ...stock, kernelFunc: make(stock.kernelFunc), [WRAPPED]: true } as KernelConfig);
}

/** Puts the stock wasm kernels back (benchmarks compare them); returns their names. */
export function restoreStockKernels(): string[] {
  for (const [name, stock] of stockConfigs) {
    unregisterKernel(name, WASM);
    registerKernel(stock);
  }
  const names = [...stockConfigs.keys()];
  stockConfigs.clear();
  return names;
}

/** Registers a kernel that the wasm backend lacks; keeps a later TF.js's own if it has one. */
export function addKernel(config: KernelConfig): void {
  if (getKernel(config.kernelName, WASM) == null) registerKernel(config);
}

export type { KernelBackend, TensorInfo };
