// Training kernels for the TF.js 4.22 wasm backend, registered on import (each file says why).
import "./conv2d";
import "./conv2d_backprop_filter";
import "./conv2d_backprop_input";
import "./batch_mat_mul";
import "./max_pool_grad";
import "./identity";
import "./sum";
import { setOwnKernelsEnabled } from "./own_wasm";
import { restoreStockKernels as restoreStock } from "./run";
export { loadOwnKernels, setOwnKernelsEnabled } from "./own_wasm";

/** Puts TF.js's stock wasm kernels back and stops using our own wasm module (benchmarks compare them); returns the names. */
export function restoreStockKernels(): string[] {
  setOwnKernelsEnabled(false);
  return restoreStock();
}
