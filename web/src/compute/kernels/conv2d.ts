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

// Per output block size: the transform's planes, and blocks per pass, whose transformed inputs and products
// (planes * blocks * (ci + co) floats) stay in a second-level cache (measured in node on the CIFAR-size layers:
// F(2x2) 32 as fast as 64 or 128, F(4x4) 16 as fast as 8 or 32, within the noise of a shared machine).
const WINOGRAD: Record<number, { planes: number; blocks: number }> = { 2: { planes: 16, blocks: 32 }, 4: { planes: 36, blocks: 16 } };

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
  // 3x3 stride-1 layers (the CIFAR-size network's, forward and input gradient) by Winograd: F(4x4, 3x3) computes
  // 4x4 output blocks with 4x fewer multiplications than the direct kernel (web/assembly/winograd4.ts), F(2x2, 3x3)
  // (winograd.ts, 2.25x fewer) serves outputs under 4 wide, where 4x4 blocks would be mostly padding. Their input
  // blocks cover whole output blocks, so they may need zero rows or columns more than the direct kernel.
  const winograd = fh === 3 && fw === 3 && sh === 1 && sw === 1 && ci % 4 === 0;
  const block = winograd && oh >= 4 && ow >= 4 ? 4 : 2;
  const { planes, blocks } = WINOGRAD[block];
  // the padded input: every tap of every output inside it
  const needH = winograd ? block * Math.ceil(oh / block) + 2 : (oh - 1) * sh + fh;
  const needW = winograd ? block * Math.ceil(ow / block) + 2 : (ow - 1) * sw + fw;
  const hp = Math.max(top + h, needH), wp = Math.max(left + w, needW);
  const xs = backend.typedArrayFromHeap(x), ws = backend.typedArrayFromHeap(filter);
  const xpLen = n * hp * wp * ci, yLen = n * oh * ow * co, yAt = xpLen + ws.length;
  const u = yAt + yLen, v = u + planes * ci * co, m = v + planes * (blocks * ci + 16);
  const scratch = winograd ? m + planes * (blocks * co + 16) - u : 0;
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
    const kernel = block === 4 ? own.winograd4x4 : own.winograd3x3;
    kernel(0, xpLen * 4, yAt * 4, u * 4, v * 4, m * 4, n, hp, wp, ci, oh, ow, co, blocks);
  } else {
    own.conv2d(0, xpLen * 4, yAt * 4, n, hp, wp, ci, oh, ow, co, fh, fw, sh, sw);
  }
  const out = backend.makeOutput([n, oh, ow, co], "float32");
  backend.typedArrayFromHeap(out).set(heap.subarray(yAt, yAt + yLen));
  return out;
});
