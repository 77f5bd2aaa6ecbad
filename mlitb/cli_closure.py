"""`mlitb closure save|verify|replay|load`: the research-closure commands of the command line (mlitb/cli.py)."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import Callable

# one environment variable per kind of token, read when --token is not given (README, "Tokens")
OWNER_ENV, INVITE_ENV, ADMIN_ENV = "MLITB_OWNER_TOKEN", "MLITB_INVITE_TOKEN", "MLITB_ADMIN_TOKEN"


def _closure_save(args: argparse.Namespace, token) -> int:
    from mlitb.closure import save

    try:
        info = save(args.server, args.project, args.output, token=token(args.token, OWNER_ENV, ADMIN_ENV),
                    description=args.description)
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"saved closure {info['id']} of project {args.project} at round {info['rounds']} to {args.output}")
    if not info.get("verifiable", True):
        print(f"warning: this closure cannot be verified: {info.get('unverifiable_reason')}", file=sys.stderr)
    return 0


def _closure_verify(args: argparse.Namespace) -> int:
    from mlitb.closure.verify import verify
    from mlitb.errors import MlitbError

    try:
        report = verify(args.file, data=args.data, backend=args.backend, tolerance=args.tolerance)
    except MlitbError as exc:
        print(f"NOT verified: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report.lines))
    return 0 if report.ok else 1


def _closure_replay(args: argparse.Namespace) -> int:
    from mlitb.closure.replay import replay
    from mlitb.errors import MlitbError

    try:
        report = replay(args.file, data=args.data, backend=args.backend, weight_tolerance=args.weight_tolerance,
                        loss_tolerance=args.loss_tolerance)
    except MlitbError as exc:
        print(f"replay failed: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report.lines))
    return 0 if report.ok else 1


def _closure_load(args: argparse.Namespace, token) -> int:
    from mlitb.closure import start_project
    from mlitb.errors import MlitbError

    try:
        body = start_project(args.server, args.file, mode=args.mode, token=token(args.token, ADMIN_ENV))
    except (MlitbError, RuntimeError) as exc:
        print(f"not loaded: {exc}", file=sys.stderr)
        return 1
    print(f"project {body['id']} ({body['name']}) started from the closure ({args.mode}) at round {body['round']}; "
          f"owner token (shown once): {body['owner_token']}")
    return 0


def add_closure_parser(sub, fmt, token: Callable[..., str | None]) -> None:
    """`mlitb closure ACTION`; `token(given, *env)` picks a token from --token or the environment."""
    c = sub.add_parser("closure", formatter_class=fmt, help="save, verify, replay and load research closures",
                       description="Research closures (docs/closure.md): one file with the model, configuration, "
                                   "data manifest, metrics and training code of an experiment.")
    csub = c.add_subparsers(dest="closure_command", required=True, metavar="ACTION")
    s = csub.add_parser("save", formatter_class=fmt, help="save a running project's closure to a file",
                        description="Save a running project's closure (training does not pause) and download it.")
    s.add_argument("--server", default="http://127.0.0.1:8000", help="master server URL")
    s.add_argument("--project", type=int, required=True, help="project id (required)")
    s.add_argument("-o", "--output", required=True, help="closure file to write (required)")
    s.add_argument("--token", default=None, help="the project's owner token, or the admin token (default: $MLITB_OWNER_TOKEN, "
                                                  "else $MLITB_ADMIN_TOKEN)")
    s.add_argument("--description", default="", help="free-text description stored in the manifest (default: empty)")
    s.set_defaults(func=partial(_closure_save, token=token))
    for name, text in (("verify", "check every hash and recompute the reported test error in headless Chromium"),
                       ("replay", "re-run a deterministic-mode training and compare it with the record")):
        v = csub.add_parser(name, formatter_class=fmt, help=text, description=f"{text}; exit code 0 only if they agree.")
        v.add_argument("file", help="closure file (required)")
        v.add_argument("--data", default=None,
                       help="MNIST IDX files (folder or zip), or the class-folder zip uploaded as the "
                            f"{'test' if name == 'verify' else 'training'} data (default: the installed built-in data set)")
        v.add_argument("--backend", default="wasm", choices=["auto", "webgpu", "webgl", "wasm", "cpu"],
                       help="TF.js backend of the recomputation")
        if name == "verify":
            v.add_argument("--tolerance", type=float, default=0.001,
                           help="largest |reported - recomputed| test error counted as agreement")
            v.set_defaults(func=_closure_verify)
        else:
            v.add_argument("--weight-tolerance", type=float, default=1e-4,
                           help="largest relative L2 distance of the final weights counted as a match")
            v.add_argument("--loss-tolerance", type=float, default=1e-4,
                           help="largest |replayed - recorded| mean training loss of a round counted as a match")
            v.set_defaults(func=_closure_replay)
    ld = csub.add_parser("load", formatter_class=fmt, help="start a new project on a server from a closure file",
                         description="Upload a closure to a server's zoo and fork it into a new project.")
    ld.add_argument("file", help="closure file (required)")
    ld.add_argument("--server", default="http://127.0.0.1:8000", help="master server URL")
    ld.add_argument("--mode", default="continue", choices=["continue", "restart"],
                    help="continue from the closure's weights, or restart from its seed with the same configuration")
    ld.add_argument("--token", default=None, help="admin token where only the admin may create projects "
                                                  "(default: $MLITB_ADMIN_TOKEN)")
    ld.set_defaults(func=partial(_closure_load, token=token))
