"""Storage: one API for a local folder and an s3:// prefix (real S3 server process on 127.0.0.1)."""
from __future__ import annotations

import os

import pytest

from stark.platform import storage
from stark.platform.storage import StorageConfig


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_bucket") + "/prefix"


def test_written_objects_read_back_and_list(root):
    storage.write_bytes_atomic(storage.join(root, "a/b.bin"), b"hello")
    storage.write_bytes_atomic(storage.join(root, "a/c.bin"), b"world")
    assert storage.exists(storage.join(root, "a/b.bin"))
    assert storage.read_bytes(storage.join(root, "a/b.bin")) == b"hello"
    with storage.open_read(storage.join(root, "a/c.bin")) as f:
        assert f.read() == b"world"
    assert [u.rsplit("/", 1)[1] for u in storage.list_files(storage.join(root, "a"))] == ["b.bin", "c.bin"]
    storage.remove(storage.join(root, "a/b.bin"))
    assert not storage.exists(storage.join(root, "a/b.bin"))


def test_a_local_file_uploads_whole_to_a_folder_or_a_bucket_and_leaves_no_temporary_file(root, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"weights")
    target = storage.join(root, "stage1/checkpoint-000000004/checkpoint.pt")
    storage.upload_file(str(tmp_path / "checkpoint.pt"), target)
    assert storage.read_bytes(target) == b"weights"
    assert storage.list_files(storage.join(root, "stage1")) == [target]


def test_local_atomic_write_leaves_no_temporary_file(tmp_path):
    target = str(tmp_path / "x" / "manifest.parquet")
    storage.write_bytes_atomic(target, b"1")
    storage.write_bytes_atomic(target, b"22")
    assert os.listdir(tmp_path / "x") == ["manifest.parquet"]
    assert storage.read_bytes(target) == b"22"


def test_storage_config_falls_back_to_the_aws_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    resolved = StorageConfig().resolved()
    assert (resolved.endpoint_url, resolved.key, resolved.secret, resolved.region) == \
        ("http://127.0.0.1:9", "k", "s", "eu-west-1")
    explicit = StorageConfig(endpoint_url="http://127.0.0.1:10", key="a", secret="b").resolved()
    assert (explicit.endpoint_url, explicit.key) == ("http://127.0.0.1:10", "a")


def test_half_given_credentials_are_a_config_error():
    with pytest.raises(ValueError, match="storage.key and storage.secret"):
        StorageConfig(key="only-key").validate()
