"""`stark ingest`: benchmark folders -> H.264 clips + a Parquet manifest, on local disk and on a real S3
endpoint; resumable, atomic, and strict about bad input. Real local Ray, real moto server process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pytest

from stark.jobs.ingest import main as ingest_main
from stark.platform import storage
from stark.platform.ingest.clips import open_clip, decode_clip_frames
from stark.platform.ingest.config import IngestConfig
from stark.platform.ingest.run import ingest
from stark.platform.ingest.manifest import read_manifest, read_records
from stark.platform.ingest.sources import read_image
from stark.platform.storage import StorageConfig
from stark.platform.ingest.synthetic import write_demo_dataset

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_local")]  # one Ray for the package (conftest.py)
SMALL = dict(num_sequences=3, num_frames=30, size=(160, 120), num_test=1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def _video_frames(path: str) -> np.ndarray:
    import av

    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("layout", ["got10k", "lasot", "trackingnet", "footage"])
def test_every_layout_becomes_clips_and_a_manifest_that_match_the_source(tmp_path, layout):
    written = write_demo_dataset(str(tmp_path / "src"), layout, seed=11, **SMALL)
    report = ingest(str(tmp_path / "src"), str(tmp_path / "dest"), IngestConfig(max_clip_frames=12))
    records = read_records(str(tmp_path / "dest"))
    expected = {s.name: s for seqs in written.values() for s in seqs}
    assert report.sequences == len(expected) and report.encoded == len(expected) and not report.skipped
    assert {r.sequence_id for r in records} == set(expected)
    for record in records:
        seq = expected[record.sequence_id]
        assert (record.sequence_frames, record.width, record.height) == (30, 160, 120)
        assert record.num_frames == (12 if record.clip_index < 2 else 6)  # 30 frames -> 12 + 12 + 6
        assert record.first_frame == 12 * record.clip_index
        frames = slice(record.first_frame, record.first_frame + record.num_frames)
        if record.has_groundtruth:
            np.testing.assert_array_equal(record.visible, seq.visible[frames] if layout != "trackingnet"
                                          else (seq.boxes_xywh[frames, 2:] > 0).all(1))
            shown = record.visible
            np.testing.assert_array_equal(record.boxes_xywh[shown], seq.boxes_xywh[frames][shown])
        else:
            assert record.first_frame > 0 or not np.isnan(record.boxes_xywh[0]).any()
        decoded = decode_clip_frames(open_clip(record.clip_uri), list(range(record.num_frames)), 160, 120)
        if layout != "footage":  # compare with what the importer read: the JPEG files
            paths = sorted(os.listdir(os.path.dirname(_frame_path(record, 0, layout))))
            assert len([p for p in paths if p.endswith(".jpg")]) == 30
            originals = [read_image(_frame_path(record, record.first_frame + i, layout))
                         for i in range(record.num_frames)]
        else:  # the footage's own frames, as decoded from the user's video file
            originals = _video_frames(record.source_path)[frames]
        # footage-like frames lose most in 4:2:0 chroma: >= 32 dB each (a wrong frame scores ~20 dB)
        assert min(psnr(d, o) for d, o in zip(decoded, originals)) >= 32.0


def _frame_path(record, frame: int, layout: str) -> str:
    if layout == "got10k":
        return os.path.join(record.source_path, f"{frame + 1:08d}.jpg")
    if layout == "lasot":
        return os.path.join(record.source_path, "img", f"{frame + 1:08d}.jpg")
    return os.path.join(record.source_path, f"{frame}.jpg")


def test_a_rerun_keeps_finished_clips_verified_by_hash_and_redoes_a_corrupted_one(tmp_path):
    write_demo_dataset(str(tmp_path / "src"), "got10k", seed=12, **SMALL)
    first = ingest(str(tmp_path / "src"), str(tmp_path / "dest"), IngestConfig())
    manifest = storage.read_bytes(first.manifest_uri)
    second = ingest(str(tmp_path / "src"), str(tmp_path / "dest"), IngestConfig())
    assert (first.encoded, second.encoded, second.reused) == (4, 0, 4)
    assert storage.read_bytes(second.manifest_uri) == manifest

    clip = read_records(str(tmp_path / "dest"))[0].clip_uri
    with open(clip, "r+b") as f:  # flip some bytes in the middle of a finished clip
        f.seek(os.path.getsize(clip) // 2)
        f.write(b"\xff" * 16)
    third = ingest(str(tmp_path / "src"), str(tmp_path / "dest"), IngestConfig())
    assert (third.encoded, third.reused) == (1, 3)
    assert storage.read_bytes(third.manifest_uri) == manifest  # re-encoding reproduces the clip exactly


def test_an_ingest_killed_half_way_and_rerun_writes_the_same_manifest_as_a_clean_run(tmp_path, s3_bucket,
                                                                                         s3_endpoint):
    import ray

    write_demo_dataset(str(tmp_path / "src"), "got10k", num_sequences=8, num_frames=40, size=(320, 240),
                       num_test=0, seed=13)
    dest = f"{s3_bucket}/got10k"
    clean = ingest(str(tmp_path / "src"), dest, IngestConfig())
    clean_manifest, clean_rows = storage.read_bytes(clean.manifest_uri), read_manifest(clean.manifest_uri).to_pylist()
    storage.remove_tree(dest)
    assert not storage.list_files(dest)

    # the same ingest as a separate driver on this Ray cluster, one sequence at a time, killed mid-way
    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    process = subprocess.Popen([sys.executable, "-m", "stark.jobs.ingest", str(tmp_path / "src"), dest,
                                "ingest.max_in_flight=1"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not [u for u in storage.list_files(dest) if u.endswith(".json")]:
        assert process.poll() is None and time.monotonic() < deadline, "ingest ended before it could be killed"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # Ray ends a dead driver's tasks on the shared cluster asynchronously: one may still finish its clip,
    # so wait until the store stops changing before the rerun races it
    left, unchanged_since = storage.list_files(dest), time.monotonic()
    while time.monotonic() - unchanged_since < 3:
        time.sleep(0.2)
        now = storage.list_files(dest)
        if sorted(now) != sorted(left):
            left, unchanged_since = now, time.monotonic()
    assert not storage.exists(f"{dest}/manifest.parquet")
    assert 0 < len([u for u in left if u.endswith(".json")]) < 8  # some sequences finished, not all

    rerun = ingest(str(tmp_path / "src"), dest, IngestConfig())
    assert rerun.reused >= 1 and rerun.encoded >= 1
    rows = read_manifest(rerun.manifest_uri).to_pylist()
    assert [differing_fields(a, b) for a, b in zip(rows, clean_rows)] == [[]] * len(clean_rows)
    assert storage.read_bytes(rerun.manifest_uri) == clean_manifest

    for record in read_records(dest):  # and every clip it points at is there, whole
        assert storage.exists(record.clip_uri)


def differing_fields(row: dict, expected: dict) -> list[str]:
    """'sequence_id.field' for each field of a manifest row that differs from the expected row."""
    return [f"{expected['sequence_id']}.{k}" for k in expected if row.get(k) != expected[k]]


def test_s3_destination_takes_endpoint_and_credentials_from_config(tmp_path, s3_bucket, s3_endpoint, monkeypatch):
    write_demo_dataset(str(tmp_path / "src"), "footage", num_sequences=2, num_frames=20, size=(160, 120), seed=14)
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    cfg = StorageConfig(endpoint_url=s3_endpoint, region="us-east-1", key="testing", secret="testing")
    report = ingest(str(tmp_path / "src"), f"{s3_bucket}/mine", IngestConfig(), cfg)
    records = read_records(report.manifest_uri, cfg)
    assert report.manifest_uri == f"{s3_bucket}/mine/manifest.parquet"
    assert all(r.clip_uri.startswith(f"{s3_bucket}/mine/clips/footage/train/") for r in records)
    assert len(open_clip(records[0].clip_uri, cfg)) == records[0].num_frames


def test_bad_input_stops_the_command_with_the_named_error_and_writes_no_manifest(tmp_path, capsys):
    write_demo_dataset(str(tmp_path / "src"), "got10k", seed=15, **SMALL)
    with open(tmp_path / "src" / "train" / "list.txt", "a") as f:
        f.write("GOT-10k_Train_000404\n")
    assert ingest_main([str(tmp_path / "src"), str(tmp_path / "dest")]) == 2
    assert "list.txt:4: sequence 'GOT-10k_Train_000404' is listed but its folder" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "dest")

    assert ingest_main([str(tmp_path / "src"), str(tmp_path / "dest"), "--skip-invalid"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 invalid sequences" in out and "GOT-10k_Train_000404" in out
    records = read_records(str(tmp_path / "dest"))
    assert "GOT-10k_Train_000404" not in {r.sequence_id for r in records}
    report = (tmp_path / "dest" / "ingest_report.json").read_text()
    assert "GOT-10k_Train_000404" in report and "list.txt:4" in report


def test_a_bad_frame_found_while_encoding_fails_the_ingest_or_is_skipped(tmp_path, capsys):
    write_demo_dataset(str(tmp_path / "src"), "trackingnet", seed=16, **SMALL)
    frames_dir = tmp_path / "src" / "TRAIN_0" / "frames"
    video = sorted(os.listdir(frames_dir))[0]
    (frames_dir / video / "7.jpg").write_bytes(b"not a jpeg")
    assert ingest_main([str(tmp_path / "src"), str(tmp_path / "dest")]) == 2
    assert f"{video}/7.jpg: unreadable or truncated image" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "dest" / "manifest.parquet")

    assert ingest_main([str(tmp_path / "src"), str(tmp_path / "dest"), "--skip-invalid"]) == 0
    table: pa.Table = read_manifest(str(tmp_path / "dest"))
    assert video not in table.column("sequence_id").to_pylist()
    assert len(set(table.column("sequence_id").to_pylist())) == 3
