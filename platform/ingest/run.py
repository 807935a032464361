"""`stark ingest SRC DEST`: a benchmark folder or a user's videos -> H.264 clips + a Parquet manifest.

Phases: check DEST (a folder, writable; a manifest already there must be readable); read and validate
every sequence's annotations (nothing is written if one is bad, unless skip_invalid); encode sequences in
parallel as Ray tasks (each verifies and keeps clips an earlier run finished); write `ingest_report.json`;
write the manifest, last and atomically (temp name, then rename). A crash at any point leaves either the
previous manifest or none: never a manifest pointing at a missing or partial clip.

A DEST that already holds a manifest (an earlier ingest, of this source or another) keeps its rows: the
new manifest is the earlier one with each sequence ingested now replacing its own rows, and the summary
says how many were kept and replaced.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field

import pyarrow as pa

from ..console import PROGRESS_EVERY_S, ProgressPacer
from ..ray_runtime import init_ray
from ..storage import StorageConfig, exists, is_s3, join, normalize, write_bytes_atomic
from .clips import EncodeSettings
from .config import IngestConfig
from .importers import read_source
from .manifest import (MANIFEST_NAME, ClipRecord, Merged, merge_manifests, read_manifest, sequence_key, table_metadata,
                       write_manifest)
from .sequence_clips import ClipSettings, SequenceOutcome, ingest_sequence
from .sources import InvalidInputError, SequenceSource, SkippedSequence

REPORT_NAME = "ingest_report.json"


@dataclass
class IngestReport:
    source: str
    dest: str
    layout: str
    manifest_uri: str = ""
    sequences: int = 0  # in the manifest, this ingest's and the earlier manifest's kept ones
    ingested: int = 0  # by this ingest
    kept_earlier: dict[str, int] = field(default_factory=dict)  # dataset -> sequences kept from the earlier manifest
    replaced_earlier: int = 0  # sequences of the earlier manifest ingested again
    moved: list[tuple[str, str, str]] = field(default_factory=list)  # of those, from another source: (id, was, now)
    skipped_but_kept: list[str] = field(default_factory=list)  # skipped now, their earlier rows still in the manifest
    encoded: int = 0
    reused: int = 0  # verified clips from an earlier run, kept
    clips: int = 0
    frames: int = 0
    clip_bytes: int = 0
    seconds: float = 0.0
    skipped: list[SkippedSequence] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "skipped"}
        out["skipped"] = [s.to_json() for s in self.skipped]
        return out

    def summary(self) -> str:
        lines = [f"ingested {self.ingested} sequences ({self.encoded} encoded, {self.reused} kept from an "
                 f"earlier run) from {self.source} [{self.layout}] in {self.seconds:.1f}s",
                 f"  clips:    {self.clips} clips, {self.frames} frames, {self.clip_bytes / 1e6:.1f} MB "
                 f"under {join(self.dest, 'clips')}",
                 f"  manifest: {self.manifest_uri} ({self.sequences} sequences)",
                 f"  report:   {join(self.dest, REPORT_NAME)}"]
        if self.kept_earlier or self.replaced_earlier:
            kept = ", ".join(f"{dataset} {count}" for dataset, count in sorted(self.kept_earlier.items()))
            lines.append(f"  merged into the earlier manifest: kept {sum(self.kept_earlier.values())} of its "
                         f"sequences ({kept or 'none'}), replaced {self.replaced_earlier} ingested again")
            lines += [f"    {name}: replaced, its source moved from {was} to {now}" for name, was, now in self.moved]
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} invalid sequences:")
            lines += [f"    {s.dataset}/{s.split}/{s.name}: {s.error}"
                      + (" (its rows from the earlier manifest stay)" if s.name in self.skipped_but_kept else "")
                      for s in self.skipped]
        return "\n".join(lines)


class Progress:
    """done/total, rate, ETA: a line every 10 s at most, each a tenth of the sequences further, and the last
    one (console.ProgressPacer)."""

    def __init__(self, total: int, out=sys.stdout, every: float = PROGRESS_EVERY_S):
        self.total, self.out = total, out
        self.pacer = ProgressPacer(total, every)
        self.start = time.monotonic()

    def update(self, done: int, note: str = "", force: bool = False) -> None:
        if not self.pacer.due(done, force):
            return
        now = time.monotonic()
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        eta_text = f"{eta:.0f}s" if eta != float("inf") else "?"
        print(f"ingest: {done}/{self.total} sequences {note}| {rate:.1f} seq/s | ETA {eta_text}",
              file=self.out, flush=True)


def ingest(src: str, dest: str, cfg: IngestConfig, storage: StorageConfig | None = None,
           out=None) -> IngestReport:
    """Run the whole ingest; raises InvalidInputError on the first bad sequence unless cfg.skip_invalid.
    Progress goes to `out` (default: sys.stdout as it is when called)."""
    started = time.monotonic()
    out = out or sys.stdout
    src, dest = normalize(src), normalize(dest)
    storage = (storage or StorageConfig()).resolved()
    check_destination(dest)
    earlier, earlier_metadata = read_earlier_manifest(dest, storage)
    layout, listing = read_source(src, cfg.layout, cfg.splits or None, cfg.footage_split)
    report = IngestReport(source=src, dest=dest, layout=layout)
    if listing.invalid:
        if not cfg.skip_invalid:
            raise _first_error(listing.invalid)
        report.skipped.extend(listing.invalid)
    if not listing.sequences:
        raise InvalidInputError(src, "no valid sequences to ingest")
    print(f"ingest: {len(listing.sequences)} sequences [{layout}] from {src} -> {dest}"
          + (f" ({len(listing.invalid)} invalid, skipped)" if listing.invalid else ""), file=out, flush=True)
    if earlier:
        print(f"ingest: {dest} already holds a manifest of {len({sequence_key(r) for r in earlier})} "
              "sequences; they stay, and a sequence ingested again replaces its own rows", file=out, flush=True)

    encode = EncodeSettings(cfg.crf, cfg.keyframe_interval, cfg.preset, cfg.pixel_format, cfg.fast_decode)
    settings = ClipSettings(encode, cfg.max_clip_frames)
    records = _run_tasks(listing.sequences, dest, settings, storage, cfg, report, out)

    metadata = {"stark.layout": layout, "stark.crf": str(cfg.crf),
                "stark.keyframe_interval": str(cfg.keyframe_interval), "stark.preset": cfg.preset,
                "stark.pixel_format": cfg.pixel_format, "stark.fast_decode": str(cfg.fast_decode),
                "stark.max_clip_frames": str(cfg.max_clip_frames)}
    merged = merge_manifests(earlier, earlier_metadata, records, metadata)
    _count(report, records, merged)
    report.manifest_uri = join(dest, MANIFEST_NAME)
    report.seconds = time.monotonic() - started
    write_bytes_atomic(join(dest, REPORT_NAME), json.dumps(report.to_json(), indent=2).encode(), storage)
    report.manifest_uri = write_manifest(dest, merged.records, merged.metadata, storage)  # last, atomically
    return report


def check_destination(dest: str) -> None:
    """DEST is a folder (made if missing) that will hold clips/ and manifest.parquet. Refused before any work:
    a DEST naming a .parquet file, an existing file, a path under a file, a folder this process cannot write."""
    if dest.endswith(".parquet"):
        raise InvalidInputError(dest, f"DEST is the folder that will hold {MANIFEST_NAME} and clips/, not a manifest "
                                      "file: give a folder")
    if is_s3(dest):
        return
    writable = dest  # the folder whose permissions decide: DEST, or the nearest one above it that exists
    if not os.path.isdir(dest):
        if os.path.exists(dest):
            raise InvalidInputError(dest, "DEST is an existing file, not a folder: give a folder (made if missing)")
        writable = os.path.dirname(dest)
        while not os.path.exists(writable):
            writable = os.path.dirname(writable)
        if not os.path.isdir(writable):
            raise InvalidInputError(dest, f"DEST cannot be made: {writable} is a file, not a folder")
    if not os.access(writable, os.W_OK | os.X_OK):
        raise InvalidInputError(dest, f"DEST cannot be written: no write permission in {writable}")


def read_earlier_manifest(dest: str, storage: StorageConfig) -> tuple[list[ClipRecord], dict[str, str]]:
    """The rows and settings of the manifest an earlier ingest left in DEST ([] and {} if none). One that
    cannot be read stops the ingest before any work: it is never replaced by a manifest without its rows."""
    uri = join(dest, MANIFEST_NAME)
    if not exists(uri, storage):
        return [], {}
    try:
        table = read_manifest(uri, storage)
        return [ClipRecord.from_row(row) for row in table.to_pylist()], table_metadata(table)
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        reason = " ".join(str(exc).split())
        raise InvalidInputError(uri, f"DEST holds a manifest that cannot be read ({reason}); nothing was written: "
                                     "move it away or ingest into another DEST") from exc


def _count(report: IngestReport, records: list[ClipRecord], merged: Merged) -> None:
    report.ingested = len({sequence_key(r) for r in records})
    report.sequences = len({sequence_key(r) for r in merged.records})
    report.kept_earlier, report.replaced_earlier, report.moved = merged.kept, merged.replaced, merged.moved
    in_manifest = {sequence_key(r) for r in merged.records}
    report.skipped_but_kept = [s.name for s in report.skipped if (s.dataset, s.name) in in_manifest]
    report.clips, report.frames = len(records), sum(r.num_frames for r in records)
    report.clip_bytes = sum(r.clip_bytes for r in records)


def _first_error(invalid: list[SkippedSequence]) -> InvalidInputError:
    first = invalid[0].error
    more = f" (and {len(invalid) - 1} more invalid sequences)" if len(invalid) > 1 else ""
    return InvalidInputError(first.path, f"{first.message}{more}; pass --skip-invalid to skip bad sequences",
                             first.line)


def _run_tasks(sequences: list[SequenceSource], dest: str, settings: ClipSettings, storage: StorageConfig,
               cfg: IngestConfig, report: IngestReport, out) -> list[ClipRecord]:
    import ray

    init_ray()  # a pipeline's Ray if one is up; else a local one, its start-up lines in the job's log
    task = ray.remote(num_cpus=1)(_ingest_task)
    limit = cfg.max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    progress = Progress(len(sequences), out)
    pending: dict = {}
    queue = deque(sequences)
    records: list[ClipRecord] = []
    done = 0
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                source = queue.popleft()
                pending[task.remote(source, dest, settings, storage)] = source
            ready, _ = ray.wait(list(pending), num_returns=1)
            source = pending.pop(ready[0])
            result = ray.get(ready[0])
            done += 1
            if isinstance(result, InvalidInputError):
                if not cfg.skip_invalid:
                    raise InvalidInputError(result.path, f"{result.message}; pass --skip-invalid to skip bad "
                                                         "sequences", result.line)
                report.skipped.append(SkippedSequence(source.dataset, source.split, source.name,
                                                      source.source_path, result))
            else:
                records.extend(result.records)
                report.reused += result.reused
                report.encoded += not result.reused
            progress.update(done, f"({report.encoded} encoded, {report.reused} kept, {len(report.skipped)} skipped) ",
                            force=done == len(sequences))
    finally:
        for ref in pending:  # on an error, stop the rest; their finished clips are kept for a re-run
            ray.cancel(ref)  # interrupts the task, which removes the clips it had written
    return records


def _ingest_task(source: SequenceSource, dest: str, settings: ClipSettings,
                 storage: StorageConfig) -> SequenceOutcome | InvalidInputError:
    try:
        return ingest_sequence(source, dest, settings, storage)
    except InvalidInputError as exc:
        return exc  # bad input is an answer, not a task failure (no retries, no traceback)
