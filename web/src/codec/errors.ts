// Codec errors with the stable codes of mlitb/errors.py (docs/errors.md), so both twins refuse alike.

export class CodecError extends Error {
  constructor(readonly code: string, message: string) {
    super(`${code}: ${message}`);
  }
}
