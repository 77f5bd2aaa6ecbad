// Conv2DBackpropFilter for the TF.js wasm backend (stock 4.22 lacks it), built from the wasm Conv2D/Transpose/Slice kernels.
//
// dW[fh,fw,ci,co] = sum_{n,oh,ow} x[n, oh*s+fh-pt, ow*s+fw-pl, ci] * dy[n,oh,ow,co]
// is itself a convolution: treat x's channels as the batch and its batch as channels
// (xT = x^[3,1,2,0] : [Cin,H,W,N]), use dy as the filter (dyT = dy^[1,2,0,3] : [OH,OW,N,Cout]),
// dilate that filter by the forward stride, and the output [Cin,FH,FW,Cout]^[1,2,0,3] is dW.
// All arithmetic runs inside XNNPACK; JS only moves tensor ids around. That formulation streams x and dy from
// memory once per filter tap and was 40% of a CIFAR-size training step (issue 14), so where our own wasm kernel
// is loaded (own_wasm.ts: register-tiled, relaxed SIMD) it computes dW instead, for float32, Cin >= 4 and Cout % 4 == 0,
// and 3x3 stride-1 layers (every Cin) go by Winograd.
import { backend_util, Conv2DBackpropFilter } from "@tensorflow/tfjs-core";
import type { Conv2DBackpropFilterAttrs, Conv2DBackpropFilterInputs, KernelConfig } from "@tensorflow/tfjs-core";
import { ownHeap, ownKernels } from "./own_wasm";
import type { WasmHeap } from "./own_wasm";
import { addKernel, run, WASM } from "./run";
import type { KernelBackend, TensorInfo } from "./run";

export function conv2DBackpropFilterWasm(args: {
  inputs: Conv2DBackpropFilterInputs;
  backend: KernelBackend;
  attrs: Conv2DBackpropFilterAttrs;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = inputs.x as TensorInfo;
  const dy = inputs.dy as TensorInfo;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs;
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    backend_util.convertConv2DDataFormat(dataFormat),
  );
  if (info.dataFormat !== "channelsLast") {
    throw new Error("wasm Conv2DBackpropFilter supports only NHWC");
  }
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw } = info;
  const { outHeight: oh, outWidth: ow, inHeight: h, inWidth: w } = info;
  const { top, left } = info.padInfo;
  const own = ownKernels();
  // below 4 input channels its tiles are 1 channel wide (2 multiply-adds per 3 loads): measured slower than
  // XNNPACK's composition on the paper's 28x28x1 layer (3-8 ms against 1.5-3 ms a step)
  if (own && info.outChannels % 4 === 0 && x.dtype === "float32" && dy.dtype === "float32") {
    if (fh === 3 && fw === 3 && sh === 1 && sw === 1) return winogradFilterGrad(own, backend as WasmHeap, x, dy, info);
    if (info.inChannels >= 4) return ownFilterGrad(own, backend as WasmHeap, x, dy, info);
  }
  // Input rows the dilated dy-filter must see to produce exactly fh output rows; pad the
  // bottom/right up to that, and crop the output if the forward pass skipped trailing rows.
  const needH = fh - 1 + (oh - 1) * sh + 1;
  const needW = fw - 1 + (ow - 1) * sw + 1;
  const bottom = Math.max(0, needH - top - h);
  const right = Math.max(0, needW - left - w);

  const temps: TensorInfo[] = [];
  try {
    const xT = run("Transpose", backend, { x }, { perm: [3, 1, 2, 0] });
    temps.push(xT);
    const dyT = run("Transpose", backend, { x: dy }, { perm: [1, 2, 0, 3] });
    temps.push(dyT);
    let conv = run("Conv2D", backend, { x: xT, filter: dyT }, {
      strides: [1, 1],
      pad: [[0, 0], [top, bottom], [left, right], [0, 0]],
      dataFormat: "NHWC",
      dilations: [sh, sw],
    });
    temps.push(conv);
    if (conv.shape[1] !== fh || conv.shape[2] !== fw) {
      conv = run("Slice", backend, { x: conv }, { begin: [0, 0, 0, 0], size: [-1, fh, fw, -1] });
      temps.push(conv);
    }
    return run("Transpose", backend, { x: conv }, { perm: [1, 2, 0, 3] });
  } finally {
    for (const t of temps) backend.disposeData(t.dataId);
  }
}

// Floats of x and dy rows one cache block may hold (32 KB: a first-level data cache).
const BLOCK_FLOATS = 8192;

function ownFilterGrad(own: NonNullable<ReturnType<typeof ownKernels>>, backend: WasmHeap, x: TensorInfo, dy: TensorInfo,
  info: backend_util.Conv2DInfo): TensorInfo {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow, outChannels: co } = info;
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw } = info;
  const xs = backend.typedArrayFromHeap(x), dys = backend.typedArrayFromHeap(dy);
  // offsets as numbers: makeOutput may grow the wasm heap, and a grown heap leaves xs and dys empty (detached)
  const dwAt = xs.length + dys.length, dwLen = fh * fw * ci * co;
  const heap = ownHeap(own, dwAt + dwLen);
  heap.set(xs, 0);
  heap.set(dys, xs.length);
  heap.fill(0, xs.length + dys.length);
  // output rows per block: their dy rows and the input rows they read (fh - sh more) fit in BLOCK_FLOATS
  const rows = Math.max(1, Math.floor((BLOCK_FLOATS - Math.max(0, fh - sh) * w * ci) / (sh * w * ci + ow * co)));
  own.filterGrad(0, xs.length * 4, dwAt * 4, n, h, w, ci, oh, ow, co, fh, fw, sh, sw,
    info.padInfo.top, info.padInfo.left, rows);
  const out = backend.makeOutput([fh, fw, ci, co], "float32");
  backend.typedArrayFromHeap(out).set(heap.subarray(dwAt, dwAt + dwLen));
  return out;
}

// Winograd blocks per pass: 16 * blocks * (ci + co) floats of transformed x and dy stay in a second-level cache, and
// each pass adds that many products to every accumulator tile before it goes back to memory.
const WINOGRAD_BLOCKS = 64;

// 3x3 stride-1 layers by Winograd (web/assembly/winograd_grad.ts): 2.25x fewer products than the direct kernel.
// x goes in zero-padded as the forward Winograd convolution reads it, its channels padded to a multiple of 4 (the
// first layer's 3 colour channels: the fourth's gradient is computed and dropped), so it serves every layer.
function winogradFilterGrad(own: NonNullable<ReturnType<typeof ownKernels>>, backend: WasmHeap, x: TensorInfo,
  dy: TensorInfo, info: backend_util.Conv2DInfo): TensorInfo {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow, outChannels: co } = info;
  const { top, left } = info.padInfo;
  const c4 = Math.ceil(ci / 4) * 4;
  const hp = Math.max(top + h, 2 * Math.ceil(oh / 2) + 2), wp = Math.max(left + w, 2 * Math.ceil(ow / 2) + 2);
  const xs = backend.typedArrayFromHeap(x), dys = backend.typedArrayFromHeap(dy);
  const xpLen = n * hp * wp * c4, dwAt = xpLen + dys.length, dwLen = 9 * c4 * co;
  const v = dwAt + dwLen, e = v + 16 * (WINOGRAD_BLOCKS * c4 + 16), m = e + 16 * (WINOGRAD_BLOCKS * co + 16);
  const heap = ownHeap(own, m + 16 * c4 * co);
  heap.fill(0, 0, xpLen);
  for (let r = 0; r < n * h; r++) {
    const b = Math.floor(r / h);
    const at = ((b * hp + (r - b * h) + top) * wp + left) * c4;
    if (c4 === ci) {
      heap.set(xs.subarray(r * w * ci, (r + 1) * w * ci), at);
    } else {
      // element by element: a subarray per pixel (32K of them in the first layer) cost more than the gradient
      for (let col = 0, src = r * w * ci; col < w; col++) for (let c = 0; c < ci; c++) heap[at + col * c4 + c] = xs[src++];
    }
  }
  heap.set(dys, xpLen);
  own.winogradFilterGrad(0, xpLen * 4, dwAt * 4, v * 4, e * 4, m * 4, n, hp, wp, c4, oh, ow, co, WINOGRAD_BLOCKS);
  const out = backend.makeOutput([3, 3, ci, co], "float32");
  const dw = backend.typedArrayFromHeap(out);
  if (c4 === ci) dw.set(heap.subarray(dwAt, dwAt + dwLen));
  else for (let t = 0; t < 9 * ci; t++) {
    const src = dwAt + (Math.floor(t / ci) * c4 + (t % ci)) * co;
    dw.set(heap.subarray(src, src + co), t * co);
  }
  return out;
}

addKernel({
  kernelName: Conv2DBackpropFilter,
  backendName: WASM,
  kernelFunc: conv2DBackpropFilterWasm as unknown as KernelConfig["kernelFunc"],
});
