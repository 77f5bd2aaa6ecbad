"""The project's partition of the training ids into gateways' shares (mlitb/cluster/shares.py): disjoint, covering
every id, sized by capacity (max-min fair within it, proportional beyond it), moving as few ids as possible, and
handed to a gateway only once no other live gateway's last share holds them."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlitb.cluster.shares import ShareBook, checked_capacity, partition, targets
from mlitb.errors import ErrorCode, MlitbError


def as_sets(shares: dict) -> dict[str, set[int]]:
    return {g: set(ids.tolist()) for g, ids in shares.items()}


def test_one_gateway_gets_every_id_whatever_its_capacity():
    for capacity in (1, 50, 100, 10 ** 6):
        assert partition({}, {"g0": capacity}, 100)["g0"].tolist() == list(range(100))


def test_within_the_capacity_every_share_is_held_whole_and_shares_fill_to_a_common_level():
    assert targets({"a": 60, "b": 40, "c": 20}, 30) == {"a": 10, "b": 10, "c": 10}
    assert targets({"a": 60, "b": 40, "c": 5}, 100) == {"a": 55, "b": 40, "c": 5}
    assert targets({"a": 60, "b": 50, "c": 5}, 100) == {"a": 48, "b": 47, "c": 5}


def test_a_gateway_claiming_a_huge_capacity_does_not_keep_another_below_its_own():
    # proportional shares would give "honest" 100 * 30 / 130 = 23 of the 30 its trainers can hold
    assert targets({"huge": 10 ** 9, "honest": 30}, 100) == {"huge": 70, "honest": 30}


def test_beyond_the_capacity_shares_are_proportional_and_each_at_least_the_capacity():
    want = targets({"a": 24, "b": 16, "c": 8}, 60)
    assert want == {"a": 30, "b": 20, "c": 10}
    uneven = targets({"a": 3, "b": 3, "c": 1}, 100)
    assert sum(uneven.values()) == 100 and uneven["a"] >= 42 and uneven["c"] >= 14


def test_no_gateway_with_trainers_no_share():
    assert targets({"a": 0, "b": 0}, 10) == {"a": 0, "b": 0}
    assert partition({"a": np.arange(10)}, {"a": 0}, 10)["a"].size == 0
    assert partition({}, {}, 10) == {}


@settings(max_examples=80, deadline=None)
@given(size=st.integers(0, 400), caps=st.lists(st.integers(0, 500), min_size=1, max_size=5),
       later=st.lists(st.integers(0, 500), min_size=1, max_size=5), grow=st.integers(0, 30))
def test_shares_are_disjoint_cover_every_id_and_keep_what_they_had(size, caps, later, grow):
    first = partition({}, {f"g{i}": c for i, c in enumerate(caps)}, size)
    new_caps = {f"g{i}": c for i, c in enumerate(later)}
    second = partition(first, new_caps, size + grow)
    want = targets(new_caps, size + grow)
    sets = as_sets(second)
    assert sum(len(s) for s in sets.values()) == len(set().union(*sets.values()))  # disjoint
    assert set().union(*sets.values()) == (set(range(size + grow)) if any(later) else set())
    assert {g: len(s) for g, s in sets.items()} == want
    for g, ids in first.items():  # what a gateway keeps: all it had, or as much as its new size allows
        if g in sets:
            assert len(set(ids.tolist()) & sets[g]) == min(len(ids), want[g])


def test_a_joining_gateway_takes_only_its_share_from_the_others():
    before = partition({}, {"g0": 40, "g1": 40}, 60)
    after = partition(before, {"g0": 40, "g1": 40, "g2": 40}, 60)
    old, new = as_sets(before), as_sets(after)
    assert new["g0"] <= old["g0"] and new["g1"] <= old["g1"]
    moved = (old["g0"] - new["g0"]) | (old["g1"] - new["g1"])
    assert moved == new["g2"] and len(moved) == 20


def test_a_dead_gateways_share_goes_to_the_others_who_keep_theirs():
    before = partition({}, {"g0": 30, "g1": 30, "g2": 30}, 60)
    after = partition(before, {"g0": 30, "g1": 30}, 60)
    old, new = as_sets(before), as_sets(after)
    assert old["g0"] <= new["g0"] and old["g1"] <= new["g1"] and new["g0"] | new["g1"] == set(range(60))


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None, [4], float("nan")])
def test_a_capacity_report_that_is_not_a_non_negative_integer_is_refused(bad):
    with pytest.raises(MlitbError) as err:
        checked_capacity(bad, 100)
    assert err.value.code is ErrorCode.BAD_VALUE


def test_a_capacity_report_is_clamped_to_what_the_trainer_cap_allows():
    assert checked_capacity(10 ** 30, 100) == 100 and checked_capacity(np.int64(7), 100) == 7
    book = ShareBook()
    book.report("g0", 10 ** 30, 500)
    assert book.capacity == {"g0": 500}
    with pytest.raises(MlitbError):
        book.report("g0", -5, 500)
    assert book.capacity == {"g0": 500}  # a refused report changes nothing


def test_a_share_is_handed_again_only_when_it_changed_or_the_gateway_lacks_it():
    book = ShareBook()
    book.report("g0", 100, 1000)
    version, size, ids = book.share_for("g0", None, ["g0"], "d1", 50)
    assert size == 50 and ids.tolist() == list(range(50))
    assert book.share_for("g0", version, ["g0"], "d1", 50) is None
    assert book.share_for("g0", "junk", ["g0"], "d1", 50)[0] == version  # any other answer: handed again
    grown = book.share_for("g0", version, ["g0"], "d1", 52)  # two examples appended
    assert grown[0] != version and grown[2].tolist() == list(range(52))


def test_ids_moving_between_gateways_reach_the_new_one_after_the_old_one_let_them_go():
    book = ShareBook()
    book.report("g0", 100, 1000)
    first = book.share_for("g0", None, ["g0"], "d1", 40)
    book.report("g1", 100, 1000)
    live = ["g0", "g1"]
    early = book.share_for("g1", None, live, "d1", 40)
    assert early[2].size == 0  # every id is still in g0's last share
    smaller = book.share_for("g0", first[0], live, "d1", 40)
    assert smaller[2].tolist() == list(range(20))
    late = book.share_for("g1", early[0], live, "d1", 40)
    assert late[2].tolist() == list(range(20, 40))


def test_a_gateway_without_trainers_or_no_longer_live_blocks_nobody():
    book = ShareBook()
    for g in ("g0", "g1"):
        book.report(g, 100, 1000)
        book.share_for(g, None, ["g0", "g1"], "d1", 40)
    book.report("g1", 0, 1000)  # its trainers left (hello)
    assert book.share_for("g0", None, ["g0", "g1"], "d1", 40)[2].tolist() == list(range(40))
    book.report("g1", 100, 1000)
    book.share_for("g1", None, ["g0", "g1"], "d1", 40)
    assert book.share_for("g0", None, ["g0"], "d1", 40)[2].tolist() == list(range(40))  # g1 died


def test_a_new_upload_starts_the_partition_over():
    book = ShareBook()
    for g in ("g0", "g1"):
        book.report(g, 100, 1000)
    for _ in range(2):
        for g in ("g0", "g1"):
            book.share_for(g, None, ["g0", "g1"], "d1", 40)
    book.report("g0", 0, 1000)  # g0 leaves: g1 holds everything
    whole = book.share_for("g1", None, ["g0", "g1"], "d1", 40)[2]
    assert whole.tolist() == list(range(40))
    book.report("g0", 100, 1000)
    fresh = book.share_for("g0", None, ["g0", "g1"], "d2", 10)  # another data set, smaller: nothing is blocked
    assert fresh[1] == 10 and fresh[2].tolist() == list(range(5))
