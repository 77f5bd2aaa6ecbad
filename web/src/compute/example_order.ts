// The example order a trainer of an open project follows: twin of mlitb/trust/example_order.py (see there).
// A Fisher-Yates shuffle of positions 0..count-1 driven by xorshift32 (shifts 13, 17, 5) from the WORK seed.

const ZERO_SEED_STATE = 0x9e3779b9; // xorshift32 must not start at 0

export function exampleOrder(seed: number, count: number): Uint32Array {
  let state = seed >>> 0 || ZERO_SEED_STATE;
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  for (let i = count - 1; i > 0; i--) {
    state = (state ^ (state << 13)) >>> 0;
    state = (state ^ (state >>> 17)) >>> 0;
    state = (state ^ (state << 5)) >>> 0;
    const j = state % (i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}
