// Quantised parameter deltas against a shared shadow (kinds delta_q8, delta_q4, delta_q6z): twin of mlitb/codec/delta.py.
// delta_q6z (`bits` 6) is q8's layout with codes in -31..31, raw-deflated by the master; clients only decode it.
import { CodecError } from "./errors";
import { bound, inflate } from "./inflate";
import { checkCodes8, checkScales, dequantize, nBlocks, pack4, quantize, unpack4 } from "./quant";

export const rawSize = (length: number, bits: number): number =>
  4 * nBlocks(length) + (bits === 4 ? Math.ceil(length / 2) : length);
// the exact payload size (q8, q4), or the largest a deflated one may be (q6z)
export const payloadSize = (length: number, bits: number): number =>
  bits === 6 ? bound(rawSize(length, 6)) : rawSize(length, bits);

export function encode(delta: Float32Array, bits: number): [Uint8Array, Float32Array] {
  if (bits === 6) throw new Error("delta_q6z is compressed by the master only (mlitb/codec/deflate.py)");
  const [scales, codes] = quantize(delta, bits);
  const body = bits === 8 ? new Uint8Array(codes.buffer) : pack4(codes);
  const out = new Uint8Array(4 * scales.length + body.length);
  const v = new DataView(out.buffer);
  for (let b = 0; b < scales.length; b++) v.setFloat32(4 * b, scales[b], true);
  out.set(body, 4 * scales.length);
  return [out, dequantize(scales, codes)];
}

export function decode(payload: Uint8Array, length: number, bits: number): Float32Array {
  if (bits === 6) payload = inflate(payload, rawSize(length, 6)); // capped at the q8 layout's size
  if (payload.length !== rawSize(length, bits)) {
    throw new CodecError("CODEC_LENGTH", `delta payload of ${payload.length} bytes; ${rawSize(length, bits)} expected`);
  }
  const nb = nBlocks(length);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const scales = new Float32Array(nb);
  for (let b = 0; b < nb; b++) scales[b] = view.getFloat32(4 * b, true);
  checkScales(scales, bits);
  const body = payload.subarray(4 * nb);
  let codes: Int8Array;
  if (bits !== 4) {
    codes = new Int8Array(body.buffer, body.byteOffset, length);
    checkCodes8(codes, bits);
  } else {
    codes = unpack4(body, length);
  }
  return dequantize(scales, codes);
}

// The parameters a client holds: replaced by a dense frame, advanced by a delta frame.
export class Shadow {
  constructor(public values: Float32Array) {}
  advance(params: Float32Array, bits: number): Uint8Array {
    const delta = new Float32Array(params.length);
    for (let i = 0; i < delta.length; i++) delta[i] = params[i] - this.values[i];
    const [payload, sent] = encode(delta, bits);
    for (let i = 0; i < sent.length; i++) this.values[i] = this.values[i] + sent[i];
    return payload;
  }
  apply(payload: Uint8Array, bits: number): Float32Array {
    const sent = decode(payload, this.values.length, bits);
    for (let i = 0; i < sent.length; i++) this.values[i] = this.values[i] + sent[i];
    return this.values;
  }
}
