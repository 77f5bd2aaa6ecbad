"""The page's volunteer identity and credit in a real browser: a trainer started from the page earns credit under
the key kept in localStorage, the tab says how many samples it contributed, and the leaderboard marks it."""

from __future__ import annotations

import hashlib

import httpx

from tests.mnist_softmax import SOFTMAX_REGRESSION


def test_a_trainer_from_the_page_is_credited_and_the_tab_shows_its_contribution(server, chromium):
    pid = httpx.post(f"{server.url}/api/projects", json={"name": "credit", "dataset": "mnist",
                                                          "network": SOFTMAX_REGRESSION,
                                                          "hyper": {"period_s": 1}}).json()["id"]
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/?project={pid}&join=trainer")
    page.wait_for_function("/you have contributed [1-9][0-9,]* samples to this project/"
                           ".test(document.querySelector('#workers').textContent)", timeout=90_000)
    key = page.evaluate("localStorage.getItem('mlitb-volunteer-key')")
    public = "v" + hashlib.sha256(key.encode()).hexdigest()[:16]
    page.wait_for_selector("#leaderboard tr.me")
    assert public in page.text_content("#leaderboard tr.me") and "(you)" in page.text_content("#leaderboard tr.me")
    shown = int(page.text_content("#workers .contributed").split()[3].replace(",", ""))
    context.close()
    board = httpx.get(f"{server.url}/api/projects/{pid}/volunteers").json()
    assert board[0]["volunteer"] == public and board[0]["samples"] >= shown > 0

