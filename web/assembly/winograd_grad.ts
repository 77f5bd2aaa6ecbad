// AssemblyScript source of the trainer's own 3x3 stride-1 filter gradient by Winograd (NHWC), SIMD.
//
// Why: the direct filter gradient (conv_filter_grad.ts) runs near the multiply-add peak of 128-bit wasm SIMD and was
// the largest share of a CIFAR-size training step once the forward convolution went by Winograd (winograd.ts).
// The forward F(2x2, 3x3) computes, per 2x2 output block E-weighted, sum e.y = sum over xi of (A e A^T) (G g G^T)
// (B^T d B); its derivative with respect to the filter g is the filter gradient of the block:
//   dW (3x3) = G^T [ (A E A^T) .* (B^T D B) ] G,
// E the 2x2 block of dy, D the 4x4 block of padded x that produced it, A, B, G the forward's matrices. Summed over
// every block of the batch, the element-wise product becomes, for each of the 16 positions xi, a matrix product
// V[xi]^T (ci x blocks) . E[xi] (blocks x co), accumulated into M[xi] (ci x co): 16 products per channel pair and
// block of 4 outputs instead of 36. The input transform (B^T D B) is the forward's.

import { madd, storeTile } from "./simd";
import { planeBytes, transformInput } from "./winograd";

const HALF = f32x4.splat(0.5);

/** E[xi][b][k] = (A E A^T)[xi] of the 2x2 dy blocks of `count` blocks from t0; outputs outside [oh, ow] are 0. */
function transformDy(dy: usize, e: usize, t0: i32, count: i32, blk: i32, oh: i32, ow: i32, co: i32,
  tilesH: i32, tilesW: i32): void {
  const plane = planeBytes(blk, co), pix = <usize>(co * 4), row = <usize>(ow * co * 4);
  const zero = f32x4.splat(0);
  for (let b = 0; b < count; b++) {
    const t = t0 + b, tw = t % tilesW, th = (t / tilesW) % tilesH, nb = t / (tilesW * tilesH);
    const r0 = 2 * th, c0 = 2 * tw, down = r0 + 1 < oh, right = c0 + 1 < ow;
    const src = dy + (<usize>(nb * oh + r0) * <usize>ow + <usize>c0) * pix;
    const out = e + <usize>(b * co * 4);
    for (let k = 0; k < co; k += 4) {
      const p = src + <usize>(k * 4);
      const e00 = v128.load(p), e01 = right ? v128.load(p + pix) : zero;
      const e10 = down ? v128.load(p + row) : zero, e11 = down && right ? v128.load(p + row + pix) : zero;
      // A e over the rows (A = [1 0; 1 1; 1 -1; 0 -1]), then over the columns
      const q = out + <usize>(k * 4);
      spread(q, plane, e00, e01);
      spread(q + 4 * plane, plane, f32x4.add(e00, e10), f32x4.add(e01, e11));
      spread(q + 8 * plane, plane, f32x4.sub(e00, e10), f32x4.sub(e01, e11));
      spread(q + 12 * plane, plane, f32x4.neg(e10), f32x4.neg(e11));
    }
  }
}

// One row (f0, f1) of A e times A^T: f0, f0 + f1, f0 - f1, -f1 into 4 consecutive planes.
@inline function spread(q: usize, plane: usize, f0: v128, f1: v128): void {
  v128.store(q, f0);
  v128.store(q + plane, f32x4.add(f0, f1));
  v128.store(q + 2 * plane, f32x4.sub(f0, f1));
  v128.store(q + 3 * plane, f32x4.neg(f1));
}

// M[xi] tile of `nc` (4 or 1) input channels by `nv` (2 or 1) vectors of output channels += V^T . E over the blocks.
@inline function accTile(v: usize, e: usize, m: usize, nc: i32, nv: i32, count: i32, ci: i32, co: i32): void {
  const coB = <usize>(co * 4), vStep = <usize>(ci * 4), eStep = <usize>(co * 4);
  let a0 = v128.load(m), a1 = nv > 1 ? v128.load(m, 16) : f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), c0 = f32x4.splat(0), c1 = f32x4.splat(0);
  let e0 = f32x4.splat(0), e1 = f32x4.splat(0);
  if (nc > 1) {
    b0 = v128.load(m + coB); c0 = v128.load(m + 2 * coB); e0 = v128.load(m + 3 * coB);
    if (nv > 1) { b1 = v128.load(m + coB, 16); c1 = v128.load(m + 2 * coB, 16); e1 = v128.load(m + 3 * coB, 16); }
  }
  let vp = v, ep = e;
  for (let b = 0; b < count; b++) {
    const d0 = v128.load(ep);
    const s0 = v128.load32_splat(vp);
    a0 = madd(s0, d0, a0);
    if (nv > 1) {
      const d1 = v128.load(ep, 16);
      a1 = madd(s0, d1, a1);
      if (nc > 1) {
        const s1 = v128.load32_splat(vp + 4);
        b0 = madd(s1, d0, b0); b1 = madd(s1, d1, b1);
        const s2 = v128.load32_splat(vp + 8);
        c0 = madd(s2, d0, c0); c1 = madd(s2, d1, c1);
        const s3 = v128.load32_splat(vp + 12);
        e0 = madd(s3, d0, e0); e1 = madd(s3, d1, e1);
      }
    } else if (nc > 1) {
      b0 = madd(v128.load32_splat(vp + 4), d0, b0);
      c0 = madd(v128.load32_splat(vp + 8), d0, c0);
      e0 = madd(v128.load32_splat(vp + 12), d0, e0);
    }
    vp += vStep;
    ep += eStep;
  }
  storeTile(m, coB, nc, nv, a0, a1, b0, b1, c0, c1, e0, e1);
}

function accumulate(v: usize, e: usize, m: usize, count: i32, blk: i32, ci: i32, co: i32): void {
  const ci4 = ci & ~3, co8 = co & ~7;
  for (let xi = 0; xi < 16; xi++) {
    const vx = v + <usize>xi * planeBytes(blk, ci), ex = e + <usize>xi * planeBytes(blk, co);
    const mx = m + <usize>(xi * ci * co * 4);
    for (let c = 0; c < ci; ) {
      const nc = c < ci4 ? 4 : 1;
      const vc = vx + <usize>(c * 4), mc = mx + <usize>(c * co * 4);
      for (let k = 0; k < co; ) {
        const nv = k < co8 ? 2 : 1;
        const ek = ex + <usize>(k * 4), mk = mc + <usize>(k * 4);
        if (nc == 4 && nv == 2) accTile(vc, ek, mk, 4, 2, count, ci, co);
        else if (nc == 4) accTile(vc, ek, mk, 4, 1, count, ci, co);
        else if (nv == 2) accTile(vc, ek, mk, 1, 2, count, ci, co);
        else accTile(vc, ek, mk, 1, 1, count, ci, co);
        k += nv * 4;
      }
      c += nc;
    }
  }
}

// G^T applied to 4 values (G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1]): the 3 results into r, r + step, r + 2 step.
@inline function gt(r: usize, step: usize, m0: v128, m1: v128, m2: v128, m3: v128): void {
  const s = f32x4.mul(f32x4.add(m1, m2), HALF);
  v128.store(r, f32x4.add(m0, s));
  v128.store(r + step, f32x4.mul(f32x4.sub(m1, m2), HALF));
  v128.store(r + 2 * step, f32x4.add(s, m3));
}

/** dw (f32 [3,3,ci,co]) = G^T M G for every channel pair; M (16 planes of ci x co) is overwritten as scratch. */
function transformGrad(m: usize, dw: usize, ci: i32, co: i32): void {
  const plane = <usize>(ci * co * 4);
  for (let c = 0; c < ci; c++) {
    for (let k = 0; k < co; k += 4) {
      const at = <usize>((c * co + k) * 4);
      const p = m + at;
      // over the rows of each of the 4 columns j: rows 0..2 of the result back into planes j, 4 + j, 8 + j
      for (let j = 0; j < 4; j++) {
        const col = p + <usize>j * plane;
        gt(col, 4 * plane, v128.load(col), v128.load(col + 4 * plane), v128.load(col + 8 * plane),
          v128.load(col + 12 * plane));
      }
      // over the columns of each of the 3 rows i, into dW[i][0..2]
      for (let i = 0; i < 3; i++) {
        const r = p + <usize>(4 * i) * plane;
        gt(dw + <usize>(3 * i) * plane + at, plane, v128.load(r), v128.load(r + plane), v128.load(r + 2 * plane),
          v128.load(r + 3 * plane));
      }
    }
  }
}

/**
 * dw (f32 [3,3,ci,co]) = the filter gradient of a stride-1 3x3 convolution: xp (f32 [n,hp,wp,ci]) is x padded as
 * winograd3x3 needs it (hp >= 2*ceil(oh/2)+2, wp >= 2*ceil(ow/2)+2), dy: f32 [n,oh,ow,co]; ci and co multiples of 4.
 * Scratch: v (16*(blk*ci+16) floats), e (16*(blk*co+16)), m (16*ci*co); blk: blocks per pass.
 */
export function winogradFilterGrad(xp: usize, dy: usize, dw: usize, v: usize, e: usize, m: usize, n: i32, hp: i32,
  wp: i32, ci: i32, oh: i32, ow: i32, co: i32, blk: i32): void {
  memory.fill(m, 0, <usize>(16 * ci * co * 4));
  const tilesH = (oh + 1) >> 1, tilesW = (ow + 1) >> 1, total = n * tilesH * tilesW;
  for (let t0 = 0; t0 < total; t0 += blk) {
    const count = min(blk, total - t0);
    transformInput(xp, v, t0, count, blk, hp, wp, ci, tilesH, tilesW);
    transformDy(dy, e, t0, count, blk, oh, ow, co, tilesH, tilesW);
    accumulate(v, e, m, count, blk, ci, co);
  }
  transformGrad(m, dw, ci, co);
}
