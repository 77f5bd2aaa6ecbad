// Replaces the wasm Conv2D (NHWC, float32, no dilation, Cout % 4 == 0) by our own wasm kernel where it is loaded.
//
// The forward convolution was the largest share of a CIFAR-size training step once the filter gradient had our own
// kernel (issue 14), and the input gradient (conv2d_backprop_input.ts) is itself a Conv2D call, so both gain.
// XNNPACK's wasm convolution multiplies, then adds; our relaxed-SIMD build fuses them (own_wasm.ts). x is copied
// into our module's memory with its zero padding already in place, so the inner loops never check bounds.
import { backend_util, Conv2D } from "@tensorflow/tfjs-core";
import type { Conv2DAttrs, Conv2DInputs, KernelFunc } from "@tensorflow/tfjs-core";
import { ownHeap, ownKernels } from "./own_wasm";
import type { WasmHeap } from "./own_wasm";
import { replaceKernel } from "./run";
import type { TensorInfo } from "./run";

replaceKernel(Conv2D, (stock: KernelFunc): KernelFunc => (args) => {
  const { inputs, backend, attrs } = args as unknown as { inputs: Conv2DInputs; backend: WasmHeap; attrs: Conv2DAttrs };
  const x = inputs.x as TensorInfo;
  const filter = inputs.filter as TensorInfo;
  const own = ownKernels();
  if (!own || x.dtype !== "float32" || filter.dtype !== "float32") return stock(args);
  const { strides, pad, dataFormat, dilations, dimRoundingMode } = attrs;
  const info = backend_util.computeConv2DInfo(x.shape as [number, number, number, number],
    filter.shape as [number, number, number, number], strides, dilations, pad, dimRoundingMode, false,
    backend_util.convertConv2DDataFormat(dataFormat));
  if (info.dataFormat !== "channelsLast" || info.dilationHeight !== 1 || info.dilationWidth !== 1
    || info.outChannels % 4 !== 0) return stock(args);
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow, outChannels: co } = info;
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw } = info;
  const { top, left } = info.padInfo;
  // the padded input: every tap of every output inside it
  const hp = Math.max(top + h, (oh - 1) * sh + fh), wp = Math.max(left + w, (ow - 1) * sw + fw);
  const xs = backend.typedArrayFromHeap(x), ws = backend.typedArrayFromHeap(filter);
  const xpLen = n * hp * wp * ci, yLen = n * oh * ow * co;
  const heap = ownHeap(own, xpLen + ws.length + yLen);
  if (hp === h && wp === w) {
    heap.set(xs, 0);
  } else {
    heap.fill(0, 0, xpLen);
    const row = w * ci;
    for (let r = 0; r < n * h; r++) {
      const b = Math.floor(r / h);
      heap.set(xs.subarray(r * row, (r + 1) * row), ((b * hp + (r - b * h) + top) * wp + left) * ci);
    }
  }
  heap.set(ws, xpLen);
  own.conv2d(0, xpLen * 4, (xpLen + ws.length) * 4, n, hp, wp, ci, oh, ow, co, fh, fw, sh, sw);
  const out = backend.makeOutput([n, oh, ow, co], "float32");
  backend.typedArrayFromHeap(out).set(heap.subarray(xpLen + ws.length, xpLen + ws.length + yLen));
  return out;
});
