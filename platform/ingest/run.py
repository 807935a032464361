"""`stark ingest SRC DEST`: a benchmark folder or a user's videos -> H.264 clips + a Parquet manifest.

Phases: read and validate every sequence's annotations (nothing is written if one is bad, unless
skip_invalid); encode sequences in parallel as Ray tasks (each verifies and keeps clips an earlier run
finished); write `ingest_report.json`; write the manifest, last and atomically. A crash at any point
leaves either the previous manifest or none: never a manifest pointing at a missing or partial clip.
"""
from __future__ import annotations

import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from ..storage import StorageConfig, join, normalize, write_bytes_atomic
from .clips import EncodeSettings
from .config import IngestConfig
from .importers import read_source
from .manifest import ClipRecord, write_manifest
from .sequence_clips import ClipSettings, SequenceOutcome, ingest_sequence
from .sources import InvalidInputError, SequenceSource, SkippedSequence

REPORT_NAME = "ingest_report.json"


@dataclass
class IngestReport:
    source: str
    dest: str
    layout: str
    manifest_uri: str = ""
    sequences: int = 0  # in the manifest
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
        lines = [f"ingested {self.sequences} sequences ({self.encoded} encoded, {self.reused} kept from an "
                 f"earlier run) from {self.source} [{self.layout}] in {self.seconds:.1f}s",
                 f"  clips:    {self.clips} clips, {self.frames} frames, {self.clip_bytes / 1e6:.1f} MB "
                 f"under {join(self.dest, 'clips')}",
                 f"  manifest: {self.manifest_uri}",
                 f"  report:   {join(self.dest, REPORT_NAME)}"]
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} invalid sequences:")
            lines += [f"    {s.dataset}/{s.split}/{s.name}: {s.error}" for s in self.skipped]
        return "\n".join(lines)


class Progress:
    """One line per second at most: done/total, rate, ETA."""

    def __init__(self, total: int, out=sys.stdout, every: float = 1.0):
        self.total, self.out, self.every = total, out, every
        self.start = self.last = time.monotonic()

    def update(self, done: int, note: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        eta_text = f"{eta:.0f}s" if eta != float("inf") else "?"
        print(f"ingest: {done}/{self.total} sequences {note}| {rate:.1f} seq/s | ETA {eta_text}",
              file=self.out, flush=True)


def ingest(src: str, dest: str, cfg: IngestConfig, storage: StorageConfig | None = None,
           out=sys.stdout) -> IngestReport:
    """Run the whole ingest; raises InvalidInputError on the first bad sequence unless cfg.skip_invalid."""
    import ray

    started = time.monotonic()
    src, dest = normalize(src), normalize(dest)
    storage = (storage or StorageConfig()).resolved()
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

    encode = EncodeSettings(cfg.crf, cfg.keyframe_interval, cfg.preset, cfg.pixel_format, cfg.fast_decode)
    settings = ClipSettings(encode, cfg.max_clip_frames)
    if not ray.is_initialized():
        ray.init()
    records = _run_tasks(listing.sequences, dest, settings, storage, cfg, report, out)

    report.sequences = len({(r.dataset, r.split, r.sequence_id) for r in records})
    report.clips, report.frames = len(records), sum(r.num_frames for r in records)
    report.clip_bytes = sum(r.clip_bytes for r in records)
    report.manifest_uri = join(dest, "manifest.parquet")
    report.seconds = time.monotonic() - started
    write_bytes_atomic(join(dest, REPORT_NAME), json.dumps(report.to_json(), indent=2).encode(), storage)
    metadata = {"stark.layout": layout, "stark.crf": str(cfg.crf),
                "stark.keyframe_interval": str(cfg.keyframe_interval), "stark.preset": cfg.preset,
                "stark.pixel_format": cfg.pixel_format, "stark.fast_decode": str(cfg.fast_decode),
                "stark.max_clip_frames": str(cfg.max_clip_frames)}
    report.manifest_uri = write_manifest(dest, records, metadata, storage)  # last, atomically
    return report


def _first_error(invalid: list[SkippedSequence]) -> InvalidInputError:
    first = invalid[0].error
    more = f" (and {len(invalid) - 1} more invalid sequences)" if len(invalid) > 1 else ""
    return InvalidInputError(first.path, f"{first.message}{more}; pass --skip-invalid to skip bad sequences",
                             first.line)


def _run_tasks(sequences: list[SequenceSource], dest: str, settings: ClipSettings, storage: StorageConfig,
               cfg: IngestConfig, report: IngestReport, out) -> list[ClipRecord]:
    import ray

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
