"""Proof of work at JOIN (mlitb/trust/pow.py): difficulty by trainers per address, just inside and just past."""

import hashlib

import pytest

from mlitb.errors import ErrorCode, MlitbError
from mlitb.trust.pow import CHALLENGE_TTL_S, PowCheck, leading_zero_bits, make_challenge, required_bits, solve
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
