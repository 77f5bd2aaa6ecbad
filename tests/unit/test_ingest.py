"""Zip ingest: real PNG/JPEG class folders decode to uint8 tensors; hostile archives are refused."""

import io
import json
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image

from mlitb.data.ingest import IngestLimits, ingest_zip, load_ingested
from mlitb.errors import ErrorCode, MlitbError


def png(value: int, size=(8, 8), mode="L", fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (value,) * 3 if mode == "RGB" else value).save(buf, fmt)
    return buf.getvalue()


def make_zip(path, files: dict[str, bytes], symlink: str | None = None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_class_folders_become_sorted_labels_and_resized_uint8_images(tmp_path):
    archive = make_zip(tmp_path / "d.zip", {
        "digits/seven/a.png": png(200, (10, 12)), "digits/seven/b.jpg": png(100, fmt="JPEG"),
        "digits/one/c.png": png(50, mode="RGB"), "digits/README.txt": b"hello",
    })
    report = ingest_zip(archive, tmp_path / "out", (4, 4, 1))
    split, meta = load_ingested(tmp_path / "out")
    assert report.labels == ["one", "seven"] and report.per_class == {"one": 1, "seven": 2}
    assert split.images.shape == (3, 4, 4, 1) and split.images.dtype == np.uint8
    assert sorted(split.labels.tolist()) == [0, 1, 1]
    assert report.skipped_non_images == ["digits/README.txt"]
    assert meta["preprocessing"].startswith("resize to 4x4")
    assert int(split.images[split.labels == 0].mean()) == 50  # the RGB image became grey


def test_rgb_input_keeps_three_channels_and_folders_at_the_top_level_work(tmp_path):
    archive = make_zip(tmp_path / "d.zip", {"cat/1.png": png(10, mode="RGB"), "dog/2.png": png(20)})
    ingest_zip(archive, tmp_path / "out", (6, 6, 3))
    split, _ = load_ingested(tmp_path / "out")
    assert split.images.shape == (2, 6, 6, 3)


def test_corrupt_images_are_listed_and_the_good_ones_kept(tmp_path):
    archive = make_zip(tmp_path / "d.zip", {"a/1.png": png(1), "a/broken.png": png(1)[:20], "b/2.png": png(2)})
    report = ingest_zip(archive, tmp_path / "out", (8, 8, 1))
    assert report.count == 2 and report.corrupt_images == ["a/broken.png"]


@pytest.mark.parametrize("files,code,needle", [
    ({"a/../../etc/x.png": b"x"}, ErrorCode.BAD_ARCHIVE, "parent path"),
    ({"/abs/a/x.png": b"x"}, ErrorCode.BAD_ARCHIVE, "absolute"),
    ({"readme.txt": b"x"}, ErrorCode.EMPTY_DATASET, "no PNG or JPEG"),
    ({"only/1.png": png(1), "only/2.png": png(2)}, ErrorCode.EMPTY_DATASET, "only one class"),
    ({"a/1.png": b"not an image", "b/2.png": b"nor this"}, ErrorCode.EMPTY_DATASET, "none of the 2 images"),
])
def test_bad_archives_are_refused_with_a_clear_error(tmp_path, files, code, needle):
    with pytest.raises(MlitbError) as exc:
        ingest_zip(make_zip(tmp_path / "d.zip", files), tmp_path / "out", (8, 8, 1))
    assert exc.value.code == code and needle in exc.value.detail
    assert not (tmp_path / "out").exists()


def test_symlinks_zip_bombs_and_too_many_entries_or_classes_are_refused(tmp_path):
    base = {"a/1.png": png(1), "b/2.png": png(2)}
    cases = [
        (make_zip(tmp_path / "s.zip", base, symlink="a/link.png"), IngestLimits(), "symbolic link"),
        (make_zip(tmp_path / "b.zip", {**base, "a/bomb.png": b"\0" * 5_000_000}), IngestLimits(), "expands"),
        (make_zip(tmp_path / "n.zip", base), IngestLimits(max_entries=1), "entries"),
        (make_zip(tmp_path / "t.zip", base), IngestLimits(max_total_bytes=10), "unpacks to"),
        (make_zip(tmp_path / "c.zip", base), IngestLimits(max_classes=1), "classes"),
    ]
    for archive, limits, needle in cases:
        with pytest.raises(MlitbError) as exc:
            ingest_zip(archive, tmp_path / "out", (8, 8, 1), limits)
        assert exc.value.code == ErrorCode.BAD_ARCHIVE and needle in exc.value.detail, needle
    (tmp_path / "junk.zip").write_bytes(b"PK but not really")
    with pytest.raises(MlitbError, match="not a readable zip"):
        ingest_zip(tmp_path / "junk.zip", tmp_path / "out", (8, 8, 1))


def test_limits_just_inside_are_accepted(tmp_path):
    archive = make_zip(tmp_path / "d.zip", {"a/1.png": png(1), "b/2.png": png(2)})
    assert ingest_zip(archive, tmp_path / "out", (8, 8, 1), IngestLimits(max_entries=2, max_classes=2)).count == 2
    json.loads((tmp_path / "out" / "meta.json").read_text())
