// Replaces the wasm Conv2DBackpropInput (the input gradient of every conv layer but the first) by an XNNPACK convolution.
//
// Stock 4.22's is a scalar C++ loop: 73% of a training step of the CIFAR-size network (issue 14's profile).
// dx[n,h,w,ci] = sum_{fh,fw,co} dy[n, (h+pt-fh)/s, (w+pl-fw)/s, co] * W[fh,fw,ci,co] (where the division is exact)
// is a stride-1 convolution of dy, with zeros inserted between its rows and columns (s-1 of them), by the
// filter rotated 180 degrees with its channel axes swapped: W'[i,j,co,ci] = W[FH-1-i, FW-1-j, ci, co],
// padded by FH-1-pt on top and FW-1-pl on the left. All arithmetic runs inside XNNPACK (the zeros by PadV2).
import { backend_util, Conv2DBackpropInput } from "@tensorflow/tfjs-core";
import type { Conv2DBackpropInputAttrs, Conv2DBackpropInputInputs, KernelFunc } from "@tensorflow/tfjs-core";
import { replaceKernel, run, view } from "./run";
import type { KernelBackend, TensorInfo } from "./run";

replaceKernel(Conv2DBackpropInput, (stock: KernelFunc): KernelFunc => (args) => {
  const { inputs, backend, attrs } = args as unknown as {
    inputs: Conv2DBackpropInputInputs; backend: KernelBackend; attrs: Conv2DBackpropInputAttrs;
  };
  const dy = inputs.dy as TensorInfo;
  const filter = inputs.filter as TensorInfo;
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs;
  const info = backend_util.computeConv2DInfo(
    inputShape as [number, number, number, number], filter.shape as [number, number, number, number], strides, 1, pad,
    dimRoundingMode, false, backend_util.convertConv2DDataFormat(dataFormat));
  if (info.dataFormat !== "channelsLast" || dy.dtype !== "float32" || filter.dtype !== "float32") return stock(args);
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co } = info;
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw, outHeight: oh, outWidth: ow } = info;
  const { top, left } = info.padInfo;
  const temps: TensorInfo[] = [];
  const keep = (t: TensorInfo) => (temps.push(t), t);
  try {
    // W'[i, j, co, ci]: flip the spatial axes (one axis of FH*FW), then swap the channel axes.
    const flipped = keep(run("Reverse", backend, { x: view(filter, [fh * fw, ci, co]) }, { dims: [0] }));
    const rotated = keep(run("Transpose", backend, { x: flipped }, { perm: [0, 2, 1] }));
    // dy with s-1 zeros after every row and column: [N, OH, sh, OW, sw, Co] viewed as [N, OH*sh, OW*sw, Co].
    let src: TensorInfo = dy;
    if (sh > 1 || sw > 1) {
      src = keep(run("PadV2", backend, { x: view(dy, [n, oh, 1, ow, 1, co]) },
        { paddings: [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]], constantValue: 0 }));
    }
    const [hIn, wIn] = [oh * sh, ow * sw];
    const [pt, pl] = [fh - 1 - top, fw - 1 - left];
    // enough rows below for h outputs; any surplus rows come off the end with a Slice
    const pb = Math.max(0, h + fh - 1 - hIn - pt);
    const pr = Math.max(0, w + fw - 1 - wIn - pl);
    let dx = keep(run("Conv2D", backend, { x: view(src, [n, hIn, wIn, co]), filter: view(rotated, [fh, fw, co, ci]) }, {
      strides: [1, 1], pad: [[0, 0], [pt, pb], [pl, pr], [0, 0]], dataFormat: "NHWC", dilations: [1, 1],
    }));
    if (dx.shape[1] !== h || dx.shape[2] !== w) {
      dx = keep(run("Slice", backend, { x: dx }, { begin: [0, 0, 0, 0], size: [n, h, w, ci] }));
    }
    temps.pop();
    return dx;
  } finally {
    for (const t of temps) backend.disposeData(t.dataId);
  }
});
