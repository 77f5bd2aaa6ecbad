"""The volunteer credit ledger: public ids, crediting, strikes and quarantine, the leaderboard, rows to store."""

import hashlib

from mlitb.trust.credit import CreditLedger, VolunteerCredit, volunteer_id


def test_a_volunteers_public_id_is_v_and_16_hex_digits_of_its_keys_sha256():
    key = "k" * 32
    assert volunteer_id(key) == "v" + hashlib.sha256(key.encode()).hexdigest()[:16]
    assert volunteer_id(key) != volunteer_id("j" * 32)


def test_results_are_credited_to_the_volunteer_of_the_connection_and_anonymous_ones_to_nobody():
    ledger = CreditLedger(clock=lambda: 5.0)
    ledger.join(1, "va")
    ledger.join(2, "va")  # a second tab of the same volunteer
    ledger.join(3, None)
    ledger.credit(1, 100, 900)
    ledger.credit(2, 50, 400)
    ledger.credit(3, 1000, 1000)
    assert [(r["volunteer"], r["samples"], r["results"], r["compute_s"]) for r in ledger.board(10)] == [("va", 150, 2, 1.3)]


def test_the_board_puts_the_most_samples_first_and_says_who_is_connected():
    ledger = CreditLedger()
    ledger.load([VolunteerCredit("old", samples=500), VolunteerCredit("small", samples=5)])
    ledger.join(7, "new")
    ledger.credit(7, 50, 0)
    board = ledger.board(2)
    assert [(r["volunteer"], r["connected"]) for r in board] == [("old", False), ("new", True)]


def test_strikes_quarantine_a_volunteer_at_the_limit_and_it_stays_quarantined():
    ledger = CreditLedger()
    ledger.join(1, "vb")
    assert not ledger.strike(1, quarantine_after=2) and not ledger.quarantined(1)
    assert ledger.strike(1, quarantine_after=2) and ledger.quarantined(1)
    ledger.leave(1)
    ledger.join(9, "vb")  # a new connection of the same volunteer
    assert ledger.quarantined(9)


def test_changed_gives_copies_of_the_rows_changed_since_the_last_call():
    ledger = CreditLedger()
    ledger.join(1, "vc")
    ledger.credit(1, 10, 0)
    rows = ledger.changed()
    assert [(r.volunteer, r.samples) for r in rows] == [("vc", 10)]
    ledger.credit(1, 10, 0)
    assert rows[0].samples == 10  # a copy, safe to store off the event loop
    assert [r.samples for r in ledger.changed()] == [20] and ledger.changed() == []
