// Block quantisation to 8, 6 or 4 signed bits with float32 block scales: twin of mlitb/codec/quant.py.
// Every step is rounded to float32 (Math.fround) so the bytes equal NumPy's float32 arithmetic.
import { CodecError } from "./errors";

export const BLOCK = 256;
const F32_MAX = 3.4028234663852886e38;
const f = Math.fround;

export const levels = (bits: number): number => (bits === 8 ? 127 : bits === 6 ? 31 : 7);
export const nBlocks = (n: number): number => Math.ceil(n / BLOCK);

// [scales, codes] for finite values.
export function quantize(values: Float32Array, bits: number): [Float32Array, Int8Array] {
  const level = levels(bits);
  const scales = new Float32Array(nBlocks(values.length));
  const codes = new Int8Array(values.length);
  for (let b = 0; b < scales.length; b++) {
    const lo = b * BLOCK;
    const hi = Math.min(values.length, lo + BLOCK);
    let max = 0;
    for (let i = lo; i < hi; i++) max = Math.max(max, Math.abs(values[i]));
    const scale = f(max / level);
    scales[b] = scale;
    if (scale === 0) continue;
    for (let i = lo; i < hi; i++) {
      const q = Math.floor(f(f(values[i] / scale) + 0.5));
      codes[i] = Math.max(-level, Math.min(level, q));
    }
  }
  return [scales, codes];
}

export function dequantize(scales: Float32Array, codes: Int8Array, out = new Float32Array(codes.length)): Float32Array {
  for (let i = 0; i < codes.length; i++) out[i] = codes[i] * scales[(i / BLOCK) | 0];
  return out;
}

export function pack4(codes: Int8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(codes.length / 2));
  for (let i = 0; i < codes.length; i++) out[i >> 1] |= (codes[i] & 0x0f) << ((i & 1) * 4);
  return out;
}

export function unpack4(data: Uint8Array, n: number): Int8Array {
  if (n % 2 && data[data.length - 1] >> 4) throw new CodecError("CODEC_BAD_CODE", "the pad nibble of a q4 payload is not 0");
  const codes = new Int8Array(n);
  for (let i = 0; i < n; i++) {
    const nib = (data[i >> 1] >> ((i & 1) * 4)) & 0x0f;
    codes[i] = nib > 7 ? nib - 16 : nib;
  }
  for (let i = 0; i < n; i++) if (codes[i] === -8) throw new CodecError("CODEC_BAD_CODE", "q4 code -8 is outside -7..7");
  return codes;
}

export function checkScales(scales: Float32Array, bits: number): void {
  for (let i = 0; i < scales.length; i++) {
    if (!Number.isFinite(scales[i])) throw new CodecError("CODEC_BAD_SCALE", "a block scale is NaN or infinite");
  }
  for (let i = 0; i < scales.length; i++) {
    if (scales[i] < 0 || scales[i] > F32_MAX / levels(bits)) throw new CodecError("CODEC_BAD_SCALE", "a block scale is negative or too large");
  }
}

// Byte codes (q8, and q6 after inflating) must lie in -L..L.
export function checkCodes8(codes: Int8Array, bits = 8): void {
  const level = levels(bits);
  for (let i = 0; i < codes.length; i++) {
    if (codes[i] < -level || codes[i] > level) throw new CodecError("CODEC_BAD_CODE", `q${bits} code outside -${level}..${level}`);
  }
}
