"""Storage quotas and the free-disk watermark: each limit just inside and just past, on a folder of known size."""

import pytest

from mlitb.config import Settings
from mlitb.errors import MlitbError
from mlitb.server.storage import Storage, tree_bytes


def storage(tmp_path, free=10**12, examples=0, **limits):
    (tmp_path / "datasets" / "1" / "train").mkdir(parents=True)
    (tmp_path / "datasets" / "1" / "train" / "images.npy").write_bytes(b"x" * 1000)
    (tmp_path / "closures").mkdir()
    (tmp_path / "closures" / "c.zip").write_bytes(b"z" * 500)
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "in-flight.zip").write_bytes(b"u" * 300)  # counted by the receiver, not the walk
    settings = Settings(data_dir=tmp_path, **limits)
    return Storage(settings, examples_bytes=lambda pid: examples if pid == 1 else 0, disk_free=lambda path: free)


def code_of(call):
    with pytest.raises(MlitbError) as err:
        call()
    return err.value.code.name


def test_the_server_counts_every_stored_file_but_uploads_in_flight_only_through_their_counter(tmp_path):
    s = storage(tmp_path)
    assert tree_bytes(tmp_path) == 1800 and s.server_used() == 1500
    with s.receiving() as rx:
        rx.add(300)
        assert s.server_used() == 1800
    assert s.server_used() == 1500 and s.in_flight == 0


def test_a_project_counts_its_data_sets_and_its_added_examples(tmp_path):
    s = storage(tmp_path, examples=784)
    assert s.project_used(1) == 1784 and s.project_used(2) == 0


def test_the_project_quota_admits_exactly_up_to_it_and_counts_what_an_upload_replaces(tmp_path):
    s = storage(tmp_path, examples=784, max_project_bytes=2000)
    s.require(216, project_id=1)  # 1784 + 216 = 2000: inside
    assert code_of(lambda: s.require(217, project_id=1)) == "PROJECT_QUOTA_EXCEEDED"
    s.require(1216, project_id=1, replacing=1000)  # the replaced split's 1000 bytes are freed
    assert code_of(lambda: s.require(2001, project_id=2)) == "PROJECT_QUOTA_EXCEEDED"


def test_the_server_quota_admits_exactly_up_to_it(tmp_path):
    s = storage(tmp_path, max_server_bytes=2000)
    s.require(500)
    assert code_of(lambda: s.require(501)) == "SERVER_QUOTA_EXCEEDED"
    s.require(1500, replacing=1000)


def test_the_disk_watermark_refuses_what_would_leave_less_free_than_it(tmp_path):
    s = storage(tmp_path, free=5000, min_free_disk_bytes=4000)
    s.require(1000)
    err = pytest.raises(MlitbError, s.require, 1001).value
    assert err.code.name == "DISK_LOW" and err.code.http_status == 507 and "keeps at least" in err.detail
    assert code_of(lambda: storage(tmp_path / "b", free=3999, min_free_disk_bytes=4000).receiving().__enter__()) \
        == "DISK_LOW"


def test_an_upload_is_refused_while_it_arrives_when_it_passes_the_server_quota(tmp_path):
    s = storage(tmp_path, max_server_bytes=2000)
    with pytest.raises(MlitbError) as err, s.receiving() as rx:
        rx.add(500)  # 1500 + 500: inside
        rx.add(1)
    assert err.value.code.name == "SERVER_QUOTA_EXCEEDED" and s.in_flight == 0


def test_an_upload_is_refused_while_it_arrives_when_the_disk_fills_below_the_watermark(tmp_path):
    free = [10**9]
    s = storage(tmp_path, min_free_disk_bytes=10**6)
    s.disk_free = lambda path: free[0]
    with pytest.raises(MlitbError) as err, s.receiving() as rx:
        rx.add(1 << 20)  # measured again after each MiB
        free[0] = 10**6 - 1  # someone else filled the disk
        rx.add(1 << 20)
    assert err.value.code.name == "DISK_LOW" and s.in_flight == 0
