// Top-k sparsified uploads with error feedback (kinds topk_f32, topk_q8): twin of mlitb/codec/topk.py,
// byte for byte (layout and the reasons for DGC warm-up without momentum correction are documented there).
import { CodecError } from "./errors";
import { decodeIndices, encodeIndices } from "./indices";
import { checkCodes8, checkScales, dequantize, nBlocks, quantize } from "./quant";

const HEAD = 12;
const WARMUP_START = 0.25;

export function densityAt(round: number, density: number, warmupRounds: number): number {
  if (round >= warmupRounds) return density;
  const stage = Math.floor((4 * round) / warmupRounds);
  return Math.max(density, WARMUP_START / 4 ** stage);
}

export function countFor(density: number, length: number): number {
  return Math.min(length, Math.max(1, Math.ceil(density * length)));
}

// Ascending indices of the k largest |acc|; ties at the threshold go to the lowest indices. The threshold is
// found by a two-pass radix select on the float bits (non-negative float32 order equals uint32 order).
export function select(acc: Float32Array, k: number): Uint32Array {
  const n = acc.length;
  const out = new Uint32Array(Math.min(k, n));
  if (k >= n) {
    for (let i = 0; i < n; i++) out[i] = i;
    return out;
  }
  const mag = new Float32Array(n);
  for (let i = 0; i < n; i++) mag[i] = Math.abs(acc[i]);
  const bits = new Uint32Array(mag.buffer);
  const hist = new Uint32Array(65536);
  for (let i = 0; i < n; i++) hist[bits[i] >>> 16]++;
  let high = 65535;
  let above = 0;
  while (above + hist[high] < k) above += hist[high--];
  hist.fill(0);
  for (let i = 0; i < n; i++) if (bits[i] >>> 16 === high) hist[bits[i] & 0xffff]++;
  let low = 65535;
  while (above + hist[low] < k) above += hist[low--];
  const threshold = ((high << 16) | low) >>> 0;
  let ties = k - above;
  let at = 0;
  for (let i = 0; i < n; i++) {
    if (bits[i] > threshold || (bits[i] === threshold && ties-- > 0)) out[at++] = i;
  }
  return out;
}

export function encode(acc: Float32Array, k: number, quantized: boolean): [Uint8Array, Uint32Array, Float32Array] {
  const idx = select(acc, k);
  const [coding, indexBytes] = encodeIndices(idx, acc.length);
  const start = HEAD + indexBytes.length + (-indexBytes.length & 3);
  const kept = new Float32Array(idx.length);
  for (let i = 0; i < idx.length; i++) kept[i] = acc[idx[i]];
  let sent: Float32Array = kept;
  let tail: Uint8Array;
  if (quantized) {
    const [scales, codes] = quantize(kept, 8);
    tail = new Uint8Array(4 * scales.length + codes.length);
    for (let b = 0; b < scales.length; b++) new DataView(tail.buffer).setFloat32(4 * b, scales[b], true);
    tail.set(new Uint8Array(codes.buffer, codes.byteOffset, codes.length), 4 * scales.length);
    sent = dequantize(scales, codes);
  } else {
    tail = new Uint8Array(4 * kept.length);
    const v = new DataView(tail.buffer);
    for (let i = 0; i < kept.length; i++) v.setFloat32(4 * i, kept[i], true);
  }
  const out = new Uint8Array(start + tail.length);
  const head = new DataView(out.buffer);
  head.setUint32(0, idx.length, true);
  head.setUint8(4, coding);
  head.setUint32(8, indexBytes.length, true);
  out.set(indexBytes, HEAD);
  out.set(tail, start);
  return [out, idx, sent];
}

// Largest payload a trainer sends in a sparse kind (a sparse payload no smaller than dense goes dense: Uplink).
export const maxPayloadBytes = (length: number): number => 4 * length - 1;

// The dense float32 vector a payload stands for; CodecError (same codes, same check order as Python) otherwise.
export function decode(payload: Uint8Array, length: number, maxCount: number, quantized: boolean): Float32Array {
  if (payload.length < HEAD) throw new CodecError("CODEC_LENGTH", `sparse payload of ${payload.length} bytes is shorter than its header`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const k = view.getUint32(0, true);
  const coding = view.getUint8(4);
  const indexBytes = view.getUint32(8, true);
  if (payload[5] || payload[6] || payload[7]) throw new CodecError("CODEC_MALFORMED", "reserved bytes of a sparse payload are not 0");
  if (k > maxCount) throw new CodecError("CODEC_TOO_DENSE", `${k} coordinates; this project allows at most ${maxCount}`);
  const start = HEAD + indexBytes + ((4 - (indexBytes % 4)) % 4);
  const valuesBytes = quantized ? 4 * nBlocks(k) + k : 4 * k;
  if (payload.length !== start + valuesBytes) throw new CodecError("CODEC_LENGTH", `sparse payload of ${payload.length} bytes; its header implies ${start + valuesBytes}`);
  for (let i = HEAD + indexBytes; i < start; i++) if (payload[i]) throw new CodecError("CODEC_MALFORMED", "index padding is not 0");
  const idx = decodeIndices(coding, payload.subarray(HEAD, HEAD + indexBytes), k, length);
  let values: Float32Array;
  if (quantized) {
    const nb = nBlocks(k);
    const scales = new Float32Array(nb);
    for (let b = 0; b < nb; b++) scales[b] = view.getFloat32(start + 4 * b, true);
    checkScales(scales, 8);
    const codes = new Int8Array(payload.buffer, payload.byteOffset + start + 4 * nb, k);
    checkCodes8(codes);
    values = dequantize(scales, codes);
  } else {
    values = new Float32Array(k);
    for (let i = 0; i < k; i++) values[i] = view.getFloat32(start + 4 * i, true);
    for (let i = 0; i < k; i++) if (!Number.isFinite(values[i])) throw new CodecError("NON_FINITE", "a sparse value is NaN or infinite");
  }
  const dense = new Float32Array(length);
  for (let i = 0; i < k; i++) dense[idx[i]] = values[i];
  return dense;
}

// A trainer's residual: what it has computed but not yet sent.
export class ErrorFeedback {
  residual: Float32Array;
  constructor(length: number) {
    this.residual = new Float32Array(length);
  }
  compress(gradient: Float32Array, k: number, quantized: boolean): Uint8Array {
    const acc = this.residual;
    for (let i = 0; i < acc.length; i++) acc[i] = acc[i] + gradient[i];
    const [payload, idx, sent] = encode(acc, k, quantized);
    for (let i = 0; i < idx.length; i++) acc[idx[i]] = acc[idx[i]] - sent[i];
    return payload;
  }
  reset(length: number): void {
    this.residual = new Float32Array(length);
  }
}
