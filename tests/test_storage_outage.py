"""Object storage through an outage: S3 calls are retried with backoff for `storage.retry_seconds`, then
fail as one line naming the endpoint, the bucket and the operation; a missing bucket is named as such.

The outage is real: the jobs talk to the S3 server process through a TCP forwarder on 127.0.0.1
(tests/support/tcp_outage.py) that the test cuts, refusing and resetting every connection, and restores
on the same port. (moto_server keeps its state in memory, so the server itself cannot be restarted.)
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time

import pytest

from stark.platform import storage
from stark.platform.storage import NoSuchBucketError, StorageConfig, StorageError
from tests.support.tcp_outage import TcpOutage


@pytest.fixture(scope="module")
def ray_address():
    """One Ray for the ingest commands of this module (each joins it, as `stark submit` jobs do)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def outage(s3_endpoint):
    proxy = TcpOutage(int(s3_endpoint.rsplit(":", 1)[1]))
    yield proxy
    proxy.cut()


def through(proxy: TcpOutage, retry_seconds: float = 30.0) -> StorageConfig:
    return StorageConfig(endpoint_url=proxy.url, region="us-east-1", key="testing", secret="testing",
                         retry_seconds=retry_seconds)


def restore_after(proxy: TcpOutage, seconds: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), proxy.restore()), daemon=True)
    thread.start()
    return thread


def test_a_read_and_a_write_during_an_outage_wait_for_the_endpoint_and_succeed(s3_bucket, outage):
    cfg = through(outage)
    storage.write_bytes_atomic(f"{s3_bucket}/a.bin", b"before", cfg)
    outage.cut()
    restore_after(outage, 3)
    started = time.monotonic()
    assert storage.read_bytes(f"{s3_bucket}/a.bin", cfg) == b"before"
    storage.write_bytes_atomic(f"{s3_bucket}/b.bin", b"during", cfg)
    assert time.monotonic() - started >= 2.5  # it really waited for the endpoint
    assert storage.read_bytes(f"{s3_bucket}/b.bin") == b"during"  # straight from the server


def test_an_endpoint_that_stays_down_fails_after_retry_seconds_naming_endpoint_bucket_and_operation(s3_bucket,
                                                                                                     outage):
    outage.cut()
    started = time.monotonic()
    with pytest.raises(StorageError) as error:
        storage.write_bytes_atomic(f"{s3_bucket}/x/manifest.parquet", b"1", through(outage, retry_seconds=2))
    # it kept trying for the 2 s, and gave up soon after: every attempt fails fast (no backoff of botocore's
    # own inside each one), so the wait is what the setting says
    assert 2.0 <= time.monotonic() - started < 5
    message = str(error.value)
    assert outage.url in message and repr(s3_bucket[5:]) in message
    assert f"writing {s3_bucket}/x/manifest.parquet" in message and "\n" not in message


def test_an_unreachable_endpoint_is_not_taken_for_a_missing_bucket(s3_bucket, outage):
    """Looking for an absent object asks whether its bucket exists. s3fs's own probe answers "no" for an
    endpoint it cannot reach, so an outage that began between the two calls ended an ingest with "bucket
    does not exist" instead of being waited out: the bucket check must fail like any other call."""
    from stark.platform.storage import _bucket_is_missing, _is_transient, filesystem

    fs, _ = filesystem(f"{s3_bucket}/x", through(outage))
    assert not _bucket_is_missing(fs, s3_bucket[5:])
    assert _bucket_is_missing(fs, "no-such-bucket-17")
    outage.cut()
    with pytest.raises(Exception) as error:
        _bucket_is_missing(fs, s3_bucket[5:])
    assert _is_transient(error.value)  # so `_s3_call` retries it
    restore_after(outage, 2)
    assert storage.exists(f"{s3_bucket}/absent.bin", through(outage, retry_seconds=15)) is False


def test_a_bucket_that_does_not_exist_is_named_as_such_for_every_operation(s3_endpoint):
    uri = "s3://no-such-bucket-17/data/manifest.parquet"
    for operation in (lambda: storage.read_bytes(uri), lambda: storage.write_bytes_atomic(uri, b"1"),
                      lambda: storage.exists(uri), lambda: storage.list_files("s3://no-such-bucket-17/data")):
        with pytest.raises(NoSuchBucketError, match="bucket 'no-such-bucket-17' does not exist at http://127.0.0.1"):
            operation()


def test_a_missing_object_is_a_file_not_found_naming_its_uri(s3_bucket):
    with pytest.raises(FileNotFoundError) as error:
        storage.read_bytes(f"{s3_bucket}/none/manifest.parquet")
    assert error.value.filename == f"{s3_bucket}/none/manifest.parquet"


def test_retry_seconds_is_validated_when_the_config_loads():
    with pytest.raises(ValueError, match="storage.retry_seconds"):
        StorageConfig(retry_seconds=-1).validate()


# --- Ray Train's view of the same storage (pyarrow) -------------------------------------------------------
def test_ray_trains_pyarrow_view_of_s3_waits_through_an_outage_and_reads_and_writes_whole_files(s3_bucket,
                                                                                                  outage):
    path, fs = storage.arrow_filesystem(f"{s3_bucket}/run", through(outage))
    outage.cut()
    restore_after(outage, 3)
    started = time.monotonic()
    with fs.open_output_stream(f"{path}/snapshot.json") as f:  # as Ray Train writes its checkpoint record
        f.write(b'{"step": 4}')
    assert time.monotonic() - started >= 2.5
    assert storage.read_bytes(f"{s3_bucket}/run/snapshot.json") == b'{"step": 4}'
    outage.cut()
    restore_after(outage, 3)
    with fs.open_input_file(f"{path}/snapshot.json") as f:
        assert f.read() == b'{"step": 4}'
    assert [i.path for i in fs.get_file_info(pyarrow_selector(path))] == [f"{path}/snapshot.json"]


def test_a_file_written_through_pyarrow_while_the_endpoint_stays_down_raises_and_is_never_visible(s3_bucket, outage):
    path, fs = storage.arrow_filesystem(f"{s3_bucket}/run", through(outage, retry_seconds=2))
    outage.cut()
    with pytest.raises(StorageError, match=f"writing {s3_bucket}/run/snapshot.json"):
        with fs.open_output_stream(f"{path}/snapshot.json") as f:
            f.write(b"half")
    outage.restore()
    assert not storage.exists(f"{s3_bucket}/run/snapshot.json")


def test_pyarrow_copy_files_ignores_a_failed_upload_which_is_why_checkpoints_do_not_go_through_it(
        s3_bucket, outage, tmp_path):
    """The control beside the next test: pyarrow.fs.copy_files (Ray Train's own checkpoint upload) returns
    as if it had worked when closing an uploaded file fails."""
    import pyarrow.fs

    (tmp_path / "checkpoint.pt").write_bytes(b"weights")
    path, fs = storage.arrow_filesystem(f"{s3_bucket}/run", through(outage, retry_seconds=1))
    outage.cut()
    pyarrow.fs.copy_files(str(tmp_path), f"{path}/checkpoint-000000004", destination_filesystem=fs)
    outage.restore()
    assert not storage.list_files(f"{s3_bucket}/run")


def test_the_training_workers_checkpoint_upload_waits_through_an_outage_and_names_one_that_stays(s3_bucket, outage,
                                                                                                  tmp_path):
    from ray.train import Checkpoint

    from stark.platform.train.run_layout import checkpoint_uploader

    (tmp_path / "checkpoint.pt").write_bytes(b"weights")
    stage_dir = f"{s3_bucket}/run/stage1"
    upload = checkpoint_uploader(stage_dir, through(outage))
    outage.cut()
    restore_after(outage, 3)
    persisted = upload(Checkpoint.from_directory(str(tmp_path)), "checkpoint-000000004")
    assert storage.read_bytes(f"{stage_dir}/checkpoint-000000004/checkpoint.pt") == b"weights"
    assert persisted.path == f"{stage_dir[5:]}/checkpoint-000000004"
    assert persisted.filesystem.get_file_info(f"{persisted.path}/checkpoint.pt").size == len(b"weights")

    outage.cut()
    with pytest.raises(StorageError, match=f"writing {stage_dir}/checkpoint-000000008/checkpoint.pt"):
        checkpoint_uploader(stage_dir, through(outage, retry_seconds=1))(Checkpoint.from_directory(str(tmp_path)),
                                                                           "checkpoint-000000008")
    assert checkpoint_uploader(str(tmp_path / "local"), None) is None  # a local folder: Ray's own copy


def pyarrow_selector(path: str):
    import pyarrow.fs

    return pyarrow.fs.FileSelector(path, recursive=True)


# --- the jobs, end to end ---------------------------------------------------------------------------------
def objects(bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under the prefix as the server holds it now (read past the forwarder)."""
    found = {}
    for uri in storage.list_files(f"{bucket}/{prefix}"):
        try:
            found[uri] = storage.read_bytes(uri)
        except FileNotFoundError:
            pass  # removed between the listing and the read (the ingest replaces its progress files)
    return found


def ingest_command(src, dest, proxy: TcpOutage, ray_address: str, *overrides: str) -> subprocess.Popen:
    env = dict(os.environ, AWS_ENDPOINT_URL=proxy.url, RAY_ADDRESS=ray_address)
    return subprocess.Popen([sys.executable, "-m", "stark.jobs.ingest", str(src), dest, "ingest.max_in_flight=1",
                             "ingest.preset=ultrafast", *overrides], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_an_ingest_to_s3_survives_a_ten_second_outage_and_no_partial_object_or_manifest_is_ever_visible(
        tmp_path, s3_bucket, outage, ray_address):
    from stark.platform.ingest.manifest import read_records
    from stark.platform.ingest.synthetic import write_demo_dataset

    write_demo_dataset(str(tmp_path / "src"), "got10k", num_sequences=4, num_frames=30, size=(160, 120),
                       num_test=0, seed=21)
    dest = f"{s3_bucket}/got10k"
    process = ingest_command(tmp_path / "src", dest, outage, ray_address)
    seen: dict[str, set[str]] = {}  # every version of every object seen while the ingest ran

    def look() -> None:
        for uri, data in objects(s3_bucket, "got10k").items():
            seen.setdefault(uri, set()).add(hashlib.sha256(data).hexdigest())

    deadline = time.monotonic() + 300
    while not any(u.endswith(".mp4") for u in storage.list_files(dest)):  # the first clip is written: cut now
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    outage.cut()
    cut_at = time.monotonic()
    while time.monotonic() - cut_at < 10:
        look()
        time.sleep(0.5)
    outage.restore()
    while process.poll() is None:
        look()
        time.sleep(0.5)
    out, err = process.communicate()
    assert process.returncode == 0, err
    final = objects(s3_bucket, "got10k")
    for uri, versions in seen.items():  # objects are written whole, once: what was visible is what is there
        if uri in final and not uri.endswith((".parquet", "ingest_report.json")):
            assert versions == {hashlib.sha256(final[uri]).hexdigest()}, uri
    assert not any(u.endswith("manifest.parquet") for u in seen) or \
        seen[f"{dest}/manifest.parquet"] == {hashlib.sha256(final[f"{dest}/manifest.parquet"]).hexdigest()}
    records = read_records(dest)
    assert len({r.sequence_id for r in records}) == 4
    for record in records:
        assert hashlib.sha256(final[record.clip_uri]).hexdigest() == record.clip_sha256


@pytest.mark.slow
def test_an_ingest_whose_endpoint_stays_down_ends_with_one_line_naming_it_and_no_manifest(tmp_path, s3_bucket,
                                                                                         outage, ray_address):
    from stark.platform.ingest.synthetic import write_demo_dataset

    write_demo_dataset(str(tmp_path / "src"), "got10k", num_sequences=2, num_frames=20, size=(160, 120),
                       num_test=0, seed=22)
    outage.cut()
    process = ingest_command(tmp_path / "src", f"{s3_bucket}/down", outage, ray_address, "storage.retry_seconds=3")
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: object storage at {outage.url} (bucket "), err
    assert "Traceback" not in err
    assert not storage.list_files(f"{s3_bucket}/down")
