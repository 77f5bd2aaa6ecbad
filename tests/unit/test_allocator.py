"""Data allocation: disjoint, balanced, minimal movement on join, nothing lost on leave."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlitb.master.allocator import OUTSIDE, UNALLOCATED, WAITING, Allocator


def check_invariants(a: Allocator):
    counts = a.counts()
    # disjoint by construction (one owner per id); every owner is a live trainer
    assert set(np.unique(a.owner[a.owner != UNALLOCATED]).tolist()) <= set(a.trainers)
    if counts:
        assert max(counts.values()) - min(counts.values()) <= 1, counts
        assert max(counts.values()) <= a.capacity
        allocated = sum(counts.values())
        assert allocated == min(a.size, a.capacity * len(a.trainers))


def test_first_trainer_gets_everything_within_capacity():
    a = Allocator(100, capacity=1000)
    a.join(1)
    assert a.counts() == {1: 100}


def test_shares_are_disjoint_and_balanced_within_one():
    a = Allocator(11, capacity=100)
    for t in (1, 2, 3):
        a.join(t)
        check_invariants(a)
    assert sorted(a.counts().values()) == [3, 4, 4]
    ids = [set(a.ids_of(t).tolist()) for t in (1, 2, 3)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_a_new_trainer_moves_only_the_ids_it_receives():
    a = Allocator(60_000, capacity=60_000)
    a.join(1)
    a.join(2)
    before = a.owner.copy()
    a.join(3)
    moved = np.count_nonzero(before != a.owner)
    assert moved == a.counts()[3] == 20_000  # nothing moves between the old trainers


def test_a_new_trainer_takes_unallocated_ids_before_cutting_the_pie():
    a = Allocator(100, capacity=30)
    a.join(1)
    a.join(2)
    before = a.owner.copy()
    a.join(3)
    assert a.counts() == {1: 30, 2: 30, 3: 30}
    assert np.array_equal(before[before != UNALLOCATED], a.owner[before != UNALLOCATED])


def test_a_leaving_trainers_ids_go_back_to_the_others():
    a = Allocator(90, capacity=1000)
    for t in (1, 2, 3):
        a.join(t)
    a.take_changed()
    a.leave(2)
    assert a.counts() == {1: 45, 3: 45}
    assert np.count_nonzero(a.owner == UNALLOCATED) == 0
    assert a.take_changed() == {1, 3}


def test_ids_beyond_every_capacity_stay_unallocated():
    a = Allocator(100, capacity=10)
    a.join(1)
    a.leave(1)
    assert np.count_nonzero(a.owner == UNALLOCATED) == 100


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 500), capacity=st.integers(1, 300),
       ops=st.lists(st.tuples(st.booleans(), st.integers(0, 20)), max_size=40))
def test_invariants_hold_over_random_join_and_leave_sequences(size, capacity, ops):
    a = Allocator(size, capacity)
    live: set[int] = set()
    next_id = 0
    for is_join, pick in ops:
        if is_join or not live:
            a.join(next_id)
            live.add(next_id)
            next_id += 1
        else:
            victim = sorted(live)[pick % len(live)]
            a.leave(victim)
            live.discard(victim)
        check_invariants(a)


def test_refreshment_walks_every_id_through_the_trainers_when_data_exceeds_capacity():
    a = Allocator(100, capacity=10)
    a.join(1)
    a.join(2)
    seen = set(np.flatnonzero(a.owner != UNALLOCATED).tolist())
    for _ in range(50):
        moved = a.refresh(0.2)
        assert moved == 4  # 20% of 10, for each of the two trainers
        check_invariants(a)
        seen |= set(np.flatnonzero(a.owner != UNALLOCATED).tolist())
    assert seen == set(range(100))


def test_refreshment_moves_nothing_when_everything_is_allocated():
    a = Allocator(20, capacity=100)
    a.join(1)
    a.join(2)
    a.take_changed()
    assert a.refresh(0.5) == 0 and a.take_changed() == set()


def test_ids_given_back_go_first_to_a_trainer_that_has_them_cached():
    a = Allocator(8, capacity=5)
    a.join(1)  # 0..4
    a.join(2)  # 5..7, and 4 cut from trainer 1
    a.leave(1)  # 2 tops up to 5 with 0, the first free id (it has none of them cached)
    assert a.ids_of(2).tolist() == [0, 4, 5, 6, 7]
    a.join(3)  # the free 1, 2, 3, and 7 cut from trainer 2
    assert a.ids_of(3).tolist() == [1, 2, 3, 7] and a.cached_by(2)[7]
    a.leave(3)  # 1, 2, 3 and 7 come free: 2 takes back 7, which it has cached, not 1, the first free id
    assert a.ids_of(2).tolist() == [0, 4, 5, 6, 7]
    assert a.cached_by(2).tolist() == [True, False, False, False, True, True, True, True]


def test_a_restricted_allocator_gives_only_the_ids_of_its_share():
    a = Allocator(20, capacity=100)
    assert a.restrict(np.arange(5, 15), known=20)
    for t in (1, 2):
        a.join(t)
    assert a.counts() == {1: 5, 2: 5}
    held = np.concatenate([a.ids_of(1), a.ids_of(2)])
    assert sorted(held.tolist()) == list(range(5, 15)) and np.count_nonzero(a.owner == OUTSIDE) == 10
    assert a.unallocated_with_room() == 0


def test_a_shrinking_share_takes_only_the_leaving_ids_and_a_growing_one_gives_cached_ids_first():
    a = Allocator(12, capacity=100)
    a.restrict(np.arange(12), known=12)  # the whole data: nothing changes
    a.join(1)
    a.join(2)
    before = {t: set(a.ids_of(t).tolist()) for t in (1, 2)}
    a.take_changed()
    assert a.restrict(np.arange(9), known=12)
    after = {t: set(a.ids_of(t).tolist()) for t in (1, 2)}
    assert all(after[t] <= before[t] for t in (1, 2)) and set().union(*after.values()) == set(range(9))
    assert a.take_changed() == {2}  # only the trainer that held 9, 10, 11 hears of it
    assert a.restrict(np.arange(12), known=12)  # they come back to the trainer that has them cached
    assert set(a.ids_of(2).tolist()) == before[2]
    assert not a.restrict(np.arange(12), known=12)  # the same share again: nothing moves


def test_ids_the_share_does_not_know_yet_are_left_alone():
    a = Allocator(10, capacity=100)
    a.join(1)
    a.extend(2)  # appended examples: the project has not placed them in a share yet
    a.restrict(np.arange(4), known=10)
    assert a.ids_of(1).tolist() == [0, 1, 2, 3, 10, 11]


def test_examples_appended_behind_a_partial_share_wait_for_the_project_then_go_to_a_trainer_at_once():
    a = Allocator(20, capacity=5)
    a.restrict(np.arange(10), known=20)  # half the data: the other half is another gateway's
    a.join(1)
    a.join(2)  # both full: 5 ids each
    a.extend(2)
    assert a.owner[20:].tolist() == [WAITING, WAITING] and a.counts() == {1: 5, 2: 5}
    a.take_changed()
    a.restrict(np.concatenate([np.arange(10), [20]]), known=22)  # the project placed id 20 here, 21 elsewhere
    held = set(a.ids_of(1).tolist()) | set(a.ids_of(2).tolist())
    assert 20 in held and 21 not in held and a.counts() == {1: 5, 2: 5}  # one old id made room for it
    assert a.owner[21] == OUTSIDE


def test_a_share_of_the_whole_data_allocates_appended_examples_as_one_process():
    a, b = Allocator(20, capacity=5), Allocator(20, capacity=5)
    b.restrict(np.arange(20), known=20)
    for x in (a, b):
        x.join(1)
        x.join(2)
        x.extend(3)
    assert np.array_equal(a.owner, b.owner)
