// Conv2DBackpropFilter for the TF.js wasm backend (stock 4.22 lacks it), built from the wasm Conv2D/Transpose/Slice kernels.
//
// dW[fh,fw,ci,co] = sum_{n,oh,ow} x[n, oh*s+fh-pt, ow*s+fw-pl, ci] * dy[n,oh,ow,co]
// is itself a convolution: treat x's channels as the batch and its batch as channels
// (xT = x^[3,1,2,0] : [Cin,H,W,N]), use dy as the filter (dyT = dy^[1,2,0,3] : [OH,OW,N,Cout]),
// dilate that filter by the forward stride, and the output [Cin,FH,FW,Cout]^[1,2,0,3] is dW.
// All arithmetic runs inside XNNPACK; JS only moves tensor ids around. That formulation streams x and dy from
// memory once per filter tap and was 40% of a CIFAR-size training step (issue 14), so where our own wasm kernel
// is loaded (own_wasm.ts: register-tiled, relaxed SIMD) it computes dW instead, for float32, Cin >= 4 and Cout % 4 == 0.
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
  if (own && info.inChannels >= 4 && info.outChannels % 4 === 0 && x.dtype === "float32" && dy.dtype === "float32") {
    return ownFilterGrad(own, backend as WasmHeap, x, dy, info);
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
  const dwLen = fh * fw * ci * co;
  const heap = ownHeap(own, xs.length + dys.length + dwLen);
  heap.set(xs, 0);
  heap.set(dys, xs.length);
  heap.fill(0, xs.length + dys.length);
  // output rows per block: their dy rows and the input rows they read (fh - sh more) fit in BLOCK_FLOATS
  const rows = Math.max(1, Math.floor((BLOCK_FLOATS - Math.max(0, fh - sh) * w * ci) / (sh * w * ci + ow * co)));
  own.filterGrad(0, xs.length * 4, (xs.length + dys.length) * 4, n, h, w, ci, oh, ow, co, fh, fw, sh, sw,
    info.padInfo.top, info.padInfo.left, rows);
  const out = backend.makeOutput([fh, fw, ci, co], "float32");
  backend.typedArrayFromHeap(out).set(heap.subarray(xs.length + dys.length));
  return out;
}

addKernel({
  kernelName: Conv2DBackpropFilter,
  backendName: WASM,
  kernelFunc: conv2DBackpropFilterWasm as unknown as KernelConfig["kernelFunc"],
});
