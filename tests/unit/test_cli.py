"""The `mlitb` command line: every option is described with its default."""

import re

import pytest

from mlitb.cli import build_parser, main


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


@pytest.mark.parametrize("name", ["serve", "worker", "demo", "simulate"])
def test_each_subcommand_help_describes_every_option_with_its_default(name):
    sub = subparsers()[name]
    formatter = sub._get_formatter()
    for action in sub._actions:
        if action.dest == "help":
            continue
        text = formatter._expand_help(action)
        assert action.help, f"{name} --{action.dest} has no help text"
        assert "(default:" in text or "(required)" in text, f"{name} --{action.dest}: {text!r} shows no default"
    rendered = sub.format_help()
    assert "(default: None)" not in rendered


def test_top_level_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("serve", "worker", "demo"):
        assert re.search(rf"^\s+{name}\s", out, re.M)


def test_worker_requires_a_project(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["worker"])
    assert exc.value.code == 2
    assert "--project" in capsys.readouterr().err
