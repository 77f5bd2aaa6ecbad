"""`Credited`: a strategy wrapper that credits every result the wrapped strategy accepted to its volunteer.

As Flower's differential-privacy wrapper wraps a strategy, this one holds the project's strategy and
sees each `Result` on its way in: a result the wrapped strategy refuses (stale, duplicate, not
finite) earns nothing; one it takes earns its (allowed) samples, one result and its compute time
(credit.py). A quarantined volunteer's results are refused before the strategy sees them
(QUARANTINED). Everything else is delegated unchanged.
"""

from __future__ import annotations

from mlitb.errors import ErrorCode, MlitbError
from mlitb.training.strategies.base import Host, Result, Strategy
from mlitb.trust.credit import CreditLedger


class Credited:
    def __init__(self, inner: Strategy, ledger: CreditLedger):
        self.inner = inner
        self.ledger = ledger

    @property
    def open_version(self) -> int | None:
        return self.inner.open_version

    def bind(self, host: Host) -> None:
        self.inner.bind(host)

    async def run_update(self) -> dict:
        return await self.inner.run_update()

    def on_result(self, result: Result) -> None:
        if self.ledger.quarantined(result.client_id):
            raise MlitbError(ErrorCode.QUARANTINED, "this volunteer's results failed spot checks; they are ignored")
        self.inner.on_result(result)
        self.ledger.credit(result.client_id, result.samples, result.compute_ms)

    def on_leave(self, client_id: int) -> None:
        self.inner.on_leave(client_id)

    def stop(self) -> None:
        self.inner.stop()

    def __getattr__(self, name: str):
        # anything else a caller reads of the strategy (SyncRounds.aggregate, say) is the wrapped strategy's
        return getattr(self.inner, name)
