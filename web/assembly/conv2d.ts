// AssemblyScript source of the trainer's own forward convolution (NHWC, stride s, no dilation), SIMD, register-tiled.
// Same two builds as conv_filter_grad.ts (relaxed SIMD's multiply-add, or plain SIMD multiply then add).
//
// y[n,oh,ow,co] = sum over fh, fw, ci of xp[n, oh*sh+fh, ow*sw+fw, ci] * W[fh,fw,ci,co], where xp is x already
// padded with zeros by the caller (so no tap needs a bounds check). A tile of 4 neighbouring output positions
// by 8 output channels keeps 8 accumulators in registers: per input channel of a tap, 2 W vector loads and 4
// splatted x loads feed 8 multiply-adds; W for one tap row (fw * ci * co floats) stays in cache.

import { madd, storeTile } from "./simd";

// `np` (4 or 1) positions by `nv` (2 or 1) vectors of 4 output channels at y; x at the first position's first tap.
@inline function tile(x: usize, w: usize, y: usize, np: i32, nv: i32, fh: i32, fw: i32, ci: i32, co: i32,
  xRow: i32, xPos: i32): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), e0 = f32x4.splat(0), e1 = f32x4.splat(0);
  const wStep = <usize>(co * 4);
  // one filter row's taps and channels (fw * ci) are contiguous in both padded x and W: one loop over them
  const rowLen = fw * ci;
  for (let i = 0; i < fh; i++) {
    {
      let xp = x + <usize>(i * xRow);
      let wp = w + <usize>(i * rowLen) * wStep;
      for (let c = 0; c < rowLen; c++) {
        const w0 = v128.load(wp);
        const s0 = v128.load32_splat(xp);
        a0 = madd(s0, w0, a0);
        if (nv > 1) {
          const w1 = v128.load(wp, 16);
          a1 = madd(s0, w1, a1);
          if (np > 1) {
            const s1 = v128.load32_splat(xp + <usize>xPos);
            b0 = madd(s1, w0, b0); b1 = madd(s1, w1, b1);
            const s2 = v128.load32_splat(xp + <usize>(2 * xPos));
            c0 = madd(s2, w0, c0); c1 = madd(s2, w1, c1);
            const s3 = v128.load32_splat(xp + <usize>(3 * xPos));
            e0 = madd(s3, w0, e0); e1 = madd(s3, w1, e1);
          }
        } else if (np > 1) {
          b0 = madd(v128.load32_splat(xp + <usize>xPos), w0, b0);
          c0 = madd(v128.load32_splat(xp + <usize>(2 * xPos)), w0, c0);
          e0 = madd(v128.load32_splat(xp + <usize>(3 * xPos)), w0, e0);
        }
        xp += 4;
        wp += wStep;
      }
    }
  }
  storeTile(y, <usize>(co * 4), np, nv, a0, a1, b0, b1, c0, c1, e0, e1);
}

/**
 * y (f32 [n,oh,ow,co]) = the convolution of xp (f32 [n,hp,wp,ci], padded) by w (f32 [fh,fw,ci,co]) with strides
 * sh, sw; co must be a multiple of 4.
 */
export function conv2d(x: usize, w: usize, y: usize, n: i32, hp: i32, wp: i32, ci: i32, oh: i32, ow: i32, co: i32,
  fh: i32, fw: i32, sh: i32, sw: i32): void {
  const xRow = wp * ci * 4, xPos = sw * ci * 4, co8 = co & ~7, ow4 = ow & ~3;
  for (let b = 0; b < n; b++) {
    for (let r = 0; r < oh; r++) {
      const xr = x + <usize>(b * hp + r * sh) * <usize>xRow;
      const yr = y + <usize>((b * oh + r) * ow) * <usize>(co * 4);
      for (let o = 0; o < ow; ) {
        const np = o < ow4 ? 4 : 1;
        const xo = xr + <usize>(o * xPos), yo = yr + <usize>(o * co * 4);
        for (let k = 0; k < co; ) {
          const nv = k < co8 ? 2 : 1;
          const wk = w + <usize>(k * 4), yk = yo + <usize>(k * 4);
          if (np == 4 && nv == 2) tile(xo, wk, yk, 4, 2, fh, fw, ci, co, xRow, xPos);
          else if (np == 4) tile(xo, wk, yk, 4, 1, fh, fw, ci, co, xRow, xPos);
          else if (nv == 2) tile(xo, wk, yk, 1, 2, fh, fw, ci, co, xRow, xPos);
          else tile(xo, wk, yk, 1, 1, fh, fw, ci, co, xRow, xPos);
          k += nv * 4;
        }
        o += np;
      }
    }
  }
}
