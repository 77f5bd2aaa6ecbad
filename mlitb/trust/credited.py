"""`Credited`: a strategy wrapper that credits every result the wrapped strategy accepted to its volunteer.

As Flower's differential-privacy wrapper wraps a strategy, this one holds the project's strategy and
sees each `Result` on its way in: a result the wrapped strategy refuses (stale, duplicate, not
finite) earns nothing; one it takes earns its (allowed) samples, one result and its compute time
(credit.py). A quarantined volunteer's results are refused before the strategy sees them
(QUARANTINED). Everything else is delegated unchanged.
"""

from __future__ import annotations

from mlitb.errors import ErrorCode, MlitbError
from mlitb.training.strategies.base import Result, Strategy, StrategyWrapper
from mlitb.trust.credit import CreditLedger


class Credited(StrategyWrapper):
    def __init__(self, inner: Strategy, ledger: CreditLedger):
        super().__init__(inner)
        self.ledger = ledger

    def on_result(self, result: Result) -> None:
        if self.ledger.quarantined(result.client_id):
            raise MlitbError(ErrorCode.QUARANTINED, "this volunteer's results failed spot checks; they are ignored")
        self.inner.on_result(result)
        self.ledger.credit(result.client_id, result.samples, result.compute_ms)
