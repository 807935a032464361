"""The Parquet manifest that `stark ingest` writes last: one row per clip.

A sequence longer than `ingest.max_clip_frames` becomes several clips; its rows share `sequence_id` and
`source_hash`, and each row covers frames [first_frame, first_frame + num_frames) of the sequence.

| column           | type          | meaning                                                         |
|------------------|---------------|-----------------------------------------------------------------|
| sequence_id      | string        | sequence name, unique within its dataset                        |
| dataset          | string        | got10k / lasot / trackingnet / footage                          |
| split            | string        | train / val / test                                              |
| clip_index       | int32         | 0, 1, ... within the sequence                                   |
| first_frame      | int32         | the clip's first frame, as a frame number of the sequence       |
| num_frames       | int32         | frames in this clip                                             |
| sequence_frames  | int32         | frames in the whole sequence                                    |
| clip_uri         | string        | absolute path or s3:// URI of the H.264 MP4 clip                |
| clip_bytes       | int64         | clip size in bytes                                              |
| clip_sha256      | string        | hash of the clip's bytes (resume verifies it)                   |
| width, height    | int32         | frame size in pixels (the clip may be padded to even sides)     |
| fps              | float64       | source frame rate                                               |
| boxes_xywh       | list<float64> | 4 * num_frames values, x,y,w,h per frame; NaN = no box given    |
| visible          | list<bool>    | num_frames flags: the target can be trained on in this frame    |
| has_groundtruth  | bool          | False for test splits that ship only the sequence's first box   |
| source_path      | string        | the sequence folder or video it came from                       |
| source_hash      | string        | sha256 over the sequence's source files (annotations + frames)  |

Schema metadata records the layout and encode settings (`stark.layout`, `stark.crf`, ...). A second ingest
into the same DEST merges into the manifest there (`merge_manifests`): its sequences replace their own
earlier rows, every other row stays, and each metadata value lists the settings the rows were made with
(`stark.layout` = `got10k,lasot`).
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import BadInputError
from ..storage import StorageConfig, join, list_files, parent, read_bytes, write_bytes_atomic

MANIFEST_NAME = "manifest.parquet"
MANIFEST_VERSION = "1"

SCHEMA = pa.schema([
    ("sequence_id", pa.string()), ("dataset", pa.string()), ("split", pa.string()),
    ("clip_index", pa.int32()), ("first_frame", pa.int32()), ("num_frames", pa.int32()),
    ("sequence_frames", pa.int32()), ("clip_uri", pa.string()), ("clip_bytes", pa.int64()),
    ("clip_sha256", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("fps", pa.float64()),
    ("boxes_xywh", pa.list_(pa.float64())), ("visible", pa.list_(pa.bool_())), ("has_groundtruth", pa.bool_()),
    ("source_path", pa.string()), ("source_hash", pa.string()),
])


@dataclass
class ClipRecord:
    """One manifest row."""

    sequence_id: str
    dataset: str
    split: str
    clip_index: int
    first_frame: int
    num_frames: int
    sequence_frames: int
    clip_uri: str
    clip_bytes: int
    clip_sha256: str
    width: int
    height: int
    fps: float
    boxes_xywh: np.ndarray  # [num_frames, 4]
    visible: np.ndarray  # [num_frames] bool
    has_groundtruth: bool
    source_path: str
    source_hash: str

    def to_row(self) -> dict:
        row = asdict(self)
        row["boxes_xywh"] = np.asarray(self.boxes_xywh, dtype=np.float64).reshape(-1).tolist()
        row["visible"] = np.asarray(self.visible, dtype=bool).tolist()
        return row

    @classmethod
    def from_row(cls, row: dict) -> "ClipRecord":
        values = {f.name: row[f.name] for f in fields(cls)}
        values["boxes_xywh"] = np.asarray(row["boxes_xywh"], dtype=np.float64).reshape(-1, 4)
        values["visible"] = np.asarray(row["visible"], dtype=bool)
        return cls(**values)

    @property
    def sort_key(self) -> tuple:
        return self.dataset, self.split, self.sequence_id, self.clip_index


def manifest_uri(uri: str) -> str:
    """An ingest destination folder or a manifest file -> the manifest file."""
    return uri if uri.endswith(".parquet") else join(uri, MANIFEST_NAME)


def records_to_table(records: list[ClipRecord], metadata: dict[str, str] | None = None) -> pa.Table:
    rows = [r.to_row() for r in sorted(records, key=lambda r: r.sort_key)]
    schema = SCHEMA.with_metadata({"stark.manifest_version": MANIFEST_VERSION, **(metadata or {})})
    return pa.Table.from_pylist(rows, schema=schema)


def write_manifest(dest: str, records: list[ClipRecord], metadata: dict[str, str] | None = None,
                   storage: StorageConfig | None = None) -> str:
    """Write the manifest in one atomic object write; returns its URI."""
    sink = io.BytesIO()
    pq.write_table(records_to_table(records, metadata), sink, compression="zstd")
    uri = manifest_uri(dest)
    write_bytes_atomic(uri, sink.getvalue(), storage)
    return uri


def read_manifest(uri: str, storage: StorageConfig | None = None) -> pa.Table:
    uri = manifest_uri(uri)
    data = read_bytes(uri, storage)
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise BadInputError(f"{uri}: not a readable manifest ({str(exc).splitlines()[0]}), the file is damaged or is "
                            f"not a Parquet file: run `stark ingest SRC {parent(uri)}` again to rewrite it") from exc
    missing = [name for name in SCHEMA.names if name not in table.column_names]
    if missing:
        raise BadInputError(f"{uri}: not a stark manifest (missing columns {missing}): run `stark ingest` to make one")
    return table


def read_records(uri: str, storage: StorageConfig | None = None) -> list[ClipRecord]:
    return [ClipRecord.from_row(row) for row in read_manifest(uri, storage).to_pylist()]


def check_clips_present(uri: str, records: list[ClipRecord], storage: StorageConfig | None = None) -> None:
    """Every clip the manifest names is there, or one BadInputError naming the manifest and the first missing
    clip. One listing of the manifest's folder covers the clips ingest wrote under it (a clip elsewhere:
    one listing of its own folder), so the check costs a few requests, not one per clip."""
    uri = manifest_uri(uri)
    home = parent(uri)
    folders: dict[str, list[str]] = {}
    for record in records:
        clip = record.clip_uri
        folders.setdefault(home if clip.startswith(home + "/") else parent(clip), []).append(clip)
    missing = []
    for folder, clips in folders.items():
        present = set(list_files(folder, storage))
        missing += [clip for clip in clips if clip not in present]
    if missing:
        raise BadInputError(f"{uri}: names clip {missing[0]}, which does not exist ({len(missing)} of "
                            f"{len(records)} clips missing): the clips were moved or deleted since the ingest; run "
                            f"`stark ingest SRC {home}` again to encode them")


def table_metadata(table: pa.Table) -> dict[str, str]:
    """The `stark.*` settings a manifest records (its version aside: the writer sets that)."""
    raw = table.schema.metadata or {}
    decoded = {k.decode(): v.decode() for k, v in raw.items()}
    return {k: v for k, v in decoded.items() if k.startswith("stark.") and k != "stark.manifest_version"}


@dataclass
class Merged:
    """The manifest a second ingest into the same DEST writes, and what happened to the earlier rows."""

    records: list[ClipRecord]
    metadata: dict[str, str]
    kept: dict[str, int] = field(default_factory=dict)  # dataset -> earlier sequences left as they were
    replaced: int = 0  # earlier sequences ingested again: their rows replaced by the new ones
    moved: list[tuple[str, str, str]] = field(default_factory=list)  # replaced from another source: (id, was, now)


def sequence_key(record: ClipRecord) -> tuple[str, str]:
    """What makes two rows the same sequence: its dataset and its name (importers refuse a name twice)."""
    return record.dataset, record.sequence_id


def merge_manifests(earlier: list[ClipRecord], earlier_metadata: dict[str, str], new: list[ClipRecord],
                    new_metadata: dict[str, str]) -> Merged:
    """Earlier rows, less those of every sequence in `new` (all of a sequence's rows go: its clips may be cut
    differently now), plus `new`. Metadata: per key, the distinct values of both, sorted and comma-joined (the
    earlier ones only while an earlier row is kept; a value may outlive the last row made with it)."""
    new_sources = {sequence_key(r): r.source_path for r in new}
    kept = [r for r in earlier if sequence_key(r) not in new_sources]
    merged = Merged(kept + list(new), {})
    for dataset, _ in sorted({sequence_key(r) for r in kept}):
        merged.kept[dataset] = merged.kept.get(dataset, 0) + 1
    earlier_sources = {sequence_key(r): r.source_path for r in earlier if sequence_key(r) in new_sources}
    merged.replaced = len(earlier_sources)
    merged.moved = [(key[1], was, new_sources[key]) for key, was in sorted(earlier_sources.items())
                    if was != new_sources[key]]
    for key in [*new_metadata, *(k for k in earlier_metadata if k not in new_metadata)]:
        values = {v for v in (new_metadata.get(key), earlier_metadata.get(key) if kept else None) if v is not None}
        merged.metadata[key] = ",".join(sorted(set(",".join(values).split(","))))
    return merged
