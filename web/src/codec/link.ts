// A client's ends of a compressed link (twin of mlitb/codec/link.py): the trainer's upload encoder with its
// error-feedback residual, and the parameters as dense PARAMS frames replace them and delta frames advance them.
import { CodecError } from "./errors";
import * as delta from "./delta";
import * as topk from "./topk";

export const DENSE_F32 = 0;
export const TOPK_F32 = 1;
export const TOPK_Q8 = 2;
export const DELTA_Q8 = 3;
export const DELTA_Q4 = 4;
export const DELTA_Q6Z = 5;
const DELTA_BITS: Record<number, number> = { [DELTA_Q8]: 8, [DELTA_Q4]: 4, [DELTA_Q6Z]: 6 };
const UPLOAD_KINDS: Record<string, number> = { float32: DENSE_F32, topk: TOPK_F32, topk_q8: TOPK_Q8 };

export interface UploadConfig {
  upload_codec: string;
  topk_density: number;
  topk_warmup_rounds: number;
}

export class Uplink {
  readonly kind: number;
  private feedback: topk.ErrorFeedback;
  constructor(private cfg: UploadConfig, length: number) {
    const kind = UPLOAD_KINDS[cfg.upload_codec];
    if (kind === undefined) throw new CodecError("CODEC_NOT_ALLOWED", `unknown upload codec ${cfg.upload_codec}`);
    this.kind = kind;
    this.feedback = new topk.ErrorFeedback(length);
  }
  // [kind, payload] for this round's result (a summed gradient or a parameter change times samples).
  encode(result: Float32Array, round: number): [number, Uint8Array] {
    if (this.kind === DENSE_F32) return [DENSE_F32, new Uint8Array(result.buffer, result.byteOffset, result.byteLength)];
    const k = topk.countFor(topk.densityAt(round, this.cfg.topk_density, this.cfg.topk_warmup_rounds), result.length);
    if (this.feedback.residual.length !== result.length) this.feedback.reset(result.length);
    const acc = this.feedback.residual;
    for (let i = 0; i < acc.length; i++) acc[i] = acc[i] + result[i];
    const [payload, idx, sent] = topk.encode(acc, k, this.kind === TOPK_Q8);
    if (payload.length >= 4 * acc.length) { // no smaller than dense (a high density): send all of it, keep nothing
      this.feedback.reset(acc.length);
      return [DENSE_F32, new Uint8Array(acc.buffer, acc.byteOffset, acc.byteLength)];
    }
    for (let i = 0; i < idx.length; i++) acc[idx[i]] = acc[idx[i]] - sent[i];
    return [this.kind, payload];
  }
}

export class Downlink {
  params: Float32Array | null = null;
  round = -1;
  // The parameters after a PARAMS frame (`count` = its header's parameter count): dense replaces, a delta must be
  // built on the round this client holds.
  apply(kind: number, payload: Uint8Array, round: number, baseRound: number, count: number): Float32Array {
    if (kind === DENSE_F32) {
      if (payload.length !== 4 * count) throw new CodecError("WRONG_LENGTH", `${payload.length} bytes for ${count} float32`);
      this.params = new Float32Array(payload.slice().buffer);
    } else if (DELTA_BITS[kind] !== undefined) {
      if (!this.params || baseRound !== this.round) {
        throw new CodecError("CODEC_NOT_ALLOWED", `delta built on round ${baseRound}; this client holds round ${this.round}`);
      }
      const d = delta.decode(payload, this.params.length, DELTA_BITS[kind]);
      for (let i = 0; i < d.length; i++) this.params[i] = this.params[i] + d[i];
    } else {
      throw new CodecError("CODEC_NOT_ALLOWED", `payload kind ${kind} is not a parameter encoding`);
    }
    this.round = round;
    return this.params;
  }
}
