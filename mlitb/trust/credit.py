"""Volunteer credit per project: samples, results, compute time and strikes, kept per volunteer identity.

A volunteer is named by a key it keeps (the page keeps one in the browser's storage; `mlitb worker
--volunteer-key KEY` or $MLITB_VOLUNTEER_KEY gives its browser and torch trainers one) and sends in
JOIN; the master never stores the key, only its public id, the first 16 hex digits of its SHA-256 (`volunteer_id`), so credit belongs to a volunteer across
connections, tabs and restarts, and knowing the public id does not let anyone earn in its name. A
connection without a key trains like any other but earns no credit.

`CreditLedger` holds one project's rows in memory; the runtime's strategy is wrapped by
`Credited` (credited.py), which credits each result the wrapped strategy accepted; the registry
writes the changed rows to SQLite with every checkpoint (`changed()`), and loads them at start.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import asdict, dataclass, replace

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")  # what JOIN's `volunteer` key may be


def volunteer_id(key: str) -> str:
    """The public id of a volunteer key: 'v' and the first 16 hex digits of its SHA-256."""
    return "v" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class VolunteerCredit:
    volunteer: str
    samples: int = 0  # samples of accepted results (each cut to its allowance: mlitb/trust/claims.py)
    results: int = 0
    compute_ms: int = 0  # compute time the results reported
    strikes: int = 0  # results found wrong by a spot check
    quarantined: bool = False
    first_seen: float = 0.0
    last_seen: float = 0.0

    def public(self, connected: bool) -> dict:
        row = asdict(self)
        row["compute_s"] = round(row.pop("compute_ms") / 1000, 3)
        row["connected"] = connected
        return row


class CreditLedger:
    """One project's credit rows, by public volunteer id; the clients connected now name theirs."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self.rows: dict[str, VolunteerCredit] = {}
        self._of_client: dict[int, str] = {}
        self._changed: set[str] = set()

    def load(self, rows: list[VolunteerCredit]) -> None:
        for row in rows:
            self.rows[row.volunteer] = row

    def join(self, client_id: int, volunteer: str | None) -> None:
        if volunteer is None:
            return
        self._of_client[client_id] = volunteer
        row = self.rows.get(volunteer)
        if row is None:
            now = self.clock()
            row = self.rows[volunteer] = VolunteerCredit(volunteer, first_seen=now, last_seen=now)
            self._changed.add(volunteer)

    def leave(self, client_id: int) -> None:
        self._of_client.pop(client_id, None)

    def volunteer_of(self, client_id: int) -> VolunteerCredit | None:
        name = self._of_client.get(client_id)
        return None if name is None else self.rows[name]

    def credit(self, client_id: int, samples: int, compute_ms: int) -> None:
        row = self.volunteer_of(client_id)
        if row is None:
            return
        row.samples += samples
        row.results += 1
        row.compute_ms += max(0, compute_ms)
        row.last_seen = self.clock()
        self._changed.add(row.volunteer)

    def strike(self, client_id: int, quarantine_after: int) -> bool:
        """One more strike; True when the volunteer is (now) quarantined."""
        row = self.volunteer_of(client_id)
        return row is not None and self.strike_volunteer(row.volunteer, quarantine_after)

    def strike_volunteer(self, volunteer: str, quarantine_after: int) -> bool:
        """`strike` by public id (a late spot check may find the volunteer disconnected)."""
        row = self.rows[volunteer]
        row.strikes += 1
        row.quarantined = row.quarantined or row.strikes >= quarantine_after
        self._changed.add(row.volunteer)
        return row.quarantined

    def quarantined(self, client_id: int) -> bool:
        row = self.volunteer_of(client_id)
        return row is not None and row.quarantined

    def changed(self) -> list[VolunteerCredit]:
        """Copies of the rows changed since the last call (to store off the event loop)."""
        rows = [replace(self.rows[v]) for v in sorted(self._changed)]
        self._changed.clear()
        return rows

    def board(self, limit: int) -> list[dict]:
        """The leaderboard: the most samples first."""
        connected = set(self._of_client.values())
        ordered = sorted(self.rows.values(), key=lambda r: (-r.samples, r.first_seen, r.volunteer))
        return [r.public(r.volunteer in connected) for r in ordered[:limit]]
