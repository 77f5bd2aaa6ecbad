// Index coding for sparse payloads (delta varints or bitmap): twin of mlitb/codec/indices.py, byte for byte.
import { CodecError } from "./errors";

export const DELTA = 0;
export const BITMAP = 1;

function varintSize(v: number): number {
  return v < 2 ** 7 ? 1 : v < 2 ** 14 ? 2 : v < 2 ** 21 ? 3 : v < 2 ** 28 ? 4 : 5;
}

// (coding, bytes) for strictly increasing indices into a vector of `length`; the smaller wins, delta on a tie.
export function encodeIndices(indices: Uint32Array, length: number): [number, Uint8Array] {
  let size = 0;
  let prev = 0;
  for (let i = 0; i < indices.length; i++) {
    size += varintSize(indices[i] - prev);
    prev = indices[i];
  }
  const bitmapSize = Math.ceil(length / 8);
  if (size <= bitmapSize) {
    const out = new Uint8Array(size);
    let at = 0;
    prev = 0;
    for (let i = 0; i < indices.length; i++) {
      let d = indices[i] - prev;
      prev = indices[i];
      while (d >= 0x80) {
        out[at++] = (d & 0x7f) | 0x80;
        d = Math.floor(d / 128);
      }
      out[at++] = d;
    }
    return [DELTA, out];
  }
  const out = new Uint8Array(bitmapSize);
  for (let i = 0; i < indices.length; i++) out[indices[i] >>> 3] |= 1 << (indices[i] & 7);
  return [BITMAP, out];
}

// Exactly `count` strictly increasing indices below `length`; CodecError otherwise. The checks run in the
// same order as the Python twin's, so a payload with several faults gets the same code from both.
export function decodeIndices(coding: number, data: Uint8Array, count: number, length: number): Uint32Array {
  if (coding === DELTA) return decodeDeltas(data, count, length);
  if (coding === BITMAP) return decodeBitmap(data, count, length);
  throw new CodecError("CODEC_MALFORMED", `unknown index coding ${coding}`);
}

function decodeDeltas(data: Uint8Array, count: number, length: number): Uint32Array {
  let ends = 0;
  for (let i = 0; i < data.length; i++) if (data[i] < 0x80) ends++;
  if (count === 0 && data.length) throw new CodecError("CODEC_MALFORMED", "index bytes given for zero coordinates");
  if (ends !== count || (count && data[data.length - 1] >= 0x80)) {
    throw new CodecError("CODEC_MALFORMED", `index section holds ${ends} complete varints, header says ${count}`);
  }
  const values = new Float64Array(count);
  let longest = 0;
  let overlong = false;
  let at = 0;
  for (let i = 0; i < count; i++) {
    let value = 0;
    let n = 0;
    for (;;) {
      const b = data[at++];
      value += (b & 0x7f) * 2 ** (7 * n);
      n++;
      if (b < 0x80) {
        if (b === 0 && n > 1) overlong = true;
        break;
      }
    }
    longest = Math.max(longest, n);
    values[i] = value;
  }
  if (longest > 5) throw new CodecError("CODEC_MALFORMED", "a varint is longer than 5 bytes");
  if (overlong) throw new CodecError("CODEC_MALFORMED", "a varint is not in its shortest form");
  for (let i = 0; i < count; i++) {
    if (values[i] > 0xffffffff) throw new CodecError("CODEC_INDEX_RANGE", "an index delta exceeds 32 bits");
  }
  for (let i = 1; i < count; i++) {
    if (values[i] === 0) throw new CodecError("CODEC_INDEX_ORDER", "indices are not strictly increasing (a zero gap)");
  }
  const out = new Uint32Array(count);
  let index = 0;
  for (let i = 0; i < count; i++) {
    index += values[i];
    if (index >= length) throw new CodecError("CODEC_INDEX_RANGE", `index ${index} is outside the ${length} parameters`);
    out[i] = index;
  }
  return out;
}

function decodeBitmap(data: Uint8Array, count: number, length: number): Uint32Array {
  if (data.length !== Math.ceil(length / 8)) throw new CodecError("CODEC_MALFORMED", `bitmap of ${data.length} bytes for ${length} parameters`);
  let n = 0;
  for (let byte = 0; byte < data.length; byte++) {
    for (let b = data[byte]; b; b &= b - 1) {
      if (byte * 8 + 31 - Math.clz32(b & -b) >= length) throw new CodecError("CODEC_INDEX_RANGE", "bitmap sets a bit past the last parameter");
      n++;
    }
  }
  if (n !== count) throw new CodecError("CODEC_MALFORMED", `bitmap sets ${n} bits, header says ${count}`);
  const out = new Uint32Array(count);
  let at = 0;
  for (let byte = 0; byte < data.length; byte++) {
    for (let b = data[byte]; b; b &= b - 1) out[at++] = byte * 8 + 31 - Math.clz32(b & -b);
  }
  return out;
}
