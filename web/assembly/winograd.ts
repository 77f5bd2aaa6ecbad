// AssemblyScript source of the trainer's own 3x3 stride-1 convolution by Winograd's F(2x2, 3x3) (NHWC), SIMD.
//
// Why: the direct kernel (conv2d.ts) runs at ~95% of what 128-bit wasm SIMD can multiply-add on one core (measured
// 52-56 of 57 GFLOP/s), so only fewer multiplications make it faster. F(2x2, 3x3) computes a 2x2 block of outputs
// from a 4x4 block of input with 16 products per channel pair instead of 36 (2.25x fewer), at the price of additions
// (the transforms) and float32 rounding a little larger than the direct sum (well inside the checks' 1e-4).
// Both the forward convolution and the input gradient (a 3x3 stride-1 convolution of dy) of the CIFAR-size
// network's layers take this path.
//
// With d a 4x4 input block, g a 3x3 filter and
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1],
// the 2x2 output is A^T [(G g G^T) .* (B^T d B)] A. Summed over input channels, the element-wise product becomes, for
// each of the 16 positions xi of the 4x4 block, a matrix product V[xi] (blocks x ci) . U[xi] (ci x co). Blocks are
// processed `blk` at a time so that their V and M (the products) stay in the second-level cache.

import { madd, storeTile } from "./simd";

const HALF = f32x4.splat(0.5);

// Bytes from one of the 16 planes of V or M to the next: a multiple of 4 KB would put the 16 planes' stores of one
// block in the same first-level cache set (they evict each other), so one cache line more.
@inline export function planeBytes(blk: i32, channels: i32): usize {
  return <usize>(blk * channels * 4 + 64);
}

/** U[xi][c][k] = (G g G^T)[xi] for every input channel c and output channel k; w: f32 [3,3,ci,co], co % 4 == 0. */
function transformFilter(w: usize, u: usize, ci: i32, co: i32): void {
  const plane = <usize>(ci * co * 4), tap = <usize>(ci * co * 4);
  for (let c = 0; c < ci; c++) {
    for (let k = 0; k < co; k += 4) {
      const at = <usize>((c * co + k) * 4);
      // G g: 4 rows from the filter's 3 rows, for each of its 3 columns j
      const g = w + at;
      for (let j = 0; j < 3; j++) {
        const g0 = v128.load(g + <usize>j * tap), g1 = v128.load(g + <usize>(3 + j) * tap);
        const g2 = v128.load(g + <usize>(6 + j) * tap);
        const s = f32x4.mul(f32x4.add(g0, g2), HALF), h1 = f32x4.mul(g1, HALF);
        // rows of G g for column j, kept in u's rows 4a + j for now (column 3 is free scratch)
        v128.store(u + <usize>(0 * 4 + j) * plane + at, g0);
        v128.store(u + <usize>(1 * 4 + j) * plane + at, f32x4.add(s, h1));
        v128.store(u + <usize>(2 * 4 + j) * plane + at, f32x4.sub(s, h1));
        v128.store(u + <usize>(3 * 4 + j) * plane + at, g2);
      }
      // (G g) G^T: each row's 3 columns become 4
      for (let a = 0; a < 4; a++) {
        const r = u + <usize>(a * 4) * plane + at;
        const t0 = v128.load(r), t1 = v128.load(r + plane), t2 = v128.load(r + 2 * plane);
        const s = f32x4.mul(f32x4.add(t0, t2), HALF), h1 = f32x4.mul(t1, HALF);
        v128.store(r + plane, f32x4.add(s, h1));
        v128.store(r + 2 * plane, f32x4.sub(s, h1));
        v128.store(r + 3 * plane, t2);
      }
    }
  }
}

// Column b of d B for the row at r: d0 - d2, d1 + d2, d2 - d1, d1 - d3 (b constant once inlined).
@inline function rowTimesB(r: usize, pix: usize, b: i32): v128 {
  if (b == 0) return f32x4.sub(v128.load(r), v128.load(r + 2 * pix));
  if (b == 1) return f32x4.add(v128.load(r + pix), v128.load(r + 2 * pix));
  if (b == 2) return f32x4.sub(v128.load(r + 2 * pix), v128.load(r + pix));
  return f32x4.sub(v128.load(r + pix), v128.load(r + 3 * pix));
}

// Column b of B^T d B into planes b, 4 + b, 8 + b, 12 + b: B^T's rows combine the 4 rows' values.
@inline function inputColumn(p: usize, q: usize, pix: usize, row: usize, plane: usize, b: i32): void {
  const t0 = rowTimesB(p, pix, b), t1 = rowTimesB(p + row, pix, b), t2 = rowTimesB(p + 2 * row, pix, b);
  const t3 = rowTimesB(p + 3 * row, pix, b);
  const at = q + <usize>b * plane;
  v128.store(at, f32x4.sub(t0, t2));
  v128.store(at + 4 * plane, f32x4.add(t1, t2));
  v128.store(at + 8 * plane, f32x4.sub(t2, t1));
  v128.store(at + 12 * plane, f32x4.sub(t1, t3));
}

/** V[xi][b][c] = (B^T d B)[xi] of `count` blocks starting at block t0 of the padded input xp (f32 [n,hp,wp,ci]). */
export function transformInput(xp: usize, v: usize, t0: i32, count: i32, blk: i32, hp: i32, wp: i32, ci: i32,
  tilesH: i32, tilesW: i32): void {
  const pix = <usize>(ci * 4), row = <usize>(wp * ci * 4), plane = planeBytes(blk, ci);
  for (let b = 0; b < count; b++) {
    const t = t0 + b, tw = t % tilesW, th = (t / tilesW) % tilesH, nb = t / (tilesW * tilesH);
    const d = xp + (<usize>(nb * hp + 2 * th) * <usize>wp + <usize>(2 * tw)) * pix;
    const out = v + <usize>(b * ci * 4);
    for (let c = 0; c < ci; c += 4) {
      const p = d + <usize>(c * 4), q = out + <usize>(c * 4);
      // one column b of B^T d B at a time, in registers: each row's combination for b, then B^T down the rows
      // (storing B^T d and reading it back cost a third of the transform)
      inputColumn(p, q, pix, row, plane, 0);
      inputColumn(p, q, pix, row, plane, 1);
      inputColumn(p, q, pix, row, plane, 2);
      inputColumn(p, q, pix, row, plane, 3);
    }
  }
}

// One register tile of the product: `np` (4 or 1) blocks by `nv` (2 or 1) vectors of 4 output channels.
@inline function gemmTile(a: usize, u: usize, m: usize, np: i32, nv: i32, ci: i32, co: i32): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), e0 = f32x4.splat(0), e1 = f32x4.splat(0);
  const uStep = <usize>(co * 4), aPos = <usize>(ci * 4);
  let ap = a, up = u;
  for (let c = 0; c < ci; c++) {
    const w0 = v128.load(up);
    const s0 = v128.load32_splat(ap);
    a0 = madd(s0, w0, a0);
    if (nv > 1) {
      const w1 = v128.load(up, 16);
      a1 = madd(s0, w1, a1);
      if (np > 1) {
        const s1 = v128.load32_splat(ap + aPos);
        b0 = madd(s1, w0, b0); b1 = madd(s1, w1, b1);
        const s2 = v128.load32_splat(ap + 2 * aPos);
        c0 = madd(s2, w0, c0); c1 = madd(s2, w1, c1);
        const s3 = v128.load32_splat(ap + 3 * aPos);
        e0 = madd(s3, w0, e0); e1 = madd(s3, w1, e1);
      }
    } else if (np > 1) {
      b0 = madd(v128.load32_splat(ap + aPos), w0, b0);
      c0 = madd(v128.load32_splat(ap + 2 * aPos), w0, c0);
      e0 = madd(v128.load32_splat(ap + 3 * aPos), w0, e0);
    }
    ap += 4;
    up += uStep;
  }
  storeTile(m, <usize>(co * 4), np, nv, a0, a1, b0, b1, c0, c1, e0, e1);
}

/** M[xi] (count x co) = V[xi] (count x ci) . U[xi] (ci x co) for the `planes` positions xi (16, or 36: winograd4.ts). */
export function multiply(v: usize, u: usize, m: usize, count: i32, blk: i32, ci: i32, co: i32, planes: i32): void {
  const co8 = co & ~7, count4 = count & ~3;
  for (let xi = 0; xi < planes; xi++) {
    const vx = v + <usize>xi * planeBytes(blk, ci), ux = u + <usize>(xi * ci * co * 4), mx = m + <usize>xi * planeBytes(blk, co);
    for (let b = 0; b < count; ) {
      const np = b < count4 ? 4 : 1;
      const vb = vx + <usize>(b * ci * 4), mb = mx + <usize>(b * co * 4);
      for (let k = 0; k < co; ) {
        const nv = k < co8 ? 2 : 1;
        const uk = ux + <usize>(k * 4), mk = mb + <usize>(k * 4);
        if (np == 4 && nv == 2) gemmTile(vb, uk, mk, 4, 2, ci, co);
        else if (np == 4) gemmTile(vb, uk, mk, 4, 1, ci, co);
        else if (nv == 2) gemmTile(vb, uk, mk, 1, 2, ci, co);
        else gemmTile(vb, uk, mk, 1, 1, ci, co);
        k += nv * 4;
      }
      b += np;
    }
  }
}

// Column `col` of A^T M: M0 + M1 + M2 and M1 - M2 - M3 over the rows of M (4 planes apart).
@inline function rowSum(col: usize, plane: usize): v128 {
  return f32x4.add(f32x4.add(v128.load(col), v128.load(col + 4 * plane)), v128.load(col + 8 * plane));
}
@inline function rowDiff(col: usize, plane: usize): v128 {
  return f32x4.sub(f32x4.sub(v128.load(col + 4 * plane), v128.load(col + 8 * plane)), v128.load(col + 12 * plane));
}

/** y's 2x2 block of every one of `count` blocks from t0: A^T M A, the outputs inside [oh, ow] only. */
function transformOutput(m: usize, y: usize, t0: i32, count: i32, blk: i32, oh: i32, ow: i32, co: i32,
  tilesH: i32, tilesW: i32): void {
  const plane = planeBytes(blk, co), pix = <usize>(co * 4), row = <usize>(ow * co * 4);
  for (let b = 0; b < count; b++) {
    const t = t0 + b, tw = t % tilesW, th = (t / tilesW) % tilesH, nb = t / (tilesW * tilesH);
    const r0 = 2 * th, c0 = 2 * tw, down = r0 + 1 < oh, right = c0 + 1 < ow;
    const out = y + (<usize>(nb * oh + r0) * <usize>ow + <usize>c0) * pix;
    const src = m + <usize>(b * co * 4);
    for (let k = 0; k < co; k += 4) {
      const p = src + <usize>(k * 4);
      // A^T M: s0 = M0 + M1 + M2, s1 = M1 - M2 - M3 (rows of M), then the same across the 4 columns
      const p1 = p + plane, p2 = p + 2 * plane, p3 = p + 3 * plane;
      const s00 = rowSum(p, plane), s01 = rowSum(p1, plane), s02 = rowSum(p2, plane), s03 = rowSum(p3, plane);
      const s10 = rowDiff(p, plane), s11 = rowDiff(p1, plane), s12 = rowDiff(p2, plane), s13 = rowDiff(p3, plane);
      const q = out + <usize>(k * 4);
      v128.store(q, f32x4.add(f32x4.add(s00, s01), s02));
      if (right) v128.store(q + pix, f32x4.sub(f32x4.sub(s01, s02), s03));
      if (down) {
        v128.store(q + row, f32x4.add(f32x4.add(s10, s11), s12));
        if (right) v128.store(q + row + pix, f32x4.sub(f32x4.sub(s11, s12), s13));
      }
    }
  }
}

/**
 * y (f32 [n,oh,ow,co]) = the stride-1 convolution of xp (f32 [n,hp,wp,ci], already padded, with hp >= 2*ceil(oh/2)+2
 * and wp >= 2*ceil(ow/2)+2 so every 4x4 block lies inside) by w (f32 [3,3,ci,co]); ci and co multiples of 4.
 * Scratch: u (16*ci*co floats), v (16*(blk*ci+16)), m (16*(blk*co+16)); blk: blocks per pass.
 */
export function winograd3x3(xp: usize, w: usize, y: usize, u: usize, v: usize, m: usize, n: i32, hp: i32, wp: i32,
  ci: i32, oh: i32, ow: i32, co: i32, blk: i32): void {
  transformFilter(w, u, ci, co);
  const tilesH = (oh + 1) >> 1, tilesW = (ow + 1) >> 1, total = n * tilesH * tilesW;
  for (let t0 = 0; t0 < total; t0 += blk) {
    const count = min(blk, total - t0);
    transformInput(xp, v, t0, count, blk, hp, wp, ci, tilesH, tilesW);
    multiply(v, u, m, count, blk, ci, co, 16);
    transformOutput(m, y, t0, count, blk, oh, ow, co, tilesH, tilesW);
  }
}
