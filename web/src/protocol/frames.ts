// Binary WebSocket frame codec: the browser twin of mlitb/protocol/frames.py (see docs/protocol.md).
import * as codec from "../codec/index";

export const VERSION = 1;
export const HEADER_SIZE = 24;

export enum MessageType {
  JOIN = 1,
  GRADIENT = 2,
  EVAL = 3,
  LEAVE = 4,
  WELCOME = 16,
  ALLOC = 17,
  PARAMS = 18,
  WORK = 19,
  ERROR = 20,
}

export interface Frame {
  type: MessageType;
  project: number;
  round: number;
  count: number;
  aux: number;
  value: number;
  kind: number; // payload kind of GRADIENT and PARAMS (codec/index.ts; 0 = dense float32), else 0
  payload: ArrayBuffer; // bytes after the header (a copy-free slice when aligned)
}

export interface FrameFields {
  project?: number;
  round?: number;
  count?: number;
  aux?: number;
  value?: number;
  kind?: number;
  payload?: ArrayBufferView | object | null;
}

export function encode(type: MessageType, f: FrameFields = {}): ArrayBuffer {
  let body: Uint8Array;
  if (f.payload == null) body = new Uint8Array(0);
  else if (ArrayBuffer.isView(f.payload)) body = new Uint8Array(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength);
  else body = new TextEncoder().encode(JSON.stringify(f.payload));
  const buf = new ArrayBuffer(HEADER_SIZE + body.byteLength);
  const v = new DataView(buf);
  v.setUint8(0, type);
  v.setUint8(1, VERSION);
  v.setUint16(2, f.kind ?? 0, true);
  v.setUint32(4, f.project ?? 0, true);
  v.setUint32(8, f.round ?? 0, true);
  v.setUint32(12, f.count ?? 0, true);
  v.setUint32(16, Math.max(0, Math.round(f.aux ?? 0)), true);
  v.setFloat32(20, f.value ?? 0, true);
  new Uint8Array(buf, HEADER_SIZE).set(body);
  return buf;
}

export function decode(buf: ArrayBuffer): Frame {
  if (buf.byteLength < HEADER_SIZE) throw new Error(`frame of ${buf.byteLength} bytes is shorter than the header`);
  const v = new DataView(buf);
  if (v.getUint8(1) !== VERSION) throw new Error(`protocol version ${v.getUint8(1)}; this client speaks ${VERSION}`);
  return {
    type: v.getUint8(0),
    project: v.getUint32(4, true),
    round: v.getUint32(8, true),
    count: v.getUint32(12, true),
    aux: v.getUint32(16, true),
    value: v.getFloat32(20, true),
    kind: v.getUint16(2, true),
    payload: buf.slice(HEADER_SIZE),
  };
}

// The payload of a GRADIENT or PARAMS frame as a dense float32 vector of paramCount values, decoded by its
// kind's codec (dense: a view); throws codec.CodecError for a wrong length or a kind this client lacks.
export const vector = (f: Frame, paramCount: number): Float32Array => codec.decode(f.kind, f.payload, paramCount);
export const uint32s = (f: Frame) => new Uint32Array(f.payload);
export const json = <T = any>(f: Frame): T => JSON.parse(new TextDecoder().decode(f.payload));

export interface Welcome {
  client_id: number;
  role: string;
  project_id: number;
  name: string;
  param_count: number;
  period_s: number;
  batch_size: number;
  model_url: string;
  // communication (docs/protocol.md "Payload kinds"); fixed for a project's life
  upload_codec: string;
  topk_density: number;
  topk_warmup_rounds: number;
  download_codec: string;
  algorithm: "gradient" | "local_sgd";
  inner_optimizer: "sgd" | "adam";
  inner_lr: number;
  volunteer?: string | null; // the public id the master credits this connection's results to
  data: {
    version: string; // content hash of the data set: cached examples of the same version are reused
    base_version: string; // examples are only appended while this stays: held examples stay valid
    train_url: string;
    test_url: string | null;
    shape: [number, number, number];
    num_classes: number;
    train_count: number;
    test_count: number;
    labels: string[];
  } | null;
}

export interface ServerError {
  code: string;
  number: number;
  message: string;
}
