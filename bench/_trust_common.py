"""What the trust benchmarks (bench/hostile.py, bench/spot_checks.py, bench/spot_check_tolerance.py) share: their
command line."""

from __future__ import annotations

import argparse


def arguments(doc: str, argv: list[str] | None = None, choices: dict[str, list[str]] | None = None,
              **defaults) -> argparse.Namespace:
    """Parse `--name value` options, one per keyword, typed by its default (`rules="a,b"` gives `--rules`), with the
    module docstring `doc` as the help text; `choices` limits the named options to those values."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in defaults.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default,
                       choices=(choices or {}).get(name))
    return p.parse_args(argv)
