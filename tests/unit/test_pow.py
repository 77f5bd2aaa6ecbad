"""Proof of work at JOIN (mlitb/trust/pow.py): difficulty by trainers per address, just inside and just past."""

import hashlib

import pytest

from mlitb.errors import ErrorCode, MlitbError
from mlitb.trust.pow import (CHALLENGE_TTL_S, JoinLoad, PowCheck, leading_zero_bits, load_bits, make_challenge,
                             required_bits, solve)
from tests.helpers import run_in_node


def test_difficulty_rises_by_six_bits_per_trainer_the_address_runs_up_to_the_maximum():
    assert [required_bits(n, 6, 22) for n in range(6)] == [0, 6, 12, 18, 22, 22]


def test_leading_zero_bits_of_a_digest():
    assert leading_zero_bits(bytes([0, 0, 0x10]) + bytes(29)) == 19
    assert leading_zero_bits(bytes([0x80]) + bytes(31)) == 0
    assert leading_zero_bits(bytes(32)) == 256


def refused(check: PowCheck, solution, bits, project=1, address="10.0.0.1") -> ErrorCode:
    with pytest.raises(MlitbError) as err:
        check.verify(solution, project, address, bits)
    return err.value.code


def test_a_solution_with_exactly_the_required_bits_is_accepted_and_one_bit_short_is_refused():
    check = PowCheck()
    challenge = make_challenge(1, "10.0.0.1")
    nonce = 0  # the first nonce giving exactly 8 zero bits: enough for 8, one short for 9
    while leading_zero_bits(hashlib.sha256(f"{challenge}:{nonce}".encode()).digest()) != 8:
        nonce += 1
    assert refused(check, f"{challenge}:{nonce}", 9) == ErrorCode.POW_INVALID
    check.verify(f"{challenge}:{nonce}", 1, "10.0.0.1", 8)
    assert refused(check, f"{challenge}:{nonce}", 8) == ErrorCode.POW_INVALID  # used: no replay


def test_no_work_is_needed_at_zero_bits_and_a_missing_one_is_required_above():
    PowCheck().verify(None, 1, "10.0.0.1", 0)
    assert refused(PowCheck(), None, 6) == ErrorCode.POW_REQUIRED


def test_a_challenge_for_another_project_or_address_or_expired_or_malformed_is_refused():
    challenge = make_challenge(1, "10.0.0.1")
    solution = solve(challenge, 4)
    assert refused(PowCheck(), solution, 4, project=2) == ErrorCode.POW_INVALID
    assert refused(PowCheck(), solution, 4, address="10.0.0.2") == ErrorCode.POW_INVALID
    later = PowCheck(clock=lambda: int(challenge.split(".")[0]) + 1)
    assert refused(later, solution, 4) == ErrorCode.POW_INVALID
    just_inside = PowCheck(clock=lambda: int(challenge.split(".")[0]) - CHALLENGE_TTL_S + 1)
    just_inside.verify(solution, 1, "10.0.0.1", 4)
    for bad in ("x", "1.2.3:4", f"{challenge}:-1", f"{challenge}:{'9' * 21}"):
        assert refused(PowCheck(), bad, 4) == ErrorCode.POW_INVALID


def test_the_typescript_twin_hashes_like_hashlib_and_finds_the_same_nonce(tmp_path):
    texts = ["", "abc", "a" * 55, "a" * 56, "b" * 64, "c" * 119, "π ünïcode", "1767225600.0123456789abcdef.x:42"]
    script = ("const { sha256, solve } = await import(BUNDLE);"
              "const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');"
              "console.log(JSON.stringify({hashes: INPUT.map((t) => hex(sha256(new TextEncoder().encode(t)))),"
              "solved: solve('1767225600.0123456789abcdef.deadbeef', 12)}));")
    done = run_in_node("worker/pow.ts", tmp_path, script, texts)
    assert done["hashes"] == [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    assert done["solved"] == solve("1767225600.0123456789abcdef.deadbeef", 12)


def test_load_bits_are_none_just_inside_the_threshold_one_step_just_past_and_one_more_per_doubling_up_to_the_cap():
    assert [load_bits(n, 20, 4, 12) for n in (0, 20, 21, 40, 41, 80, 81, 10_000)] == [0, 0, 4, 4, 8, 8, 12, 12]
    assert load_bits(10_000, 20, 4, 10) == 10  # the cap need not be a whole number of steps


def test_join_load_counts_the_joins_of_the_last_window_only():
    now = [100.0]
    load = JoinLoad(10.0, clock=lambda: now[0])
    for t in (100.0, 105.0, 109.9):
        now[0] = t
        load.note()
    assert load.count() == 3
    now[0] = 110.0  # the first is exactly 10 s old: still in
    assert load.count() == 3
    now[0] = 110.1
    assert load.count() == 2
    now[0] = 200.0
    assert load.count() == 0


def test_under_load_every_non_exempt_join_owes_the_extra_bits_within_the_maximum_and_the_server_never_pays():
    from mlitb.config import Settings
    from mlitb.trust.addresses import AddressPolicy

    now = [0.0]
    policy = AddressPolicy(Settings(pow_load_joins=2, pow_load_window_s=10.0, pow_load_bits=4, pow_load_max_bits=12,
                                    pow_bits_per_trainer=6, pow_max_bits=16), clock=lambda: now[0])
    for n in range(2):  # just inside: the first trainer of each address is free
        assert policy.pow_bits(f"10.0.0.{n}", []) == 0
        policy.admit(f"10.0.0.{n}", [], None)
    policy.admit("10.0.0.2", [], None)  # the third JOIN, priced before it counts: free
    assert policy.pow_bits("10.0.0.9", []) == 4  # just past
    assert policy.pow_bits("10.0.0.9", ["10.0.0.9", "10.0.0.9"]) == 16  # 12 + 4, within pow_max_bits
    assert refused_join(policy, "10.0.0.9") == ErrorCode.POW_REQUIRED
    assert policy.pow_bits("127.0.0.1", []) == 0
    now[0] = 10.5  # the window passed
    assert policy.pow_bits("10.0.0.9", []) == 0


def refused_join(policy, address) -> ErrorCode:
    with pytest.raises(MlitbError) as err:
        policy.admit(address, [], None)
    return err.value.code
