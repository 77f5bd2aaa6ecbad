// Quantised parameter deltas against a shared shadow (kinds delta_q8, delta_q4): twin of mlitb/codec/delta.py.
import { CodecError } from "./errors";
import { checkCodes8, checkScales, dequantize, nBlocks, pack4, quantize, unpack4 } from "./quant";

export const payloadSize = (length: number, bits: number): number =>
  4 * nBlocks(length) + (bits === 8 ? length : Math.ceil(length / 2));

export function encode(delta: Float32Array, bits: number): [Uint8Array, Float32Array] {
  const [scales, codes] = quantize(delta, bits);
  const body = bits === 8 ? new Uint8Array(codes.buffer) : pack4(codes);
  const out = new Uint8Array(4 * scales.length + body.length);
  const v = new DataView(out.buffer);
  for (let b = 0; b < scales.length; b++) v.setFloat32(4 * b, scales[b], true);
  out.set(body, 4 * scales.length);
  return [out, dequantize(scales, codes)];
}

export function decode(payload: Uint8Array, length: number, bits: number): Float32Array {
  if (payload.length !== payloadSize(length, bits)) {
    throw new CodecError("CODEC_LENGTH", `delta payload of ${payload.length} bytes; ${payloadSize(length, bits)} expected`);
  }
  const nb = nBlocks(length);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const scales = new Float32Array(nb);
  for (let b = 0; b < nb; b++) scales[b] = view.getFloat32(4 * b, true);
  checkScales(scales, bits);
  const body = payload.subarray(4 * nb);
  let codes: Int8Array;
  if (bits === 8) {
    codes = new Int8Array(body.buffer, body.byteOffset, length);
    checkCodes8(codes);
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
