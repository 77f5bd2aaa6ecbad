// Helpers shared by the trainer's own wasm kernels (inlined: they must compile to straight-line SIMD).

// relaxed SIMD's multiply-add (fused where the CPU has FMA) in the relaxed build; multiply, then add, otherwise
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

// Stores a register tile of `rows` (4 or 1) rows, `stride` bytes apart, by `nv` (2 or 1) vectors: a, b, c, e are its
// rows, 0 and 1 its vectors.
@inline export function storeTile(p: usize, stride: usize, rows: i32, nv: i32,
  a0: v128, a1: v128, b0: v128, b1: v128, c0: v128, c1: v128, e0: v128, e1: v128): void {
  v128.store(p, a0);
  if (nv > 1) v128.store(p, a1, 16);
  if (rows > 1) {
    v128.store(p + stride, b0); v128.store(p + 2 * stride, c0); v128.store(p + 3 * stride, e0);
    if (nv > 1) { v128.store(p + stride, b1, 16); v128.store(p + 2 * stride, c1, 16); v128.store(p + 3 * stride, e1, 16); }
  }
}
