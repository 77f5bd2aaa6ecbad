"""The research-closure file (docs/closure.md): build, read and validate one zip holding a whole experiment.

Reading checks the zip's directory against size caps (entry count, total uncompressed size, compression
ratio) before any entry is decompressed, reads every entry with a byte cap (a lying header cannot inflate
it), checks each part's SHA-256 against the manifest, and parses the configuration and the model; only
then is a `Closure` returned, so nothing is ever loaded half-way.
"""

from __future__ import annotations

import io
import json
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mlitb import __version__
from mlitb.closure.data_manifest import (APPENDED_PART, appended_bytes, appended_examples, data_manifest,  # noqa: F401
                                         sha256, split_manifest)
from mlitb.errors import ErrorCode, MlitbError

FORMAT = "mlitb-closure"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_ENTRIES = 64  # entries in one closure zip
MAX_TOTAL_BYTES = 1 << 30  # uncompressed bytes of all entries together (1 GiB)
MAX_MANIFEST_BYTES = 1 << 20  # the manifest itself (1 MiB)
MAX_RATIO = 100  # uncompressed/compressed size of one entry larger than RATIO_FLOOR_BYTES
RATIO_FLOOR_BYTES = 1 << 20  # smaller entries may compress as well as they like

# parts every closure has; the others (evaluated weights, replay record, extra code) are optional
REQUIRED_PARTS = ("model/model.json", "model/weights.bin", "optimizer/history.bin", "config.json", "data.json",
                  "metrics.json", "code/closure_check.js", "code/closure.html")
REPO_ROOT = Path(__file__).resolve().parents[2]
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
TRAINING_DIR = Path(__file__).resolve().parents[1] / "training"


@lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The git commit of the running mlitb source, where it runs from a checkout."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def training_code() -> dict[str, bytes]:
    """The code that trains: the built browser bundles and the server's training rules (optimizers, aggregation
    and the strategies that turn results into updates)."""
    code = {"code/closure_check.js": (STATIC_DIR / "closure_check.js").read_bytes(),
            "code/closure.html": (STATIC_DIR / "closure.html").read_bytes()}
    for bundle in ("trainer.js", "tracker.js"):
        if (STATIC_DIR / bundle).is_file():
            code[f"code/{bundle}"] = (STATIC_DIR / bundle).read_bytes()
    for rule in sorted(TRAINING_DIR.rglob("*.py")):
        code[f"code/training/{rule.relative_to(TRAINING_DIR).as_posix()}"] = rule.read_bytes()
    return code


def wasm_hashes(directory: Path = STATIC_DIR / "wasm") -> dict[str, str]:
    return {p.name: sha256(p.read_bytes()) for p in sorted(directory.glob("*.wasm"))}


@dataclass
class Snapshot:
    """Copies of a project's state, taken in the event loop; the zip is then built from it in a thread."""

    name: str
    spec: dict
    round: int
    params: np.ndarray
    history: np.ndarray
    metrics: list[dict]
    dataset: Any
    owner: np.ndarray | None
    evaluated: tuple[int, float, int, np.ndarray] | None
    replay_start: tuple[int, np.ndarray, np.ndarray] | None
    replay_rounds: list[dict]
    description: str = ""
    unreported: str | None = None  # why no test error can be verified, when none was reported


def unreported_reason(runtime) -> str | None:
    """Why a closure saved now would have no reported test error to verify; None when it has one."""
    if runtime.record.evaluated is not None:
        return None
    why = "no tracker has reported a test error for these weights: "
    if runtime.dataset is None or runtime.dataset.test is None:
        return why + "the project has no test data (upload a test split, then add a tracker)"
    if runtime.latest_eval is not None:
        return why + (f"the newest report (round {runtime.latest_eval[0]}) was of weights this server no longer "
                      f"holds (a server restart, new weights or a new class since); let a tracker evaluate the "
                      f"current weights, then save again")
    if any(c.role == "tracker" for c in runtime.clients.values()):
        return why + "a tracker is connected but has not reported yet; save again after its first report"
    return why + ("the project has no tracker (add one: `mlitb worker --trackers 1`, or Join as tracker on the "
                  "page), then save again")


def communication(hyper) -> dict:
    """How updates travelled (docs/protocol.md "Payload kinds"): codecs both ways and the algorithm."""
    return {"upload_codec": hyper.upload_codec, "download_codec": hyper.download_codec,
            "topk_density": hyper.topk_density, "topk_warmup_rounds": hyper.topk_warmup_rounds,
            "algorithm": hyper.algorithm}


def compressed(hyper) -> bool:
    """A run whose updates depend on client-side state the record does not hold (residuals, shadows, inner steps)."""
    return hyper.upload_codec != "float32" or hyper.download_codec != "float32" or hyper.algorithm != "gradient"


def snapshot(runtime, description: str = "") -> Snapshot:
    """Copy what a closure needs from a running project; cheap enough for the event loop (no pause)."""
    record = runtime.record
    start = record.replay_start
    return Snapshot(
        name=runtime.spec.name, spec=runtime.spec.model_dump(), round=runtime.round,
        params=runtime.params.copy(), history=runtime.history.copy(),
        metrics=[dict(m) for m in runtime.metrics], dataset=runtime.dataset, owner=runtime.allocator.owner.copy(),
        evaluated=record.evaluated,  # its parameter array is never changed in place
        replay_start=start if runtime.spec.hyper.deterministic else None,
        replay_rounds=list(record.replay_rounds), description=description, unreported=unreported_reason(runtime))


def build_closure(snap: Snapshot) -> bytes:
    """The closure zip of a snapshot: every part, and a manifest that covers each with its SHA-256."""
    from mlitb.master.project import parse_project_spec
    from mlitb.model import model_json

    spec = parse_project_spec(snap.spec)
    net = spec.build_network()
    parts: dict[str, bytes] = {
        "model/model.json": json.dumps(model_json(net, snap.name)).encode(),
        "model/weights.bin": snap.params.astype("<f4").tobytes(),
        "optimizer/history.bin": snap.history.astype("<f4").tobytes(),
        "config.json": json.dumps({"project": snap.spec,
                                   "optimizer": "nesterov" if spec.hyper.algorithm == "local_sgd" else "adagrad",
                                   "aggregation": spec.hyper.aggregation, "rounds": snap.round,
                                   "communication": communication(spec.hyper)}, indent=1).encode(),
        "data.json": json.dumps(data_manifest(snap.dataset, snap.owner), indent=1).encode(),
        **({APPENDED_PART: appended_bytes(snap.dataset)} if getattr(snap.dataset, "appended", 0) else {}),
        "metrics.json": json.dumps(snap.metrics).encode(),
        **training_code(),
    }
    reported = None
    if snap.evaluated is not None:
        round_, error, count, params = snap.evaluated
        where = "model/weights.bin"
        if round_ != snap.round or not np.array_equal(params, snap.params):
            where = "evaluated/weights.bin"
            parts[where] = params.astype("<f4").tobytes()
        reported = {"test_error": error, "round": round_, "count": count, "weights": where}
    replay = None
    if snap.replay_start is not None and snap.replay_rounds:
        start_round, start_params, start_history = snap.replay_start
        parts["replay/start_weights.bin"] = start_params.astype("<f4").tobytes()
        parts["replay/start_history.bin"] = start_history.astype("<f4").tobytes()
        rounds = [{**r, "contributions": [{**c, "ids": np.asarray(c["ids"]).tolist()} for c in r["contributions"]]}
                  for r in snap.replay_rounds]
        parts["replay/rounds.json"] = json.dumps(rounds).encode()
        replay = {"start_round": start_round, "rounds": len(snap.replay_rounds)}
    last = next((m for m in reversed(snap.metrics) if m.get("samples")), None)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "mlitb_version": __version__,
        "source_commit": source_commit(), "created": time.time(), "description": snap.description,
        "name": snap.name, "round": snap.round, "param_count": net.param_count,
        "loss": last.get("loss") if last else None, "reported": reported,
        "unreported": None if reported is not None else (snap.unreported or "no tracker has reported a test error"),
        "replay": replay,
        "code": {"bundle": "code/closure_check.js", "page": "code/closure.html", "wasm_sha256": wasm_hashes(),
                 "training_rules": {"version": __version__, "files": sorted(p for p in parts if p.startswith("code/training/"))}},
        "parts": {name: {"sha256": sha256(data), "size": len(data)} for name, data in sorted(parts.items())},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1))
        for name, data in sorted(parts.items()):
            # float32 arrays barely compress (and all-zero ones would look like a zip bomb): stored as they are
            zf.writestr(name, data, zipfile.ZIP_STORED if name.endswith(".bin") else zipfile.ZIP_DEFLATED)
    return buf.getvalue()


@dataclass
class Closure:
    """A validated closure: its manifest and every part's bytes (all hashes checked)."""

    manifest: dict
    parts: dict[str, bytes]
    spec: Any = None  # mlitb.master.project.ProjectSpec
    network: Any = None  # mlitb.model.Network
    config: dict = field(default_factory=dict)
    data: dict | None = None
    metrics: list[dict] = field(default_factory=list)

    def floats(self, part: str) -> np.ndarray:
        return np.frombuffer(self.parts[part], "<f4").astype(np.float32)

    @property
    def params(self) -> np.ndarray:
        return self.floats("model/weights.bin")

    @property
    def history(self) -> np.ndarray:
        return self.floats("optimizer/history.bin")


def _error(code: ErrorCode, message: str) -> MlitbError:
    return MlitbError(code, message)


def _check_directory(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise _error(ErrorCode.CLOSURE_TOO_LARGE, f"{len(infos)} entries; a closure holds at most {MAX_ENTRIES}")
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL_BYTES:
        raise _error(ErrorCode.CLOSURE_TOO_LARGE, f"{total} bytes uncompressed; at most {MAX_TOTAL_BYTES}")
    by_name: dict[str, zipfile.ZipInfo] = {}
    for i in infos:
        name = i.filename
        if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in name.split("/")):
            raise _error(ErrorCode.CLOSURE_INVALID, f"unsafe entry name {name!r}")
        if name in by_name:
            raise _error(ErrorCode.CLOSURE_INVALID, f"entry {name!r} appears twice")
        if i.file_size > RATIO_FLOOR_BYTES and i.file_size > MAX_RATIO * max(i.compress_size, 1):
            raise _error(ErrorCode.CLOSURE_TOO_LARGE, f"entry {name!r} expands {i.file_size / max(i.compress_size, 1):.0f}"
                         f"-fold; at most {MAX_RATIO}")
        by_name[name] = i
    return by_name


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """An entry's bytes, never more than its declared size or `cap` (a lying header cannot inflate it)."""
    limit = min(info.file_size, cap)
    with zf.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise _error(ErrorCode.CLOSURE_TOO_LARGE, f"entry {info.filename!r} holds more than its declared "
                     f"{info.file_size} bytes (or the {cap}-byte cap)")
    return data


def _json(name: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _error(ErrorCode.CLOSURE_INVALID, f"{name} is not valid JSON: {exc}") from None


def read_closure(source: str | Path | bytes) -> Closure:
    """Open, check and parse a closure file (path or bytes); raises MlitbError naming the first problem."""
    try:
        raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as exc:
        raise _error(ErrorCode.CLOSURE_INVALID, f"cannot read {source}: {exc.strerror}") from None
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        raise _error(ErrorCode.CLOSURE_INVALID, "not a zip file") from None
    with zf:
        entries = _check_directory(zf)
        if MANIFEST not in entries:
            raise _error(ErrorCode.CLOSURE_MISSING_PART, f"{MANIFEST} is missing")
        try:
            manifest = _json(MANIFEST, _read(zf, entries[MANIFEST], MAX_MANIFEST_BYTES))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise _error(ErrorCode.CLOSURE_INVALID, f"{MANIFEST}: 'format' is not {FORMAT!r}")
            version = manifest.get("format_version")
            if version != FORMAT_VERSION:
                raise _error(ErrorCode.CLOSURE_VERSION, f"format version {version!r}; this mlitb ({__version__}) "
                             f"reads version {FORMAT_VERSION}")
            listed = manifest.get("parts")
            if not isinstance(listed, dict):
                raise _error(ErrorCode.CLOSURE_INVALID, f"{MANIFEST}: 'parts' must map part names to hashes")
            for name in REQUIRED_PARTS:
                if name not in listed:
                    raise _error(ErrorCode.CLOSURE_MISSING_PART, f"{MANIFEST} does not list the required part {name}")
            unlisted = sorted(set(entries) - set(listed) - {MANIFEST})
            if unlisted:
                raise _error(ErrorCode.CLOSURE_INVALID, f"entries not covered by the manifest: {', '.join(unlisted)}")
            parts: dict[str, bytes] = {}
            for name, meta in listed.items():
                if name not in entries:
                    raise _error(ErrorCode.CLOSURE_MISSING_PART, f"part {name} is listed in the manifest but missing")
                if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
                    raise _error(ErrorCode.CLOSURE_INVALID, f"{MANIFEST}: part {name} has no sha256")
                data = _read(zf, entries[name], MAX_TOTAL_BYTES)
                if sha256(data) != meta["sha256"]:
                    raise _error(ErrorCode.CLOSURE_TAMPERED, f"part {name}: SHA-256 {sha256(data)[:16]}… does not "
                                 f"match the manifest's {meta['sha256'][:16]}…")
                parts[name] = data
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as exc:
            raise _error(ErrorCode.CLOSURE_INVALID, f"unreadable zip entry: {exc}") from None
    return _parse(manifest, parts)


def _parse(manifest: dict, parts: dict[str, bytes]) -> Closure:
    from mlitb.master.project import parse_project_spec
    from mlitb.model import model_json

    config = _json("config.json", parts["config.json"])
    if not isinstance(config, dict) or not isinstance(config.get("project"), dict):
        raise _error(ErrorCode.CLOSURE_INVALID, "config.json: 'project' must be the project definition")
    try:
        spec = parse_project_spec(config["project"])
        network = spec.build_network()
    except MlitbError as exc:
        raise MlitbError(exc.code, f"config.json: {exc.detail}") from None
    model = _json("model/model.json", parts["model/model.json"])
    expected = model_json(network, spec.name)
    if not isinstance(model, dict) or model.get("modelTopology") != expected["modelTopology"] \
            or model.get("weightsManifest") != expected["weightsManifest"]:
        raise _error(ErrorCode.CLOSURE_INVALID, "model/model.json does not describe the network in config.json")
    size = 4 * network.param_count
    for name in ("model/weights.bin", "optimizer/history.bin", "evaluated/weights.bin", "replay/start_weights.bin",
                 "replay/start_history.bin"):
        if name in parts and len(parts[name]) != size:
            raise _error(ErrorCode.CLOSURE_INVALID, f"{name} holds {len(parts[name])} bytes; the network's "
                         f"{network.param_count} float32 parameters need {size}")
    metrics = _json("metrics.json", parts["metrics.json"])
    data = _json("data.json", parts["data.json"])
    if not isinstance(metrics, list) or (data is not None and not isinstance(data, dict)):
        raise _error(ErrorCode.CLOSURE_INVALID, "metrics.json must be a list and data.json an object")
    reported = manifest.get("reported")
    if reported is not None and (not isinstance(reported, dict) or reported.get("weights") not in parts):
        raise _error(ErrorCode.CLOSURE_INVALID, f"{MANIFEST}: 'reported' must name stored weights")
    if reported is not None and not _valid_report(reported):
        raise _error(ErrorCode.CLOSURE_INVALID, f"{MANIFEST}: 'reported' needs a test_error in [0, 1], a round >= 0 "
                     f"and a count >= 1")
    if not isinstance(manifest.get("unreported"), (str, type(None))):
        raise _error(ErrorCode.CLOSURE_INVALID, f"{MANIFEST}: 'unreported' must be a string or null")
    return Closure(manifest, parts, spec, network, config, data, metrics)


def _valid_report(reported: dict) -> bool:
    """A forked project carries the report on: its numbers must be what a tracker could have sent."""
    error, rnd, count = reported.get("test_error"), reported.get("round"), reported.get("count")
    numbers = isinstance(error, (int, float)) and not isinstance(error, bool) and 0.0 <= error <= 1.0
    return numbers and all(isinstance(v, int) and not isinstance(v, bool) for v in (rnd, count)) and rnd >= 0 \
        and count >= 1
