// Per-batch commitments for spot checks: twin of mlitb/trust/commitments.py (the directions, the Committer) and
// mlitb/codec/committed.py (the trailer of payload kind 6). A trainer following a WORK seed sends, for each batch
// of c examples of the seeded order, K projections <G_b, r_j> of the batch's summed gradient onto +-1 directions
// derived from the seed, and the batch's summed loss; the master checks them against the sum and recomputes one
// batch (docs/protocol.md, "Commitments").

export const K = 4;
export const MAX_BATCHES = 4096; // a trainer with more merges neighbouring batches (c doubles)
const GOLDEN = 0x9e3779b9;

// murmur3's 32-bit finaliser (Math.imul: the same wrapping products as NumPy's uint32)
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The words whose bits are the signs of direction j (bit i & 31 of word i >> 5; a set bit is -1). */
export function directionWords(seed: number, j: number, count: number): Uint32Array {
  const key = fmix32((seed + Math.imul(j + 1, GOLDEN)) >>> 0);
  const words = new Uint32Array(Math.ceil(count / 32));
  for (let w = 0; w < words.length; w++) words[w] = fmix32((Math.imul(w, GOLDEN) + key) >>> 0);
  return words;
}

/** The K directions of a WORK seed, row-major [K][count], each value +1 or -1. */
export function directions(seed: number, count: number): Float32Array {
  const out = new Float32Array(K * count);
  for (let j = 0; j < K; j++) {
    const words = directionWords(seed, j, count);
    for (let i = 0; i < count; i++) out[j * count + i] = (words[i >>> 5] >>> (i & 31)) & 1 ? -1 : 1;
  }
  return out;
}

export interface Commitment {
  batchSize: number;
  projections: Float32Array; // [B][K]
  losses: Float32Array; // [B]
}

/** Adds each piece of the seeded order in turn (a piece never crosses a batch boundary: `room()` says how far). */
export class Committer {
  private projections: number[] = []; // [B][K], summed in double precision
  private losses: number[] = [];
  private filled = 0; // examples in the open batch (0: the next piece opens a new one)

  constructor(readonly batchSize: number) {}

  room(): number {
    return this.batchSize - this.filled;
  }

  add(projections: ArrayLike<number>, loss: number, examples: number): void {
    if (examples > this.room()) throw new Error(`${examples} examples cross a batch boundary (${this.room()} left)`);
    if (this.filled === 0) {
      for (let j = 0; j < K; j++) this.projections.push(0);
      this.losses.push(0);
    }
    const at = this.projections.length - K;
    for (let j = 0; j < K; j++) this.projections[at + j] += projections[j];
    this.losses[this.losses.length - 1] += loss;
    this.filled = (this.filled + examples) % this.batchSize;
  }

  commitment(): Commitment {
    let proj = this.projections.slice();
    let losses = this.losses.slice();
    let c = this.batchSize;
    while (losses.length > MAX_BATCHES) { // batches 2i and 2i + 1 of c make batch i of 2c
      const p: number[] = [];
      const l: number[] = [];
      for (let b = 0; b < losses.length; b += 2) {
        for (let j = 0; j < K; j++) p.push(proj[b * K + j] + (b + 1 < losses.length ? proj[(b + 1) * K + j] : 0));
        l.push(losses[b] + (b + 1 < losses.length ? losses[b + 1] : 0));
      }
      proj = p;
      losses = l;
      c *= 2;
    }
    return { batchSize: c, projections: Float32Array.from(proj), losses: Float32Array.from(losses) };
  }
}

/** The dense float32 payload followed by the trailer: u32 c, u32 B, u32 K, then B x (float32[K], float32 loss). */
export function withCommitments(dense: Uint8Array, c: Commitment): Uint8Array {
  const batches = c.losses.length;
  const out = new Uint8Array(dense.byteLength + 12 + 4 * batches * (K + 1));
  out.set(dense, 0);
  const view = new DataView(out.buffer, dense.byteLength);
  view.setUint32(0, c.batchSize, true);
  view.setUint32(4, batches, true);
  view.setUint32(8, K, true);
  for (let b = 0; b < batches; b++) {
    for (let j = 0; j < K; j++) view.setFloat32(12 + 4 * (b * (K + 1) + j), c.projections[b * K + j], true);
    view.setFloat32(12 + 4 * (b * (K + 1) + K), c.losses[b], true);
  }
  return out;
}
