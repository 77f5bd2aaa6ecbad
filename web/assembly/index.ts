// The trainer's own wasm kernels, one module (web/build.mjs compiles this entry; own_wasm.ts loads it).
export { filterGrad } from "./conv_filter_grad";
export { conv2d } from "./conv2d";
export { winograd3x3 } from "./winograd";
export { winogradFilterGrad } from "./winograd_grad";
export { maxPoolGrad } from "./max_pool_grad";
export { winograd4x4 } from "./winograd4";
