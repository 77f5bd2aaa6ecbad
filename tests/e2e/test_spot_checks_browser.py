"""Spot checks against the real browser trainer (wasm in headless Chromium) on a small conv net (conv2d, maxpool2d,
dense): it sends per-batch commitments with every seeded result (payload kind 6), they agree with its sums, the
master's NumPy recomputation of a drawn batch agrees with its commitment within the network's tolerance, round
after round, and it is never struck."""

from __future__ import annotations

import time

import httpx
import pytest

from mlitb.config import Settings
from mlitb.server.run import BackgroundServer
from mlitb.model import parse_network
from mlitb.trust.spot_check import tolerance_for
from tests.mnist_softmax import SOFTMAX_REGRESSION

SMALL_CONV = [{"type": "input", "shape": [28, 28, 1]},
              {"type": "conv2d", "filters": 4, "kernel": 5, "padding": "same", "activation": "relu"},
              {"type": "maxpool2d", "size": 2}, {"type": "flatten"},
              {"type": "dense", "units": 32, "activation": "relu"}, {"type": "dense", "units": 10, "activation": "softmax"}]

ROUNDS = 20


@pytest.fixture(scope="module")
def checked_server(tmp_path_factory):
    # nothing exempt: the browser's connections from 127.0.0.1 are checked like a stranger's
    with BackgroundServer(Settings(port=0, data_dir=tmp_path_factory.mktemp("data"), address_limits_exempt=())) as srv:
        yield srv


def test_an_honest_wasm_trainer_of_a_conv_net_passes_every_spot_check(checked_server, chromium):
    url = checked_server.url
    pid = httpx.post(f"{url}/api/projects", json={"name": "checked", "dataset": "mnist", "network": SMALL_CONV,
                                                  "hyper": {"period_s": 1}}).json()["id"]
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{url}/?project={pid}&join=trainer&backend=wasm")
    deadline = time.monotonic() + 240
    metrics: list[dict] = []
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{url}/api/projects/{pid}/metrics", timeout=30).json()
        if sum(1 for m in metrics if m["samples"] > 0) >= ROUNDS:
            break
        time.sleep(1)
    context.close()
    last = metrics[-1]
    print(f"spot checks {last['spot_checks_total']}, failures {last['spot_check_failures_total']}, worst relative "
          f"difference {last['spot_check_worst']:.3g}, master CPU {last['spot_check_cpu_s_total']} s")
    assert sum(1 for m in metrics if m["samples"] > 0) >= ROUNDS
    # nothing refused but results late for their round (STALE_ROUND, when the shared machine is busy): no commitment
    # was malformed and no check failed
    assert last["spot_check_failures_total"] == 0 and sum(m["rejected"] for m in metrics) <= sum(m["late"] for m in metrics)
    # every result carries commitments (checked against its sum); a result is drawn with probability 0.9 and its
    # check recomputes one batch of 32 examples, not the result, so the master's budget keeps up with all of them
    print(f"committed {last['spot_checks_committed_total']}, batch checks {last['spot_checks_batch_total']}, deferred "
          f"{last['spot_checks_deferred_total']}, on probation {last['spot_checks_probation_total']}")
    results = sum(m["contributions"] for m in metrics)
    assert last["spot_checks_committed_total"] == results >= ROUNDS
    assert last["spot_checks_batch_total"] == last["spot_checks_total"] >= ROUNDS // 2
    assert last["spot_check_samples_total"] <= 32 * last["spot_checks_total"]
    # measured on whole results: wasm vs NumPy float32 differ by ~1e-6 relative on this network, now and then up to
    # 5.4e-4 (a pool window whose values tie exactly rounds differently in each engine); its tolerance is 2e-2
    # (tolerance_for); a committed batch's difference (projections' RMS over ||G_b||, / 3) is printed above
    tolerance = tolerance_for(parse_network(SMALL_CONV))
    assert last["spot_check_tolerance"] == tolerance and last["spot_check_worst"] < tolerance / 10
    board = httpx.get(f"{url}/api/projects/{pid}/volunteers").json()
    assert board and board[0]["strikes"] == 0 and not board[0]["quarantined"]
    master = last["spot_check_cpu_s_total"] / max(last["spot_check_samples_total"], 1)
    trainer = board[0]["compute_s"] / max(board[0]["samples"], 1)
    print(f"per example: master recomputation {master * 1e6:.1f} us, wasm trainer {trainer * 1e6:.1f} us "
          f"(ratio {master / trainer:.2f})")
    # the extra compute: one batch of ~B per drawn result, so ~ 0.9 / B of the trainer's work times that ratio
    checks_cpu = last["spot_check_cpu_s_total"] + last["spot_check_commit_cpu_s_total"]  # batches + commitments
    extra = checks_cpu / max(board[0]["compute_s"], 1e-9)
    print(f"extra compute: master check CPU {checks_cpu:.3f} s over the trainer's "
          f"{board[0]['compute_s']} s = {extra:.1%} ({board[0]['samples'] / max(board[0]['results'], 1):.0f} examples "
          f"a result)")
    assert extra < 0.1  # whole-result checks at 0.9 cost ~0.9 x the ratio (> 200% here)


def test_a_second_trainer_from_the_same_address_pays_a_proof_of_work_in_its_worker_and_joins(checked_server, chromium):
    url = checked_server.url
    pid = httpx.post(f"{url}/api/projects", json={"name": "pow", "dataset": "mnist", "network": SOFTMAX_REGRESSION,
                                                  "hyper": {"period_s": 1}}).json()["id"]
    assert httpx.get(f"{url}/api/projects/{pid}/challenge").json()["bits"] == 0  # the first one is free
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{url}/?project={pid}&join=trainer,trainer&backend=wasm")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        clients = httpx.get(f"{url}/api/projects/{pid}/clients").json()
        if sum(c["role"] == "trainer" for c in clients) == 2:
            break
        time.sleep(0.5)
    bits_now = httpx.get(f"{url}/api/projects/{pid}/challenge").json()["bits"]
    context.close()
    assert sum(c["role"] == "trainer" for c in clients) == 2
    assert bits_now == 12  # a third trainer of this address would pay 12 bits
