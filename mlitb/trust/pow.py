"""Proof of work at JOIN (hashcash-style): the price of one more trainer from an address that already runs some.

A trainer asks `GET /api/projects/{id}/challenge` (from the address it will join from) and gets a
challenge, `"<expiry>.<salt>.<mac>"`: an HMAC of (project, address, expiry, a random salt) under a secret of
this server process,
so the master keeps no state per challenge. Its Web Worker finds a nonce such that
SHA-256("<challenge>:<nonce>") starts with `bits` zero bits and sends "<challenge>:<nonce>" as JOIN's `pow`.
The master checks it with one HMAC and one SHA-256 (microseconds), refuses an expired challenge, one made
for another project or address, and a challenge used before (kept until it expires).
Difficulty: `pow_bits_per_trainer` (6) bits per trainer the address already runs in the project, at most
`pow_max_bits` (22): the first trainer of an address joins free, the second costs ~64 hashes, the fourth
~260,000 (a fraction of a second in a browser), so households pay little and one machine running many
trainers pays more for each. Addresses in `address_limits_exempt` never pay.
Load: a flood of trainers from many addresses (each one's first trainer free) is priced by the project's
JOIN rate (`JoinLoad`): past `pow_load_joins` trainer JOINs (from addresses that are not exempt, refused
ones included) within the last `pow_load_window_s`, every JOIN also owes `pow_load_bits` (4) bits, 4 more
each time the count doubles again, at most `pow_load_max_bits` (12) extra, and never more than
`pow_max_bits` in all. A JOIN is priced at the load when it arrives: one whose challenge was asked before a
burst is refused (POW_INVALID, saying the bits needed now) and its trainer asks again, as the page and
`mlitb worker` do. The rate is per project (a flood targets a project; the server's connection and
creation limits bound the rest).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque

from mlitb.errors import ErrorCode, MlitbError

SECRET = secrets.token_bytes(32)  # per process: challenges do not outlive a restart (they expire in minutes anyway)
CHALLENGE_TTL_S = 120


def required_bits(same_address_trainers: int, bits_per_trainer: int, max_bits: int, load_bits: int = 0) -> int:
    return min(max_bits, bits_per_trainer * same_address_trainers + load_bits)


def load_bits(joins: int, threshold: int, bits_per_step: int, max_extra: int) -> int:
    """Extra bits for `joins` JOINs in the window: none up to `threshold`, one step past it, one more each time
    the count passes the next doubling (2x, 4x, ... the threshold), at most `max_extra`."""
    steps, limit = 0, max(1, threshold)
    while joins > limit and steps * bits_per_step < max_extra:
        steps += 1
        limit *= 2
    return min(max_extra, steps * bits_per_step)


class JoinLoad:
    """Trainer JOINs of one project in the last `window_s` seconds (a bounded deque of times)."""

    def __init__(self, window_s: float, clock=time.monotonic, cap: int = 1 << 16):
        self.window_s, self.clock = window_s, clock
        self._times: deque[float] = deque(maxlen=cap)  # past the cap the oldest go: the count stays >= cap

    def note(self) -> None:
        self._times.append(self.clock())

    def count(self) -> int:
        horizon = self.clock() - self.window_s
        while self._times and self._times[0] < horizon:
            self._times.popleft()
        return len(self._times)


def make_challenge(project: int, address: str, now: float | None = None) -> str:
    expiry = int(now if now is not None else time.time()) + CHALLENGE_TTL_S
    salt = secrets.token_hex(8)  # two challenges asked in the same second are still different
    return f"{expiry}.{salt}.{_mac(project, address, expiry, salt)}"


def _mac(project: int, address: str, expiry: int, salt: str) -> str:
    return hmac.new(SECRET, f"{project}|{address}|{expiry}|{salt}".encode(), hashlib.sha256).hexdigest()[:32]


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte:
            return bits + 8 - byte.bit_length()
        bits += 8
    return bits


def solve(challenge: str, bits: int) -> str:
    """The JOIN `pow` value for `challenge` at `bits` (the Python twin of web/src/worker/pow.ts)."""
    nonce = 0
    while leading_zero_bits(hashlib.sha256(f"{challenge}:{nonce}".encode()).digest()) < bits:
        nonce += 1
    return f"{challenge}:{nonce}"


class PowCheck:
    """Verifies JOIN's `pow` for one project; remembers used challenges until they expire."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self.used: dict[str, int] = {}

    def verify(self, solution: str | None, project: int, address: str, bits: int) -> None:
        if bits <= 0:
            return
        if not solution:
            raise MlitbError(ErrorCode.POW_REQUIRED, f"joining as one more trainer from this address needs a proof of "
                             f"work of {bits} bits: GET /api/projects/{project}/challenge")
        now = self.clock()
        challenge, _, nonce = solution.rpartition(":")
        expiry_text, _, rest = challenge.partition(".")
        salt, _, mac = rest.partition(".")
        if not expiry_text.isdigit() or not nonce.isdigit() or len(nonce) > 20 or len(salt) != 16:
            raise MlitbError(ErrorCode.POW_INVALID, "malformed proof of work")
        expiry = int(expiry_text)
        if expiry < now or expiry > now + CHALLENGE_TTL_S + 5:
            raise MlitbError(ErrorCode.POW_INVALID, "the challenge has expired; ask for a new one")
        if not hmac.compare_digest(mac, _mac(project, address, expiry, salt)):
            raise MlitbError(ErrorCode.POW_INVALID, "the challenge was not made for this project and address")
        if challenge in self.used:
            raise MlitbError(ErrorCode.POW_INVALID, "the challenge was used before; ask for a new one")
        got = leading_zero_bits(hashlib.sha256(solution.encode()).digest())
        if got < bits:
            raise MlitbError(ErrorCode.POW_INVALID, f"the proof of work has {got} zero bits; {bits} are needed now")
        self.used = {c: e for c, e in self.used.items() if e >= now}
        self.used[challenge] = expiry
