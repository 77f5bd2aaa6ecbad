"""Per-address limits in one project: a cap on trainers from one IP address, and one vote per address.

A robust rule assumes an honest majority of *votes*; without a limit one machine opening many
connections is that majority (the issue measured 3 colluding connections from one address
against 2 honest trainers: 78-90% test error under every robust rule). Two measures, chosen
together because households and campuses share one address behind NAT:
- a small cap (`max_trainers_per_address`, 4 by default; a project may set fewer) on trainers
  from one address in one project, so one address cannot fill a project;
- one vote per address: a robust rule sums the results of one address's trainers into one
  result (their summed gradient over their summed count) before it compares votes. Honest
  trainers behind one NAT lose nothing in the mean (their work still counts in full, as one
  well-averaged result); colluding connections from one address gain nothing over one.
Addresses in `address_limits_exempt` (the server's own machine by default: the demo and the
owner's local workers) have no cap and each trainer votes on its own.
"""

from __future__ import annotations

from mlitb.errors import ErrorCode, MlitbError
from mlitb.trust.pow import JoinLoad, PowCheck, load_bits, required_bits


class AddressPolicy:
    def __init__(self, settings, project: int = 0, clock=None):
        self.settings = settings
        self.project = project
        self.pow = PowCheck()
        self.joins = JoinLoad(settings.pow_load_window_s, *([clock] if clock else []))

    def load_bits(self) -> int:
        """Extra proof-of-work bits every trainer JOIN owes at the project's present JOIN rate (pow.py)."""
        s = self.settings
        return load_bits(self.joins.count(), s.pow_load_joins, s.pow_load_bits, s.pow_load_max_bits)

    def pow_bits(self, address: str | None, trainer_addresses: list[str | None]) -> int:
        """Proof-of-work bits one more trainer from `address` must show now (mlitb/trust/pow.py)."""
        if self.exempt(address):
            return 0
        same = sum(1 for a in trainer_addresses if a == address)
        return required_bits(same, self.settings.pow_bits_per_trainer, self.settings.pow_max_bits, self.load_bits())

    def exempt(self, address: str | None) -> bool:
        return address is None or address in self.settings.address_limits_exempt

    def limit(self, project_limit: int | None) -> int:
        server = self.settings.max_trainers_per_address
        return server if project_limit is None else min(server, project_limit)

    def admit(self, address: str | None, trainer_addresses: list[str | None], project_limit: int | None,
              pow_solution: str | None = None) -> None:
        """Raises TOO_MANY_TRAINERS_FROM_ADDRESS if `address` already runs the most trainers allowed, POW_REQUIRED or
        POW_INVALID if one more trainer from it needs a proof of work it did not show."""
        if self.exempt(address):
            return
        bits = self.pow_bits(address, trainer_addresses)  # priced before this JOIN counts towards the load
        self.joins.note()
        limit = self.limit(project_limit)
        if sum(1 for a in trainer_addresses if a == address) >= limit:
            raise MlitbError(ErrorCode.TOO_MANY_TRAINERS_FROM_ADDRESS,
                             f"at most {limit} trainers from one address in this project")
        self.pow.verify(pow_solution, self.project, address, bits)

    def vote(self, address: str | None, client_id: int) -> object:
        """The key a robust rule groups results by: the address, or the client itself where exempt."""
        return ("client", client_id) if self.exempt(address) else ("address", address)
