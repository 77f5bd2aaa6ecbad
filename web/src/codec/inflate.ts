// Raw deflate (RFC 1951) decompression under a hard cap: twin of mlitb/codec/deflate.py's `decompress`.
// Synchronous, so a delta frame is applied in the message handler in order like the other kinds (the
// browser's DecompressionStream is asynchronous). Output stops one byte past `size`: a hostile stream
// costs at most that. Verdicts match zlib's as Python maps them: more output than `size` -> CODEC_LENGTH
// when the byte is written; any stream error, truncation or bytes after the final block -> CODEC_MALFORMED;
// a complete stream of another size -> CODEC_LENGTH. Codes are decoded bit by bit from canonical counts
// (slower than zlib's tables, but short and easy to check: measured in Node on this loaded machine, ~95 ms for a
// 455k-parameter frame, 2.4% of a 4 s round; a table decoder is the next step if that matters).
import { CodecError } from "./errors";

const MAXBITS = 15;
const LEN_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEN_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
  4097, 6145, 8193, 12289, 16385, 24577];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

const bad = (why: string): never => { throw new CodecError("CODEC_MALFORMED", `deflate stream: ${why}`); };

export const bound = (size: number): number =>
  size + Math.floor(size / 4096) + Math.floor(size / 16384) + Math.floor(size / 33554432) + 13;

interface Huffman { count: Int32Array; symbol: Int32Array }

// Canonical code from lengths. Over-subscribed is refused; incomplete only where zlib allows it: a
// literal/length or distance code with a single code of length 1 (or none at all), never the code-length code.
function huffman(lengths: ArrayLike<number>, n: number, codeLengthCode: boolean): Huffman {
  const count = new Int32Array(MAXBITS + 1);
  for (let s = 0; s < n; s++) count[lengths[s]]++;
  let left = 1;
  let max = 0;
  for (let len = 1; len <= MAXBITS; len++) {
    left = left * 2 - count[len];
    if (left < 0) bad("over-subscribed code");
    if (count[len]) max = len;
  }
  if (left > 0 && max !== 0 && (codeLengthCode || max !== 1)) bad("incomplete code");
  if (codeLengthCode && max === 0) bad("empty code-length code");
  const offs = new Int32Array(MAXBITS + 2);
  for (let len = 1; len <= MAXBITS; len++) offs[len + 1] = offs[len] + count[len];
  const symbol = new Int32Array(n);
  for (let s = 0; s < n; s++) if (lengths[s]) symbol[offs[lengths[s]]++] = s;
  count[0] = 0;
  return { count, symbol };
}

export function inflate(input: Uint8Array, size: number): Uint8Array {
  if (input.length > bound(size)) {
    throw new CodecError("CODEC_LENGTH", `deflated payload of ${input.length} bytes; at most ${bound(size)} for ${size}`);
  }
  const out = new Uint8Array(size);
  let pos = 0; // next input byte
  let bitbuf = 0;
  let bitcnt = 0;
  let n = 0; // bytes written
  const bits = (need: number): number => {
    while (bitcnt < need) {
      if (pos >= input.length) bad("ends before its final block");
      bitbuf |= input[pos++] << bitcnt;
      bitcnt += 8;
    }
    const v = bitbuf & ((1 << need) - 1);
    bitbuf >>>= need;
    bitcnt -= need;
    return v;
  };
  const put = (b: number): void => {
    if (n >= size) throw new CodecError("CODEC_LENGTH", `deflate stream inflates past ${size} bytes`);
    out[n++] = b;
  };
  const decode = (h: Huffman, what: string): number => {
    let code = 0;
    let first = 0;
    let index = 0;
    for (let len = 1; len <= MAXBITS; len++) {
      code |= bits(1);
      const c = h.count[len];
      if (code - c < first) return h.symbol[index + (code - first)];
      index += c;
      first = (first + c) * 2;
      code *= 2;
    }
    return bad(`invalid ${what} code`);
  };
  const codes = (lit: Huffman, dist: Huffman): void => {
    for (;;) {
      const sym = decode(lit, "literal/length");
      if (sym < 256) { put(sym); continue; }
      if (sym === 256) return;
      if (sym > 285) bad("invalid literal/length code");
      const len = LEN_BASE[sym - 257] + bits(LEN_EXTRA[sym - 257]);
      const ds = decode(dist, "distance");
      if (ds > 29) bad("invalid distance code");
      const d = DIST_BASE[ds] + bits(DIST_EXTRA[ds]);
      if (d > n) bad("invalid distance too far back");
      for (let i = 0; i < len; i++) put(out[n - d]);
    }
  };
  let fixed: [Huffman, Huffman] | null = null;
  let last = 0;
  while (!last) {
    last = bits(1);
    const type = bits(2);
    if (type === 0) {
      bitbuf = 0;
      bitcnt = 0; // to a byte boundary (bits are only ever pulled byte by byte, so none of a later byte is held)
      if (pos + 4 > input.length) bad("ends before its final block");
      const len = input[pos] | (input[pos + 1] << 8);
      const nlen = input[pos + 2] | (input[pos + 3] << 8);
      pos += 4;
      if (len !== (~nlen & 0xffff)) bad("invalid stored block lengths");
      for (let i = 0; i < len; i++) {
        if (pos >= input.length) bad("ends before its final block");
        put(input[pos++]);
      }
    } else if (type === 1) {
      if (fixed === null) {
        const l = new Uint8Array(288);
        l.fill(8, 0, 144); l.fill(9, 144, 256); l.fill(7, 256, 280); l.fill(8, 280, 288);
        fixed = [huffman(l, 288, false), huffman(new Uint8Array(32).fill(5), 32, false)]; // 30, 31 decode, then are refused
      }
      codes(fixed[0], fixed[1]);
    } else if (type === 2) {
      const nlen = bits(5) + 257;
      const ndist = bits(5) + 1;
      const ncode = bits(4) + 4;
      if (nlen > 286 || ndist > 30) bad("too many length or distance symbols");
      const cl = new Uint8Array(19);
      for (let i = 0; i < ncode; i++) cl[CL_ORDER[i]] = bits(3);
      const clh = huffman(cl, 19, true);
      const lengths = new Uint8Array(nlen + ndist);
      for (let i = 0; i < nlen + ndist;) {
        const sym = decode(clh, "code lengths");
        if (sym < 16) { lengths[i++] = sym; continue; }
        let value = 0;
        let rep: number;
        if (sym === 16) {
          if (i === 0) bad("invalid bit length repeat");
          value = lengths[i - 1];
          rep = 3 + bits(2);
        } else rep = sym === 17 ? 3 + bits(3) : 11 + bits(7);
        if (i + rep > nlen + ndist) bad("invalid bit length repeat");
        while (rep--) lengths[i++] = value;
      }
      if (lengths[256] === 0) bad("invalid code -- missing end-of-block");
      const lit = huffman(lengths, nlen, false);
      const dist = huffman(lengths.subarray(nlen), ndist, false);
      codes(lit, dist);
    } else {
      bad("invalid block type");
    }
  }
  if (pos < input.length) bad(`${input.length - pos} bytes after the final block`);
  if (n !== size) throw new CodecError("CODEC_LENGTH", `deflate stream inflates to ${n} bytes; ${size} expected`);
  return out;
}
