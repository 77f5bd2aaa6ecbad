"""Ingest an uploaded zip of class folders (`[top/]label/image.png`) into uint8 tensors.

Decoded once, on the server (Pillow), at the project's input size: images are resized to
H x W (bilinear) and converted to grey (C = 1) or RGB (C = 3); labels are the sorted folder
names. Hostile archives are refused before anything is decoded: caps on entry count, total
uncompressed size and compression ratio; absolute paths, `..`, symlinks. Non-image files
are skipped and listed. Corrupt images are skipped and listed by name (the upload keeps the
good ones; it fails only if none is left). Output is written to a temporary folder and
renamed into place, so a failed upload leaves nothing half-stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from mlitb.data.dataset import Split
from mlitb.data.images import UndecodableImage, decode_image, describe_preprocessing
from mlitb.errors import ErrorCode, MlitbError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


@dataclass(frozen=True)
class IngestLimits:
    max_entries: int = 200_000  # files in the zip
    max_total_bytes: int = 4 * 1024**3  # bytes, uncompressed
    max_ratio: float = 100.0  # uncompressed / compressed, per entry (zip bombs)
    max_classes: int = 256  # labels travel as one byte each
    max_image_pixels: int = 16_000_000  # per decoded image, before resizing


@dataclass
class IngestReport:
    count: int
    labels: list[str]
    per_class: dict[str, int]
    shape: list[int]
    preprocessing: str
    skipped_non_images: list[str] = field(default_factory=list)
    corrupt_images: list[str] = field(default_factory=list)
    sha256: str = ""


def _fail(msg: str) -> MlitbError:
    return MlitbError(ErrorCode.BAD_ARCHIVE, msg)


def _entries(zf: zipfile.ZipFile, limits: IngestLimits) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise _fail(f"the zip has {len(infos)} entries; at most {limits.max_entries}")
    total = sum(i.file_size for i in infos)
    if total > limits.max_total_bytes:
        raise _fail(f"the zip unpacks to {total} bytes; at most {limits.max_total_bytes}")
    out = []
    for info in infos:
        name = info.filename
        path = PurePosixPath(name)
        if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":") or ".." in path.parts:
            raise _fail(f"entry '{name}' has an absolute or parent path")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _fail(f"entry '{name}' is a symbolic link")
        if info.is_dir():
            continue
        if info.compress_size and info.file_size / info.compress_size > limits.max_ratio:
            raise _fail(f"entry '{name}' expands {info.file_size / info.compress_size:.0f}x; at most {limits.max_ratio:.0f}x")
        out.append((info, path))
    return out


def _label_of(path: PurePosixPath, top: str | None) -> str | None:
    parts = path.parts[1:] if top else path.parts
    return parts[0] if len(parts) == 2 else None


def ingest_zip(archive: Path, out_dir: Path, shape: tuple[int, int, int], limits: IngestLimits = IngestLimits(),
               progress=None, reserve=None) -> IngestReport:
    """Decode `archive` into `out_dir` (images.npy, labels.npy, meta.json); atomic. `reserve(bytes)`, if given,
    is called with the decoded size of every image in the zip before any is decoded, and may refuse it."""
    h, w, c = shape
    if c not in (1, 3):
        raise _fail(f"image input must have 1 or 3 channels, the network has {c}")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _fail(f"not a readable zip file: {exc}") from None
    with zf:
        entries = _entries(zf, limits)
        # one optional top folder: every image sits at top/label/file under the same top
        pics = [p for _, p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        tops = {p.parts[0] for p in pics}
        top = tops.pop() if len(tops) == 1 and pics and all(len(p.parts) == 3 for p in pics) else None
        report = IngestReport(0, [], {}, [h, w, c], describe_preprocessing(shape))
        images: list[tuple[str, PurePosixPath, zipfile.ZipInfo]] = []
        for info, path in entries:
            label = _label_of(path, top)
            if path.suffix.lower() not in IMAGE_SUFFIXES or label is None:
                report.skipped_non_images.append(info.filename)
                continue
            images.append((label, path, info))
        labels = sorted({label for label, _, _ in images})
        if not images:
            raise MlitbError(ErrorCode.EMPTY_DATASET, "the zip holds no PNG or JPEG images in class folders "
                             "(expected [top/]label/image.png)")
        if len(labels) > limits.max_classes:
            raise _fail(f"{len(labels)} classes; at most {limits.max_classes}")
        if reserve is not None:
            reserve(len(images) * (h * w * c + 1))
        index = {label: i for i, label in enumerate(labels)}
        pixels = np.empty((len(images), h, w, c), dtype=np.uint8)
        targets = np.empty(len(images), dtype=np.uint8)
        n = 0
        for k, (label, path, info) in enumerate(sorted(images, key=lambda e: str(e[1]))):
            try:
                with zf.open(info) as fh:
                    pixels[n] = decode_image(fh, shape, limits.max_image_pixels)
            except UndecodableImage:
                report.corrupt_images.append(info.filename)
                continue
            targets[n] = index[label]
            n += 1
            if progress and k % 1000 == 0:
                progress(k, len(images))
    if n == 0:
        raise MlitbError(ErrorCode.EMPTY_DATASET, f"none of the {len(images)} images could be decoded: "
                         f"{', '.join(report.corrupt_images[:5])}")
    # a class is a folder with at least one usable image: folders whose images were all corrupt are no class
    used = sorted(set(np.unique(targets[:n]).tolist()))
    if len(used) < 2:
        raise MlitbError(ErrorCode.EMPTY_DATASET, f"only one class ('{labels[used[0]]}') has usable images; a "
                         f"classifier needs two or more ({len(report.corrupt_images)} images could not be decoded)")
    renumber = np.zeros(len(labels), np.uint8)
    renumber[used] = np.arange(len(used))
    labels = [labels[i] for i in used]
    pixels, targets = pixels[:n], renumber[targets[:n]]
    report.count, report.labels = n, labels
    report.per_class = {label: int(np.count_nonzero(targets == i)) for i, label in enumerate(labels)}
    report.sha256 = hashlib.sha256(pixels.tobytes() + targets.tobytes()).hexdigest()
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "images.npy", pixels)
    np.save(tmp / "labels.npy", targets)
    (tmp / "meta.json").write_text(json.dumps(asdict(report)))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return report


def load_ingested(directory: Path) -> tuple[Split, dict]:
    meta = json.loads((directory / "meta.json").read_text())
    return Split(np.load(directory / "images.npy"), np.load(directory / "labels.npy")), meta
