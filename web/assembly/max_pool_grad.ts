// AssemblyScript source of the trainer's own max-pool gradient for tiling pools (window == stride, no padding: the
// usual 2x2/2), NHWC, SIMD over 4 channels.
//
// Why: composed from XNNPACK element-wise kernels (src/compute/kernels/max_pool_grad.ts) it streams x-sized
// temporaries through memory seven times: 5% of a CIFAR-size training step once the convolutions went by Winograd.
// Here one pass reads x, y and dy once and writes dx once. As in TF, PyTorch and the cpu backend, a window's
// gradient goes to its FIRST maximum in row-major order (ties are common: ReLU outputs over a blank background),
// a NaN counting as the maximum where the pooled value is NaN.

// lanes where x is its window's maximum y (or both are NaN)
@inline function isMax(x: v128, y: v128): v128 {
  return v128.or(f32x4.eq(x, y), v128.and(f32x4.ne(x, x), f32x4.ne(y, y)));
}

/**
 * dx (f32 [n, oh*fh, ow*fw, c]) = dy (f32 [n,oh,ow,c]) routed to the first maximum of each window of x (same shape
 * as dx), y (f32 [n,oh,ow,c]) being the pooled maxima.
 */
export function maxPoolGrad(x: usize, y: usize, dy: usize, dx: usize, n: i32, oh: i32, ow: i32, fh: i32, fw: i32,
  c: i32): void {
  const pix = <usize>(c * 4), row = <usize>(ow * fw) * pix, c4 = c & ~3;
  for (let r = 0; r < n * oh; r++) {
    for (let o = 0; o < ow; o++) {
      const out = <usize>(r * ow + o) * pix;
      const win = <usize>(r * fh) * row + <usize>(o * fw) * pix;
      for (let k = 0; k < c4; k += 4) {
        const kb = <usize>(k * 4);
        const yv = v128.load(y + out + kb), g = v128.load(dy + out + kb);
        let taken = i32x4.splat(0);
        for (let i = 0; i < fh; i++) {
          for (let j = 0; j < fw; j++) {
            const at = win + <usize>i * row + <usize>j * pix + kb;
            const first = v128.andnot(isMax(v128.load(x + at), yv), taken);
            taken = v128.or(taken, first);
            v128.store(dx + at, v128.and(g, first));
          }
        }
      }
      for (let k = c4; k < c; k++) {
        const kb = <usize>(k * 4);
        const yv = load<f32>(y + out + kb), g = load<f32>(dy + out + kb);
        let taken = false;
        for (let i = 0; i < fh; i++) {
          for (let j = 0; j < fw; j++) {
            const at = win + <usize>i * row + <usize>j * pix + kb;
            const xv = load<f32>(x + at);
            const first = !taken && (xv == yv || (isNaN(xv) && isNaN(yv)));
            taken = taken || first;
            store<f32>(dx + at, first ? g : 0);
          }
        }
      }
    }
  }
}
