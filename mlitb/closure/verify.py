"""`mlitb closure verify`: check every hash of a closure, then recompute its reported test error from the
stored weights with the stored browser code in headless Chromium, on test data that must match the data
manifest's hashes; reported vs recomputed, and whether they agree."""

from __future__ import annotations

import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlitb.closure.browser import ClosurePage, closure_files
from mlitb.closure.format import Closure, appended_examples, read_closure, split_manifest
from mlitb.data import Split, load_mnist
from mlitb.data.ingest import ingest_zip, load_ingested
from mlitb.data.mnist import FILES
from mlitb.errors import ErrorCode, MlitbError

DEFAULT_TOLERANCE = 0.001  # absolute difference in test error (10 of 10,000 examples) still counted as agreement
MAX_DATA_ZIP_BYTES = 512 << 20


@dataclass
class VerifyReport:
    ok: bool
    lines: list[str] = field(default_factory=list)
    reported: float | None = None
    recomputed: float | None = None
    backend: str | None = None


def _idx_from_zip(zf: zipfile.ZipFile, path: Path, into: Path) -> Path:
    """Extract the four MNIST IDX files (matched by name, anywhere in the zip) with size caps."""
    wanted = {Path(i.filename).name: i for i in zf.infolist() if Path(i.filename).name in FILES.values()}
    if sum(i.file_size for i in wanted.values()) > MAX_DATA_ZIP_BYTES:
        raise MlitbError(ErrorCode.DATA_MISMATCH, f"{path}: the IDX files exceed {MAX_DATA_ZIP_BYTES} bytes")
    for name, info in wanted.items():
        with zf.open(info) as src:
            data = src.read(info.file_size + 1)
        if len(data) > info.file_size:
            raise MlitbError(ErrorCode.DATA_MISMATCH, f"{path}: entry {info.filename} is larger than declared")
        (into / name).write_bytes(data)
    return into


def _split_from(data: Path, split: str, shape: tuple[int, int, int]) -> Split:
    """One split of the given data: MNIST IDX files (a folder, or a zip holding them), or a zip of class folders
    as uploaded to a project (decoded by the same ingest as the server's)."""
    if data.is_dir():
        return getattr(load_mnist(str(data)), split)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with zipfile.ZipFile(data) as zf:
                is_idx = any(Path(i.filename).name in FILES.values() for i in zf.infolist())
                if is_idx:
                    return getattr(load_mnist(str(_idx_from_zip(zf, data, Path(tmp)))), split)
        except zipfile.BadZipFile:
            raise MlitbError(ErrorCode.DATA_MISMATCH, f"{data} is neither a folder nor a zip file") from None
        ingest_zip(data, Path(tmp) / "split", shape)
        return load_ingested(Path(tmp) / "split")[0]


def _with_appended(closure: Closure, part: Split) -> Split:
    """The training split with the examples labelled on the fly, which the closure stores (data/appended.bin)."""
    examples = appended_examples(closure)
    index = {label: i for i, label in enumerate(closure.data["labels"])}
    labels = np.array([index[ex.label] for ex in examples], np.uint8)
    images = np.stack([ex.image for ex in examples])
    return Split(np.concatenate([part.images, images]), np.concatenate([part.labels, labels]))


def load_split(closure: Closure, data: str | Path | None, split: str) -> Split:
    """The closure's `split` ("train" or "test"): from `data` or the installed built-in data set; its count and
    content hashes (and, for a built-in set, the label map) must match the closure's data manifest."""
    manifest = closure.data
    if manifest is None:
        raise MlitbError(ErrorCode.DATA_MISMATCH, "the closure's project had no data set (data.json is empty)")
    want = manifest.get("splits", {}).get(split)
    if want is None:
        raise MlitbError(ErrorCode.DATA_MISMATCH, f"the data manifest lists no {split} split")
    added = manifest.get("appended") or {}
    if data is None:
        if manifest.get("dataset") != "mnist":
            raise MlitbError(ErrorCode.DATA_MISMATCH, f"data set {manifest.get('dataset')!r} is not built in: give "
                             f"--data (the {split} zip as uploaded)")
        dataset = load_mnist()
        base_labels = manifest.get("labels", [])[:len(manifest.get("labels", [])) - len(added.get("new_labels", []))]
        if list(dataset.labels) != base_labels:
            raise MlitbError(ErrorCode.DATA_MISMATCH, f"label map {list(dataset.labels)} differs from the manifest's")
        part = getattr(dataset, split)
    else:
        if not Path(data).exists():
            raise MlitbError(ErrorCode.DATA_MISMATCH, f"{data} does not exist")
        part = _split_from(Path(data), split, tuple(manifest["shape"]))
    if part is None:
        raise MlitbError(ErrorCode.DATA_MISMATCH, f"the data has no {split} split")
    if split == "train" and added:
        part = _with_appended(closure, part)
    got = split_manifest(part)
    for key in ("count", "images_sha256", "labels_sha256"):
        if got[key] != want.get(key):
            raise MlitbError(ErrorCode.DATA_MISMATCH, f"{split} split: {key} is {got[key]}, the data manifest "
                             f"says {want.get(key)}")
    return part


def verify(path: str | Path, data: str | Path | None = None, backend: str = "wasm",
           tolerance: float = DEFAULT_TOLERANCE) -> VerifyReport:
    closure = read_closure(path)  # every hash, the version, the parts, the network: or an MlitbError
    report = VerifyReport(ok=False)
    report.lines.append(f"hashes: all {len(closure.parts)} parts match the manifest "
                        f"(format {closure.manifest['format_version']}, mlitb {closure.manifest.get('mlitb_version')}, "
                        f"commit {closure.manifest.get('source_commit') or 'unknown'})")
    reported = closure.manifest.get("reported")
    if reported is None:
        why = closure.manifest.get("unreported") or "no tracker has reported a test error for these weights"
        report.lines.append(f"reported: nothing to recompute: {why}")
        report.lines.append("NOT verified: the closure holds no reported test error")
        return report
    test = load_split(closure, data, "test")
    report.lines.append("data: the test split matches the data manifest's count and hashes")
    count = int(reported["count"])
    if not 1 <= count <= len(test):
        raise MlitbError(ErrorCode.CLOSURE_INVALID, f"reported over {count} test examples; the test split has {len(test)}")
    files = closure_files(closure, reported["weights"])
    files["/data/test.bin"] = test.labels[:count].tobytes() + test.images[:count].tobytes()
    with ClosurePage(files) as page:
        info = page.call("init", "/model/model.json", backend)
        result = page.call("evaluate", "/data/test.bin", count, list(test.images.shape[1:]))
    report.reported, report.recomputed, report.backend = float(reported["test_error"]), result["error"], info["backend"]
    diff = abs(report.recomputed - report.reported)
    report.ok = diff <= tolerance
    report.lines.append(f"test error of round {reported['round']} over {count} examples: reported "
                        f"{report.reported:.6f}, recomputed {report.recomputed:.6f} (stored code, {info['backend']}); "
                        f"difference {diff:.6f} {'<=' if report.ok else '>'} tolerance {tolerance}")
    report.lines.append("verified" if report.ok else "NOT verified: the recomputed test error disagrees")
    return report
