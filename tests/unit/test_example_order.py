"""The seeded example order (mlitb/trust/example_order.py) and its TypeScript twin (run in Node) agree exactly."""

from __future__ import annotations

import numpy as np
import pytest

from mlitb.trust.example_order import example_order, examples_used
from tests.helpers import run_in_node

CASES = [(0, 10), (1, 1), (7, 2), (123456789, 3000), (0xFFFFFFFF, 257), (2**31, 60000)]


def test_the_order_is_a_permutation_that_depends_on_the_seed():
    a, b = example_order(1, 3000), example_order(2, 3000)
    assert sorted(a.tolist()) == list(range(3000)) and not np.array_equal(a, b)
    np.testing.assert_array_equal(example_order(1, 3000), a)
    assert example_order(5, 0).size == 0


def test_the_examples_used_cycle_through_the_held_ids_in_the_seeded_order():
    held = np.array([10, 20, 30], np.uint32)
    order = example_order(9, 3)
    np.testing.assert_array_equal(examples_used(9, held, 7), held[order[[0, 1, 2, 0, 1, 2, 0]]])


def test_the_typescript_twin_gives_the_same_orders(tmp_path):
    script = ("const { exampleOrder } = await import(BUNDLE);"
              "console.log(JSON.stringify(INPUT.map(([s, n]) => Array.from(exampleOrder(s, n)))));")
    for (seed, count), ts in zip(CASES, run_in_node("compute/example_order.ts", tmp_path, script, CASES)):
        assert ts == example_order(seed, count).tolist(), (seed, count)
