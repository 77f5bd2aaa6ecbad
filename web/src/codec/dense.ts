// Payload kind 0, dense float32: the twin of mlitb/codec/dense.py (P little-endian float32, no header).
import type { Codec } from "./index";
import { CodecError, Kind } from "./index";

export const dense: Codec = {
  kind: 0 as Kind,
  name: "dense_f32",
  decode(payload: ArrayBuffer, paramCount: number): Float32Array {
    if (payload.byteLength !== 4 * paramCount) {
      throw new CodecError("WRONG_LENGTH", `${payload.byteLength} bytes; expected ${4 * paramCount} (${paramCount} float32)`);
    }
    return new Float32Array(payload);
  },
  encode(vector: Float32Array): Uint8Array {
    return new Uint8Array(vector.buffer, vector.byteOffset, vector.byteLength);
  },
  maxPayloadBytes: (paramCount: number) => 4 * paramCount,
};
