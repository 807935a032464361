"""A second `stark ingest` into a DEST that already holds a manifest never drops the earlier rows without a
word: each sequence ingested again replaces its own rows, every other row stays, and the summary says
how many were kept and replaced. An earlier manifest that cannot be read stops the ingest untouched.

The ingests run as the command runs them, each sequence a Ray task, on the package's one local Ray
(tests/ingest/conftest.py); the sources are a few frames each, so a case takes seconds.
"""
from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from stark.platform.ingest.config import IngestConfig
from stark.platform.ingest.manifest import read_records
from stark.platform.ingest.run import ingest
from stark.platform.ingest.sources import InvalidInputError
from stark.platform.ingest.synthetic import write_demo_dataset

pytestmark = pytest.mark.usefixtures("ray_local")
TINY = dict(num_sequences=2, num_frames=8, size=(64, 48), num_test=0)


@pytest.fixture
def trees(tmp_path):
    """A GOT-10k tree and a LaSOT tree of 2 tiny sequences each: (got10k root, lasot root, DEST)."""
    write_demo_dataset(str(tmp_path / "got10k"), "got10k", seed=21, **TINY)
    write_demo_dataset(str(tmp_path / "lasot"), "lasot", seed=22, **TINY)
    return str(tmp_path / "got10k"), str(tmp_path / "lasot"), str(tmp_path / "dest")


def sequences(dest: str) -> dict[tuple[str, str], list]:
    found: dict[tuple[str, str], list] = {}
    for record in read_records(dest):
        found.setdefault((record.dataset, record.sequence_id), []).append(record)
    return found


def test_ingesting_another_dataset_into_the_same_dest_keeps_the_earlier_rows_and_says_so(trees, capsys):
    got10k, lasot, dest = trees
    ingest(got10k, dest, IngestConfig())
    first = sequences(dest)
    report = ingest(lasot, dest, IngestConfig())
    both = sequences(dest)
    assert sorted(d for d, _ in both) == ["got10k", "got10k", "lasot", "lasot"]
    for key, rows in first.items():  # the GOT-10k rows, exactly as the first ingest wrote them
        assert [r.to_row() for r in both[key]] == [r.to_row() for r in rows]
    assert all(os.path.isfile(r.clip_uri) for rows in both.values() for r in rows)
    assert (report.sequences, report.ingested, report.kept_earlier, report.replaced_earlier) == (4, 2, {"got10k": 2}, 0)
    assert "already holds a manifest of 2 sequences; they stay" in capsys.readouterr().out
    assert "merged into the earlier manifest: kept 2 of its sequences (got10k 2), replaced 0" in report.summary()
    metadata = pq.read_schema(os.path.join(dest, "manifest.parquet")).metadata
    assert metadata[b"stark.layout"] == b"got10k,lasot"


def test_a_sequence_ingested_again_replaces_all_its_own_rows_and_no_other(trees):
    got10k, lasot, dest = trees
    ingest(got10k, dest, IngestConfig())
    ingest(lasot, dest, IngestConfig())
    before = sequences(dest)
    changed = sorted(os.listdir(os.path.join(got10k, "train")))[0]
    with open(os.path.join(got10k, "train", changed, "groundtruth.txt"), "r+") as f:
        lines = f.read().splitlines()
        lines[0] = "1,2,30,20"
        f.seek(0)
        f.write("\n".join(lines) + "\n")
    report = ingest(got10k, dest, IngestConfig(max_clip_frames=5))  # 8 frames: 1 clip before, 5 + 3 now
    after = sequences(dest)
    assert set(after) == set(before)
    for (dataset, name), rows in after.items():
        if dataset == "lasot":
            assert [r.to_row() for r in rows] == [r.to_row() for r in before[(dataset, name)]]
        else:
            assert [r.num_frames for r in sorted(rows, key=lambda r: r.clip_index)] == [5, 3]
    assert list(after[("got10k", changed)][0].boxes_xywh[0]) == [1, 2, 30, 20]
    assert (report.replaced_earlier, report.kept_earlier) == (2, {"lasot": 2})
    assert "kept 2 of its sequences (lasot 2), replaced 2 ingested again" in report.summary()


def test_ingesting_the_same_source_again_writes_the_same_manifest_bytes(trees):
    got10k, _, dest = trees
    ingest(got10k, dest, IngestConfig())
    first = open(os.path.join(dest, "manifest.parquet"), "rb").read()
    report = ingest(got10k, dest, IngestConfig())
    assert report.reused == 2 and report.replaced_earlier == 2
    assert open(os.path.join(dest, "manifest.parquet"), "rb").read() == first


def test_a_same_named_sequence_from_another_source_is_replaced_and_named_in_the_summary(tmp_path):
    for day in ("day1", "day2"):
        write_demo_dataset(str(tmp_path / day), "footage", num_sequences=1, num_frames=6, size=(64, 48),
                           seed=len(day) + int(day[-1]))
    ingest(str(tmp_path / "day1"), str(tmp_path / "dest"), IngestConfig())
    report = ingest(str(tmp_path / "day2"), str(tmp_path / "dest"), IngestConfig())
    assert [r.source_path for r in read_records(str(tmp_path / "dest"))] == [str(tmp_path / "day2" / "clip_00.mp4")]
    assert (f"clip_00: replaced, its source moved from {tmp_path / 'day1' / 'clip_00.mp4'} to "
            f"{tmp_path / 'day2' / 'clip_00.mp4'}") in report.summary()


def test_a_sequence_skipped_as_invalid_now_keeps_its_earlier_rows_and_the_summary_says_so(trees):
    got10k, _, dest = trees
    ingest(got10k, dest, IngestConfig())
    broken = sorted(os.listdir(os.path.join(got10k, "train")))[0]
    with open(os.path.join(got10k, "train", broken, "cover.label"), "w") as f:
        f.write("9\n" * 8)
    report = ingest(got10k, dest, IngestConfig(skip_invalid=True))
    assert ("got10k", broken) in sequences(dest) and report.skipped_but_kept == [broken]
    assert "cover.label:1: label 9 is out of range" in report.summary()
    assert "(its rows from the earlier manifest stay)" in report.summary()


def test_an_unreadable_earlier_manifest_stops_the_ingest_before_any_work_and_stays_as_it_was(trees):
    got10k, _, dest = trees
    os.makedirs(dest)
    manifest = os.path.join(dest, "manifest.parquet")
    open(manifest, "wb").write(b"PAR1 not really a parquet file")
    with pytest.raises(InvalidInputError) as info:
        ingest(got10k, dest, IngestConfig())
    assert info.value.path == manifest and "DEST holds a manifest that cannot be read" in info.value.message
    assert "\n" not in str(info.value)
    assert open(manifest, "rb").read() == b"PAR1 not really a parquet file"
    assert os.listdir(dest) == ["manifest.parquet"]  # no clips, no report
