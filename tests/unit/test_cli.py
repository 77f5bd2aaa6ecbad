"""The `mlitb` command line: every option is described with its default."""

import argparse
import re
from pathlib import Path

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


@pytest.mark.parametrize("action", ["save", "verify", "replay", "load"])
def test_each_closure_action_help_describes_every_option_with_its_default(action):
    closure = subparsers()["closure"]
    sub = next(a for a in closure._actions if a.dest == "closure_command").choices[action]
    formatter = sub._get_formatter()
    for a in sub._actions:
        if a.dest == "help":
            continue
        text = formatter._expand_help(a)
        assert a.help and ("(default:" in text or "(required)" in text), f"closure {action} {a.dest}: {text!r}"
    assert "(default: None)" not in sub.format_help()


def test_closure_save_requires_a_project_and_an_output(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["closure", "save"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--project" in err and "--output" in err


def test_closure_verify_of_a_tampered_file_exits_non_zero_naming_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    assert main(["closure", "verify", str(bad)]) == 1
    assert "CLOSURE_INVALID" in capsys.readouterr().err


def _commands(parser=None, path=()):
    """(path, parser) of every runnable command, nested ones (`closure save`) included."""
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, path + (name,))
    if path and not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        yield path, parser


def _shown(default) -> str:
    return f"{default:g}" if isinstance(default, float) else str(default)


@pytest.mark.parametrize("path,parser", list(_commands()), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_the_readme_command_table_shows_every_option_optional_or_required_with_its_default(path, parser):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    row = next((line for line in readme.splitlines() if line.startswith(f"| `mlitb {' '.join(path)} ")), None)
    assert row is not None, f"README's command table has no row for mlitb {' '.join(path)}"
    usage = row.split("` |")[0]
    for action in parser._actions:
        if action.dest == "help":
            continue
        if not action.option_strings:  # positional: its name, in capitals, never in brackets
            assert f" {action.dest.upper()}" in usage and f"[{action.dest.upper()}" not in usage, action.dest
            continue
        names = action.option_strings
        if action.required:
            assert any(f" {n} " in usage and f"[{n} " not in usage for n in names), f"{names}: required, no brackets"
        elif action.default in (None, False, "", []):  # [] : an append option given zero or more times
            assert any(f"[{n}" in usage for n in names), f"{names}: optional, in brackets"
        else:
            shown = [f"[{n} {_shown(action.default)}]" for n in names]
            assert any(s in usage for s in shown), f"{names}: README should show {shown[-1]} (optional, its default)"


def test_help_never_shows_a_default_of_none_or_of_an_empty_string():
    for path, parser in _commands():
        text = re.sub(r"\s+", " ", parser.format_help())  # a default wrapped onto the next line counts too
        assert "(default: None)" not in text and "(default: )" not in text, " ".join(path)
