"""A new user's first page load: no console error (the favicon is served), and the owner link `mlitb demo` prints
lets the demo user act as the owner."""

from __future__ import annotations

import httpx

from mlitb.model import PAPER_NETWORK


def test_a_page_load_logs_no_console_error_and_the_favicon_is_served(server, chromium):
    icon = httpx.get(f"{server.url}/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg")
    context = chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.status} {r.url}"))
    page.goto(server.url)
    page.wait_for_function("document.querySelector('#server-state').textContent.includes('connected')")
    page.wait_for_timeout(1000)  # the favicon request comes after the load
    context.close()
    assert errors == []


def test_the_owner_link_fills_the_owner_token_and_lets_the_user_change_the_learning_rate(server, chromium):
    created = httpx.post(f"{server.url}/api/projects", json={"name": "demo-like", "dataset": "mnist",
                                                              "network": PAPER_NETWORK}).json()
    pid, owner = created["id"], created["owner_token"]
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/?project={pid}#owner={owner}")
    page.wait_for_selector("#project-panel:not([hidden])")
    assert page.input_value("#owner-token") == owner
    assert "#owner" not in page.url  # taken out of the address bar at once
    page.fill("#hyper-lr", "0.02")
    page.click("#hyper-form button[type=submit]")
    page.wait_for_function("document.querySelector('#project-result').textContent.includes('learning rate 0.02')")
    context.close()
    assert httpx.get(f"{server.url}/api/projects/{pid}").json()["hyper"]["learning_rate"] == 0.02
