"""Ray stays optional: a plain server, the demo and the CLI never import it; `mlitb serve --ray` is offered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PLAIN = """
import sys
from mlitb.cli import build_parser
from mlitb.config import Settings
from mlitb.server.app import create_app
import mlitb.demo, mlitb.server.run, mlitb.workers.simulate
args = build_parser().parse_args(["serve", "--data-dir", sys.argv[1]])
assert not args.ray
create_app(Settings(data_dir=__import__("pathlib").Path(sys.argv[1])))
loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))  # prometheus_client is core (/metrics)
print(loaded)
"""


def test_a_plain_server_and_the_demo_never_import_ray(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", PLAIN, str(tmp_path)], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_serve_takes_the_cluster_options():
    from mlitb.cli import build_parser

    args = build_parser().parse_args(["serve", "--ray", "--ray-address", "auto", "--gateways", "3", "--port", "9000"])
    assert (args.ray, args.ray_address, args.gateways, args.port) == (True, "auto", 3, 9000)
