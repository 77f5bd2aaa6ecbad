// Replaces the wasm Conv2D (NHWC, float32, no dilation, Cout % 4 == 0) by our own wasm kernel where it is loaded.
//
// The forward convolution was the largest share of a CIFAR-size training step once the filter gradient had our own
// kernel (issue 14), and the input gradient (conv2d_backprop_input.ts) is itself a Conv2D call, so both gain.
// XNNPACK's wasm convolution multiplies, then adds; our relaxed-SIMD build fuses them (own_wasm.ts). x is copied
// into our module's memory with its zero padding already in place, so the inner loops never check bounds.
// That direct kernel runs near the peak of 128-bit wasm SIMD, so 3x3 stride-1 layers go by Winograd (fewer products).
import { backend_util, Conv2D } from "@tensorflow/tfjs-core";
import type { Conv2DAttrs, Conv2DInputs, KernelFunc } from "@tensorflow/tfjs-core";
import { ownHeap, ownKernels } from "./own_wasm";
import type { WasmHeap } from "./own_wasm";
import { replaceKernel } from "./run";
import type { TensorInfo } from "./run";

// Winograd blocks per pass: their transformed inputs and products (16 * blocks * (ci + co) floats) stay in a
// second-level cache (measured in node on the CIFAR-size layers: 32 as fast as 64 or 128, within the noise).
const WINOGRAD_BLOCKS = 32;

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
  // 3x3 stride-1 layers (the CIFAR-size network's, forward and input gradient) by Winograd's F(2x2, 3x3): 2.25x fewer
  // multiplications (web/assembly/winograd.ts); its 4x4 input blocks cover whole 2x2 output blocks, so it may need
  // a zero row or column more than the direct kernel
  const winograd = fh === 3 && fw === 3 && sh === 1 && sw === 1 && ci % 4 === 0;
  // the padded input: every tap of every output inside it
  const needH = winograd ? 2 * Math.ceil(oh / 2) + 2 : (oh - 1) * sh + fh;
  const needW = winograd ? 2 * Math.ceil(ow / 2) + 2 : (ow - 1) * sw + fw;
  const hp = Math.max(top + h, needH), wp = Math.max(left + w, needW);
  const xs = backend.typedArrayFromHeap(x), ws = backend.typedArrayFromHeap(filter);
  const xpLen = n * hp * wp * ci, yLen = n * oh * ow * co, yAt = xpLen + ws.length;
  const scratch = winograd ? 16 * (ci * co + (WINOGRAD_BLOCKS * ci + 16) + (WINOGRAD_BLOCKS * co + 16)) : 0;
  const heap = ownHeap(own, yAt + yLen + scratch);
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
  if (winograd) {
    const u = yAt + yLen, v = u + 16 * ci * co, m = v + 16 * (WINOGRAD_BLOCKS * ci + 16);
    own.winograd3x3(0, xpLen * 4, yAt * 4, u * 4, v * 4, m * 4, n, hp, wp, ci, oh, ow, co, WINOGRAD_BLOCKS);
  } else {
    own.conv2d(0, xpLen * 4, yAt * 4, n, hp, wp, ci, oh, ow, co, fh, fw, sh, sw);
  }
  const out = backend.makeOutput([n, oh, ow, co], "float32");
  backend.typedArrayFromHeap(out).set(heap.subarray(yAt, yAt + yLen));
  return out;
});
