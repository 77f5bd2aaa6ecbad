"""Research-closure files: what is built reads back whole; every kind of bad file is refused by name."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from mlitb.closure import build_closure, load, snapshot
from mlitb.closure.format import FORMAT_VERSION, MAX_ENTRIES, read_closure, sha256
from mlitb.errors import ErrorCode, MlitbError
from tests.helpers import make_runtime


@pytest.fixture(scope="module")
def runtime():
    rt = make_runtime(deterministic=True)
    # as after one round of training: not the seed's weights
    rt.restore(1, rt.params + np.float32(0.25), rt.history, [{"round": 0, "samples": 5, "loss": 1.5, "test_error": None}])
    return rt


@pytest.fixture(scope="module")
def raw(runtime):
    return build_closure(snapshot(runtime, "a tiny experiment"))


def entries(raw: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def rezip(parts: dict[str, bytes], rehash: bool = False) -> bytes:
    """A closure zip of these entries; with `rehash` the manifest's hashes are brought up to date."""
    parts = dict(parts)
    if rehash:
        manifest = json.loads(parts["manifest.json"])
        manifest["parts"] = {n: {"sha256": sha256(d), "size": len(d)} for n, d in parts.items() if n != "manifest.json"}
        parts["manifest.json"] = json.dumps(manifest).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return buf.getvalue()


def refused(raw: bytes) -> MlitbError:
    with pytest.raises(MlitbError) as exc:
        read_closure(raw)
    return exc.value


def test_a_saved_closure_loads_with_its_spec_weights_by_layer_labels_and_metrics(runtime, raw):
    c = load(raw)
    assert c.spec["name"] == "tiny" and c.spec["hyper"]["deterministic"] is True
    assert c.description == "a tiny experiment"
    assert set(c.weights) == {"dense_2"}
    np.testing.assert_array_equal(c.weights["dense_2"]["kernel"], runtime.params[:12].reshape(4, 3))
    np.testing.assert_array_equal(c.weights["dense_2"]["bias"], runtime.params[12:])
    assert c.label_map == ["a", "b", "c"]
    assert c.metrics == runtime.metrics


def test_the_manifest_covers_every_part_with_its_hash_and_names_the_code_and_data(raw):
    parts = entries(raw)
    manifest = json.loads(parts.pop("manifest.json"))
    assert manifest["format_version"] == FORMAT_VERSION and manifest["mlitb_version"]
    assert set(manifest["parts"]) == set(parts)
    for name, data in parts.items():
        assert manifest["parts"][name]["sha256"] == sha256(data), name
    assert {"code/closure_check.js", "code/trainer.js", "code/training/adagrad.py"} <= set(parts)
    assert manifest["code"]["wasm_sha256"]
    data = json.loads(parts["data.json"])
    assert data["labels"] == ["a", "b", "c"] and data["splits"]["train"]["count"] == 30
    assert data["splits"]["test"]["images_sha256"] and data["preprocessing"]
    config = json.loads(parts["config.json"])
    assert config["project"]["seed"] == 0 and config["aggregation"] == "centered_clip" and config["optimizer"] == "adagrad"


def test_a_flipped_byte_in_the_weights_is_refused_naming_the_part(raw):
    parts = entries(raw)
    w = bytearray(parts["model/weights.bin"])
    w[5] ^= 0x01
    parts["model/weights.bin"] = bytes(w)
    err = refused(rezip(parts))
    assert err.code is ErrorCode.CLOSURE_TAMPERED and "model/weights.bin" in err.detail


def test_an_unknown_format_version_is_refused(raw):
    parts = entries(raw)
    manifest = json.loads(parts["manifest.json"])
    manifest["format_version"] = 99
    parts["manifest.json"] = json.dumps(manifest).encode()
    err = refused(rezip(parts))
    assert err.code is ErrorCode.CLOSURE_VERSION and "99" in err.detail


def test_a_missing_part_is_refused_naming_it(raw):
    parts = entries(raw)
    del parts["metrics.json"]
    err = refused(rezip(parts))
    assert err.code is ErrorCode.CLOSURE_MISSING_PART and "metrics.json" in err.detail


def test_a_part_the_manifest_does_not_cover_is_refused(raw):
    parts = entries(raw)
    parts["extra.js"] = b"alert(1)"
    err = refused(rezip(parts))
    assert err.code is ErrorCode.CLOSURE_INVALID and "extra.js" in err.detail


def test_a_network_with_an_unknown_layer_is_refused_even_with_matching_hashes(raw):
    parts = entries(raw)
    config = json.loads(parts["config.json"])
    config["project"]["network"].insert(1, {"type": "lstm", "units": 4})
    parts["config.json"] = json.dumps(config).encode()
    err = refused(rezip(parts, rehash=True))
    assert err.code is ErrorCode.INVALID_NETWORK and "config.json" in err.detail and "lstm" in err.detail


def test_weights_of_the_wrong_size_are_refused_even_with_matching_hashes(raw):
    parts = entries(raw)
    parts["model/weights.bin"] = parts["model/weights.bin"][:-4]
    err = refused(rezip(parts, rehash=True))
    assert err.code is ErrorCode.CLOSURE_INVALID and "model/weights.bin" in err.detail


def test_a_zip_bomb_entry_is_refused_before_it_is_decompressed(raw):
    parts = entries(raw)
    parts["metrics.json"] = b"\0" * (16 << 20)  # deflates about 1000-fold
    err = refused(rezip(parts, rehash=True))
    assert err.code is ErrorCode.CLOSURE_TOO_LARGE and "metrics.json" in err.detail


def test_too_many_entries_are_refused(raw):
    parts = entries(raw)
    parts.update({f"junk/{i}": b"x" for i in range(MAX_ENTRIES)})
    err = refused(rezip(parts))
    assert err.code is ErrorCode.CLOSURE_TOO_LARGE and "entries" in err.detail


def test_a_file_that_is_not_a_zip_is_refused():
    err = refused(b"PK\x03\x04 not really")
    assert err.code is ErrorCode.CLOSURE_INVALID and "zip" in err.detail


def test_an_unsafe_entry_name_is_refused(raw):
    parts = entries(raw)
    parts["../evil"] = b"x"
    assert refused(rezip(parts)).code is ErrorCode.CLOSURE_INVALID


def test_a_deterministic_project_records_the_examples_it_names_each_round():
    rt = make_runtime(deterministic=True, samples_per_round=4)
    rt.allocator.join(7)

    class Client:
        id = 7

    ids = rt.record.name_examples(rt.spec.seed, rt.round, Client.id, rt.allocator.ids_of(Client.id), 4)
    assert len(ids) == 4 and len(set(ids.tolist())) == 4
    assert set(ids.tolist()) <= set(rt.allocator.ids_of(7).tolist())
    with pytest.raises(MlitbError) as exc:
        rt.record.contribution(Client.id, 3, 1.0)
    assert exc.value.code is ErrorCode.BAD_SAMPLE_COUNT
    rt.record.reduced(rt.record.contribution(Client.id, 4, 1.0))
    rt.record.close_round(0, False, deterministic=True)
    [record] = rt.record.replay_rounds
    assert record["round"] == 0 and record["step_skipped"] is False
    [contribution] = record["contributions"]
    assert contribution["ids"].tolist() == ids.tolist() and contribution["samples"] == 4
    rt.advance()
    saved = json.loads(entries(build_closure(snapshot(rt)))["replay/rounds.json"])
    assert saved == [{"round": 0, "contributions": [{"ids": ids.tolist(), "samples": 4, "loss_sum": 1.0}],
                      "step_skipped": False}]


def class_folder_zip(path, shade: int = 0):
    """A zip of class folders, as uploaded to a project: a/0.png, a/1.png, b/0.png, ..."""
    from PIL import Image

    with zipfile.ZipFile(path, "w") as zf:
        for k, label in enumerate("abc"):
            for i in range(2):
                buf = io.BytesIO()
                Image.new("L", (2, 2), color=40 * k + 10 * i + shade).save(buf, format="PNG")
                zf.writestr(f"{label}/{i}.png", buf.getvalue())
    return path


def test_verify_data_from_an_uploaded_zip_must_match_the_data_manifest(tmp_path):
    from mlitb.closure.verify import load_split
    from mlitb.data import Dataset
    from mlitb.data.ingest import ingest_zip, load_ingested

    zipped = class_folder_zip(tmp_path / "test.zip")
    ingest_zip(zipped, tmp_path / "ingested", (2, 2, 1))
    split = load_ingested(tmp_path / "ingested")[0]
    rt = make_runtime()
    rt.attach_data(Dataset("uploaded", ("a", "b", "c"), split, split))
    closure = read_closure(build_closure(snapshot(rt)))
    np.testing.assert_array_equal(load_split(closure, zipped, "test").images, split.images)
    with pytest.raises(MlitbError) as exc:
        load_split(closure, class_folder_zip(tmp_path / "other.zip", shade=1), "test")
    assert exc.value.code is ErrorCode.DATA_MISMATCH and "images_sha256" in exc.value.detail
    with pytest.raises(MlitbError) as exc:
        load_split(closure, None, "test")
    assert exc.value.code is ErrorCode.DATA_MISMATCH and "--data" in exc.value.detail


async def test_a_refused_gradient_is_not_recorded_as_a_contribution():
    import asyncio

    from mlitb.protocol import MessageType, encode
    from mlitb.workers.simulated import MemoryTrainer

    rt = make_runtime(deterministic=True, samples_per_round=4)
    trainer = MemoryTrainer(rt, None)
    task = asyncio.create_task(rt.run_round())
    while rt.open_round is None or not trainer.ids.size:
        await asyncio.sleep(0.01)
    bad = np.full(rt.param_count, np.nan, np.float32)
    frame = lambda grad: encode(MessageType.GRADIENT, project=1, round=0, count=4, aux=10, value=1.0, payload=grad)  # noqa: E731
    assert trainer.send(frame(bad)).code is ErrorCode.NON_FINITE
    assert trainer.send(frame(np.ones(rt.param_count, np.float32))) is None
    await task
    [record] = rt.record.replay_rounds
    assert len(record["contributions"]) == 1


def test_a_compressed_run_records_its_codecs_and_replay_refuses_it_clearly(tmp_path):
    from mlitb.closure.replay import replay

    rt = make_runtime(deterministic=True, upload_codec="topk_q8", download_codec="delta_q4", algorithm="local_sgd")
    raw = build_closure(snapshot(rt))
    config = json.loads(entries(raw)["config.json"])
    assert config["communication"]["upload_codec"] == "topk_q8"
    assert config["communication"]["download_codec"] == "delta_q4"
    assert config["optimizer"] == "nesterov"
    path = tmp_path / "c.zip"
    path.write_bytes(raw)
    with pytest.raises(MlitbError) as exc:
        replay(path)
    assert exc.value.code is ErrorCode.NOT_REPLAYABLE and "topk_q8" in exc.value.detail
