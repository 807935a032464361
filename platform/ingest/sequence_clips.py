"""One sequence -> its H.264 clips in storage, resumable.

Layout under DEST:  clips/<dataset>/<split>/<sequence>/<key>-0000.mp4, <key>-0001.mp4, ..., <key>.json
where <key> hashes the source content and the encode settings. The .json sidecar (the sequence's manifest
rows) is written only after every clip of the sequence is complete, so on a re-run:
- sidecar present and every clip's sha256 matches -> the clips are kept, nothing is encoded;
- otherwise the sequence is encoded again (a half-written sequence never has a sidecar).
A changed source or setting gives a new key, so clips an older manifest points at are never overwritten.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass

import numpy as np

from ..storage import StorageConfig, exists, join, read_bytes, remove, write_bytes_atomic
from .clips import ClipEncoder, EncodeSettings
from .footage import fit_to_frame_count
from .manifest import ClipRecord
from .sources import InvalidInputError, SequenceSource, iter_frames


@dataclass(frozen=True)
class ClipSettings:
    encode: EncodeSettings
    max_clip_frames: int


@dataclass
class SequenceOutcome:
    records: list[ClipRecord]
    reused: bool  # clips from an earlier run were verified and kept


def source_hash(source: SequenceSource) -> str:
    """sha256 over (relative name, bytes) of every source file: annotations first, then frames in order."""
    base = source.source_path if os.path.isdir(source.source_path) else os.path.dirname(source.source_path)
    digest = hashlib.sha256()
    for path in source.content_files:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise InvalidInputError(path, f"cannot read: {exc}") from exc
        digest.update(os.path.relpath(path, base).encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def sequence_dir(dest: str, source: SequenceSource) -> str:
    return join(dest, "clips", source.dataset, source.split, safe_name(source.name))


def ingest_sequence(source: SequenceSource, dest: str, settings: ClipSettings,
                    storage: StorageConfig | None = None) -> SequenceOutcome:
    """Encode (or verify and keep) one sequence's clips; returns its manifest rows.
    Raises InvalidInputError for bad frames, after removing any clip it wrote."""
    content_hash = source_hash(source)
    key = hashlib.sha256(f"{content_hash}{json.dumps(asdict(settings), sort_keys=True)}".encode()).hexdigest()[:16]
    folder = sequence_dir(dest, source)
    sidecar = join(folder, f"{key}.json")
    kept = _verified_records(sidecar, storage)
    if kept is not None:
        return SequenceOutcome(kept, reused=True)
    records = _encode(source, folder, key, content_hash, settings, storage)
    payload = json.dumps([r.to_row() for r in records], sort_keys=True).encode()
    write_bytes_atomic(sidecar, payload, storage)  # last: marks the sequence complete
    return SequenceOutcome(records, reused=False)


def _verified_records(sidecar: str, storage: StorageConfig | None) -> list[ClipRecord] | None:
    if not exists(sidecar, storage):
        return None
    try:
        records = [ClipRecord.from_row(row) for row in json.loads(read_bytes(sidecar, storage))]
    except (ValueError, KeyError, TypeError):
        return None  # unreadable sidecar: encode again
    for record in records:
        if not exists(record.clip_uri, storage):
            return None
        if hashlib.sha256(read_bytes(record.clip_uri, storage)).hexdigest() != record.clip_sha256:
            return None
    return records


def _encode(source: SequenceSource, folder: str, key: str, content_hash: str, settings: ClipSettings,
            storage: StorageConfig | None) -> list[ClipRecord]:
    written: list[tuple[int, int, str, int, str]] = []  # (first_frame, num_frames, uri, bytes, sha256)
    encoder: ClipEncoder | None = None
    first_frame = total = 0
    width = height = 0

    def flush() -> None:
        nonlocal encoder, first_frame
        data = encoder.finish()
        uri = join(folder, f"{key}-{len(written):04d}.mp4")
        write_bytes_atomic(uri, data, storage)
        written.append((first_frame, encoder.num_frames, uri, len(data), hashlib.sha256(data).hexdigest()))
        first_frame += encoder.num_frames
        encoder = None

    try:
        for frame in iter_frames(source):
            if encoder is None:
                height, width = frame.shape[:2]
                encoder = ClipEncoder(width, height, source.fps, settings.encode)
            elif frame.shape[:2] != (height, width):
                where = source.video_path or source.frame_paths[total]
                raise InvalidInputError(where, f"frame {total} is {frame.shape[1]}x{frame.shape[0]}, "
                                               f"earlier frames are {width}x{height}")
            encoder.add(frame)
            total += 1
            if encoder.num_frames == settings.max_clip_frames:
                flush()
        if encoder is not None:
            flush()
        if source.video_path is not None:
            source = fit_to_frame_count(source, total)
        elif total != source.num_frames:
            raise InvalidInputError(source.source_path, f"read {total} frames, expected {source.num_frames}")
    except BaseException:
        for _, _, uri, _, _ in written:  # nothing half-imported: this sequence's clips go too
            remove(uri, storage)
        raise
    boxes = np.asarray(source.boxes_xywh, dtype=np.float64)
    visible = np.asarray(source.visible, dtype=bool)
    return [ClipRecord(sequence_id=source.name, dataset=source.dataset, split=source.split, clip_index=i,
                       first_frame=first, num_frames=count, sequence_frames=total, clip_uri=uri, clip_bytes=size,
                       clip_sha256=sha, width=width, height=height, fps=float(source.fps),
                       boxes_xywh=boxes[first:first + count], visible=visible[first:first + count],
                       has_groundtruth=source.has_groundtruth, source_path=source.source_path,
                       source_hash=content_hash)
            for i, (first, count, uri, size, sha) in enumerate(written)]
