// Training kernels for the TF.js 4.22 wasm backend, registered on import (each file says why).
import "./conv2d_backprop_filter";
import "./conv2d_backprop_input";
import "./batch_mat_mul";
import "./max_pool_grad";
import "./identity";
import "./sum";
export { restoreStockKernels } from "./run";
