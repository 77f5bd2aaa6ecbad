"""The seeded example order (mlitb/trust/example_order.py) and its TypeScript twin (run in Node) agree exactly."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mlitb.trust.example_order import example_order, examples_used

WEB = Path(__file__).resolve().parents[2] / "web"
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
    esbuild, node = WEB / "node_modules" / ".bin" / "esbuild", shutil.which("node")
    if not esbuild.exists() or node is None:
        pytest.skip("needs Node and web/node_modules (npm --prefix web install)")
    out = tmp_path / "order.mjs"
    subprocess.run([str(esbuild), str(WEB / "src" / "compute" / "example_order.ts"), "--bundle", "--format=esm",
                    f"--outfile={out}", "--log-level=warning"], check=True)
    script = (f"import {{ exampleOrder }} from {json.dumps(str(out))};"
              f"const cases = {json.dumps(CASES)};"
              "console.log(JSON.stringify(cases.map(([s, n]) => Array.from(exampleOrder(s, n)))));")
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, check=True)
    for (seed, count), ts in zip(CASES, json.loads(done.stdout)):
        assert ts == example_order(seed, count).tolist(), (seed, count)
