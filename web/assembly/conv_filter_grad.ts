// AssemblyScript source of the trainer's own wasm kernel: the convolution filter gradient (NHWC), SIMD, register-tiled.
// Built twice by web/build.mjs: with relaxed SIMD (f32x4.relaxed_madd, a fused multiply-add where the CPU has one)
// and with plain SIMD (multiply, then add); the page picks one at run time (web/src/compute/kernels/own_wasm.ts).
//
// dW[fh,fw,ci,co] = sum over n, oh, ow of x[n, oh*sh+fh-pt, ow*sw+fw-pl, ci] * dy[n,oh,ow,co] (out-of-range x is 0).
// That is a matrix product (patches^T . dy) with a long inner dimension (every output position). A tile of 4 input
// channels by 8 output channels keeps 8 accumulator vectors in registers while it streams the positions: per
// position 2 dy vector loads and 4 splatted x loads feed 8 multiply-adds. The positions are walked a few output
// rows at a time (`rows`, chosen by the caller so that those rows of x and dy stay in L1) and, for each such block,
// every tile of dW takes its turn: dW (small) is read and written once per block, x and dy come from cache.
// Memory is imported (the caller copies operands in); nothing here allocates.

import { madd, storeTile } from "./simd";

// One tile of `nc` (4 or 1) input channels by `nv` (2 or 1) vectors of 4 output channels, over output rows [r0, r1).
@inline function tile(x: usize, dy: usize, dw: usize, nc: i32, nv: i32, r0: i32, r1: i32,
  sh: i32, ihOff: i32, inH: i32, xRow: i32, dyRow: i32, owLo: i32, owHi: i32, xStep: i32, dyStep: i32, coB: i32): void {
  let a0 = v128.load(dw), a1 = nv > 1 ? v128.load(dw, 16) : f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), c0 = f32x4.splat(0), c1 = f32x4.splat(0);
  let e0 = f32x4.splat(0), e1 = f32x4.splat(0);
  if (nc > 1) {
    b0 = v128.load(dw + coB); c0 = v128.load(dw + 2 * coB); e0 = v128.load(dw + 3 * coB);
    if (nv > 1) { b1 = v128.load(dw + coB, 16); c1 = v128.load(dw + 2 * coB, 16); e1 = v128.load(dw + 3 * coB, 16); }
  }
  for (let r = r0; r < r1; r++) {
    const ih = r * sh + ihOff;
    if (<u32>ih >= <u32>inH) continue;
    let xp = x + <usize>(ih * xRow) + <usize>(owLo * xStep);
    let dp = dy + <usize>(r * dyRow) + <usize>(owLo * dyStep);
    for (let o = owLo; o < owHi; o++) {
      const d0 = v128.load(dp);
      const s0 = v128.load32_splat(xp);
      a0 = madd(s0, d0, a0);
      if (nv > 1) {
        const d1 = v128.load(dp, 16);
        a1 = madd(s0, d1, a1);
        if (nc > 1) {
          const s1 = v128.load32_splat(xp + 4);
          b0 = madd(s1, d0, b0); b1 = madd(s1, d1, b1);
          const s2 = v128.load32_splat(xp + 8);
          c0 = madd(s2, d0, c0); c1 = madd(s2, d1, c1);
          const s3 = v128.load32_splat(xp + 12);
          e0 = madd(s3, d0, e0); e1 = madd(s3, d1, e1);
        }
      } else if (nc > 1) {
        b0 = madd(v128.load32_splat(xp + 4), d0, b0);
        c0 = madd(v128.load32_splat(xp + 8), d0, c0);
        e0 = madd(v128.load32_splat(xp + 12), d0, e0);
      }
      xp += <usize>xStep;
      dp += <usize>dyStep;
    }
  }
  storeTile(dw, <usize>coB, nc, nv, a0, a1, b0, b1, c0, c1, e0, e1);
}

/**
 * Adds the filter gradient of one batch to dw (f32 [fh,fw,ci,co], zeroed by the caller). x: f32 [n,h,w,ci],
 * dy: f32 [n,oh,ow,co]; co must be a multiple of 4. `rows`: output rows per cache block (>= 1).
 */
export function filterGrad(x: usize, dy: usize, dw: usize, n: i32, h: i32, w: i32, ci: i32, oh: i32, ow: i32, co: i32,
  fh: i32, fw: i32, sh: i32, sw: i32, pt: i32, pl: i32, rows: i32): void {
  const xRow = w * ci * 4, dyRow = ow * co * 4, xStep = sw * ci * 4, dyStep = co * 4, coB = co * 4;
  const ci4 = ci & ~3, co8 = co & ~7;
  for (let b = 0; b < n; b++) {
    const xb = x + <usize>(b * h) * <usize>xRow, dyb = dy + <usize>(b * oh) * <usize>dyRow;
    for (let r0 = 0; r0 < oh; r0 += rows) {
      const r1 = min(r0 + rows, oh);
      for (let i = 0; i < fh; i++) {
        const ihOff = i - pt;
        for (let j = 0; j < fw; j++) {
          // output columns whose input column ow*sw + j - pl lies inside [0, w)
          const off = j - pl;
          const owLo = off >= 0 ? 0 : (-off + sw - 1) / sw;
          const owHi = min(ow, w - 1 - off >= 0 ? (w - 1 - off) / sw + 1 : 0);
          if (owLo >= owHi) continue;
          const xj = xb + <usize>(off * ci * 4);
          const dwij = dw + <usize>((i * fw + j) * ci) * <usize>coB;
          for (let c = 0; c < ci; ) {
            const nc = c < ci4 ? 4 : 1;
            const xc = xj + <usize>(c * 4), dwc = dwij + <usize>c * <usize>coB;
            for (let k = 0; k < co; ) {
              const nv = k < co8 ? 2 : 1;
              const dyk = dyb + <usize>(k * 4), dwk = dwc + <usize>(k * 4);
              if (nc == 4 && nv == 2) tile(xc, dyk, dwk, 4, 2, r0, r1, sh, ihOff, h, xRow, dyRow, owLo, owHi, xStep, dyStep, coB);
              else if (nc == 4) tile(xc, dyk, dwk, 4, 1, r0, r1, sh, ihOff, h, xRow, dyRow, owLo, owHi, xStep, dyStep, coB);
              else if (nv == 2) tile(xc, dyk, dwk, 1, 2, r0, r1, sh, ihOff, h, xRow, dyRow, owLo, owHi, xStep, dyStep, coB);
              else tile(xc, dyk, dwk, 1, 1, r0, r1, sh, ihOff, h, xRow, dyRow, owLo, owHi, xStep, dyStep, coB);
              k += nv * 4;
            }
            c += nc;
          }
        }
      }
    }
  }
}
