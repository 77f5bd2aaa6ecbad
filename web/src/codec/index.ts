// Payload kinds: the browser twin of mlitb/codec/__init__.py (numbers, names and errors match; docs/protocol.md).
// The header's u16 at offset 2 says how a GRADIENT or PARAMS payload is encoded; 0 = dense float32.
import { dense } from "./dense";
import * as delta from "./delta";
import * as topk from "./topk";

export enum Kind {
  DENSE_F32 = 0,
  TOPK_F32 = 1,
  TOPK_Q8 = 2,
  DELTA_Q8 = 3,
  DELTA_Q4 = 4,
  DELTA_Q6Z = 5,
  DENSE_F32_COMMITTED = 6, // dense with per-batch commitments, sent by trainers only (compute/commitments.ts)
}

// An error with the same stable code the server uses for the same refusal (mlitb/errors.py).
export class CodecError extends Error {
  constructor(readonly code: "WRONG_LENGTH" | "UNKNOWN_PAYLOAD_KIND", message: string) {
    super(`${code}: ${message}`);
  }
}

export interface Codec {
  kind: Kind;
  name: string;
  // payload -> dense float32 vector of paramCount values; throws CodecError only
  decode(payload: ArrayBuffer, paramCount: number): Float32Array;
  // dense float32 vector -> payload bytes (a view where the codec allows)
  encode(vector: Float32Array): Uint8Array;
  maxPayloadBytes(paramCount: number): number;
}

const codecs = new Map<number, Codec>();

export function register(codec: Codec): void {
  if (!(codec.kind in Kind)) throw new Error(`payload kind ${codec.kind} is not reserved in Kind`);
  if (codecs.has(codec.kind)) throw new Error(`payload kind ${codec.kind} already has a codec`);
  codecs.set(codec.kind, codec);
}

export function get(kind: number): Codec {
  const codec = codecs.get(kind);
  if (codec === undefined) {
    const name = kind in Kind ? Kind[kind].toLowerCase() : "unassigned";
    throw new CodecError("UNKNOWN_PAYLOAD_KIND", `payload kind ${kind} (${name}) is not supported by this client`);
  }
  return codec;
}

export const supported = (kind: number): boolean => codecs.has(kind);
export const decode = (kind: number, payload: ArrayBuffer, paramCount: number): Float32Array =>
  get(kind).decode(payload, paramCount);

register(dense);
// the update codecs (mlitb/codec/topk.py, delta.py): registry decoding is bounded by the parameter count only;
// a project's density and codec are enforced by the master (and a trainer's Uplink encodes with its residual)
for (const [kind, name, q] of [[Kind.TOPK_F32, "topk_f32", false], [Kind.TOPK_Q8, "topk_q8", true]] as const) {
  register({ kind, name, decode: (p, n) => topk.decode(new Uint8Array(p), n, n, q),
    encode: (v) => topk.encode(v, topk.countFor(0.01, v.length), q)[0], maxPayloadBytes: (n) => topk.maxPayloadBytes(n) });
}
for (const [kind, name, bits] of [[Kind.DELTA_Q8, "delta_q8", 8], [Kind.DELTA_Q4, "delta_q4", 4],
  [Kind.DELTA_Q6Z, "delta_q6z", 6]] as const) {
  register({ kind, name, decode: (p, n) => delta.decode(new Uint8Array(p), n, bits), encode: (v) => delta.encode(v, bits)[0],
    maxPayloadBytes: (n) => delta.payloadSize(n, bits) });
}
