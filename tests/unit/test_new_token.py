"""Tokens the server makes are safe on a command line: never starting with '-' (argparse would read
`--token -abc…` as an option), 256 random bits in URL-safe characters."""

import secrets

from mlitb import auth


def test_a_new_token_never_starts_with_a_dash_even_when_the_random_source_does(monkeypatch):
    draws = iter(["-starts-with-a-dash", "-again", "fine-token"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: next(draws))
    assert auth.new_token() == "fine-token"


def test_new_tokens_are_long_url_safe_and_distinct():
    tokens = {auth.new_token() for _ in range(2000)}
    assert len(tokens) == 2000
    assert all(len(t) == 43 and not t.startswith("-") and t.replace("-", "").replace("_", "").isalnum() for t in tokens)
