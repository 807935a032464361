"""Result files in each benchmark's own format, their readers, submission zips, and metric tables.

Layouts (boxes are xywh in pixels, one line per frame, frame 0 = the initial box):

- GOT-10k (got-10k/toolkit ``ExperimentGOT10k._record``; the test server takes the same tree zipped):
  ``<root>/<seq>/<seq>_001.txt`` with ``x,y,w,h`` comma-separated ("_001" is the repetition; a
  deterministic tracker writes one) and ``<root>/<seq>/<seq>_time.txt`` with seconds per frame.
  Submission: a zip whose top level holds one folder per sequence with those files.
- LaSOT: ``<root>/<seq>.txt``, ``x,y,w,h`` comma-separated like LaSOT's own groundtruth.txt
  (pytracking writes tab-separated integers; the reader takes commas, tabs or spaces).
- TrackingNet: ``<root>/<seq>.txt``, ``x,y,w,h`` comma-separated. Submission: a zip of the
  ``<seq>.txt`` files at its top level (TrackingNet-devkit ``metrics.py`` reads each file with
  ``sep=","`` and matches it to the annotation by file name).

Every file is written atomically: to a temporary name in the same folder, then renamed over the
target, so a reader never sees half a file and a crash leaves the old file in place.
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..storage import write_file_atomic

BOX_FORMAT = "%.3f"  # the GOT-10k toolkit's precision; a thousandth of a pixel
TIME_FORMAT = "%.8f"


class SubmissionError(BadInputError):
    """A results folder that an evaluation server would reject; the message lists every problem."""


def _format_boxes(boxes_xywh, delimiter: str = ",") -> bytes:
    boxes = np.asarray(boxes_xywh, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
        raise ValueError(f"boxes must be [N, 4] with N >= 1, got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes contain NaN or inf; evaluation servers reject such files")
    lines = [delimiter.join(BOX_FORMAT % v for v in row) for row in boxes]
    return ("\n".join(lines) + "\n").encode()


def write_box_file(path: Path, boxes_xywh, delimiter: str = ",") -> Path:
    """One ``x,y,w,h`` line per frame, atomically."""
    return write_file_atomic(Path(path), _format_boxes(boxes_xywh, delimiter))


def read_result_boxes(path: Path) -> np.ndarray:
    """[N, 4] float64 from a box file separated by commas, tabs or spaces (any of the three layouts)."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        values = [v for v in re.split(r"[,\t ]+", line.strip()) if v]
        if len(values) != 4:
            raise ValueError(f"{path}:{number}: expected 4 numbers, got {line!r}")
        rows.append([float(v) for v in values])
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


# --- GOT-10k --------------------------------------------------------------------------------------
def got10k_paths(root: Path, sequence: str, run: int = 1) -> tuple[Path, Path]:
    """(boxes file, times file) of one sequence: <root>/<seq>/<seq>_001.txt and <seq>_time.txt."""
    folder = Path(root) / sequence
    return folder / f"{sequence}_{run:03d}.txt", folder / f"{sequence}_time.txt"


def write_got10k_results(root: Path, sequence: str, boxes_xywh, times_s, run: int = 1) -> Path:
    """Write one sequence in the GOT-10k layout; returns the sequence folder."""
    boxes_file, times_file = got10k_paths(root, sequence, run)
    times = np.asarray(times_s, dtype=np.float64).reshape(-1)
    num_boxes = len(np.asarray(boxes_xywh).reshape(-1, 4))
    if len(times) != num_boxes:
        raise ValueError(f"{sequence}: {len(times)} times for {num_boxes} boxes; the server wants one per frame")
    write_box_file(boxes_file, boxes_xywh)
    write_file_atomic(times_file, ("\n".join(TIME_FORMAT % t for t in times) + "\n").encode())
    return boxes_file.parent


def read_got10k_results(root: Path, sequence: str, run: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """(boxes [N, 4], seconds per frame [N] or None when no times file was written)."""
    boxes_file, times_file = got10k_paths(root, sequence, run)
    boxes = read_result_boxes(boxes_file)
    times = None
    if times_file.is_file():
        times = np.array([float(line.split(",")[0]) for line in times_file.read_text().splitlines()
                          if line.strip()], dtype=np.float64)
    return boxes, times


# --- LaSOT and TrackingNet ------------------------------------------------------------------------
def write_lasot_results(root: Path, sequence: str, boxes_xywh) -> Path:
    """<root>/<seq>.txt, comma-separated."""
    return write_box_file(Path(root) / f"{sequence}.txt", boxes_xywh)


def read_lasot_results(root: Path, sequence: str) -> np.ndarray:
    return read_result_boxes(Path(root) / f"{sequence}.txt")


def write_trackingnet_results(root: Path, sequence: str, boxes_xywh) -> Path:
    """<root>/<seq>.txt, comma-separated."""
    return write_box_file(Path(root) / f"{sequence}.txt", boxes_xywh)


def read_trackingnet_results(root: Path, sequence: str) -> np.ndarray:
    return read_result_boxes(Path(root) / f"{sequence}.txt")


# --- submission zips ------------------------------------------------------------------------------
def _check_box_lines(text: str, where: str, expected: int | None, problems: list[str]) -> int:
    lines = text.splitlines()
    if lines and not lines[-1].strip():
        lines = lines[:-1]
    for number, line in enumerate(lines, start=1):
        parts = line.split(",")
        ok = len(parts) == 4
        if ok:
            try:
                ok = all(math.isfinite(float(p)) for p in parts)
            except ValueError:
                ok = False
        if not ok:
            problems.append(f"{where}:{number}: expected 4 comma-separated numbers, got {line!r}")
            break
    if expected is not None and len(lines) != expected:
        problems.append(f"{where}: {len(lines)} lines, expected {expected} (one per frame)")
    return len(lines)


def check_got10k_results(root: Path, expected_frames: Mapping[str, int] | None = None) -> list[str]:
    """Problems the GOT-10k server would reject (empty list: fine). expected_frames = {seq: frames}
    also checks that exactly these sequences are present with one line per frame."""
    root = Path(root)
    problems: list[str] = []
    folders = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        problems.append(f"{root}: no sequence folders")
    if expected_frames is not None:
        missing = sorted(set(expected_frames) - set(folders))
        extra = sorted(set(folders) - set(expected_frames))
        if missing:
            problems.append(f"missing sequences: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
        if extra:
            problems.append(f"sequences not in the split: {extra[:10]}")
    for sequence in folders:
        boxes_file, times_file = got10k_paths(root, sequence)
        expected = expected_frames.get(sequence) if expected_frames is not None else None
        if not boxes_file.is_file():
            problems.append(f"{sequence}: no {boxes_file.name}")
            continue
        lines = _check_box_lines(boxes_file.read_text(), f"{sequence}/{boxes_file.name}", expected, problems)
        if not times_file.is_file():
            problems.append(f"{sequence}: no {times_file.name}")
            continue
        times = [line for line in times_file.read_text().splitlines() if line.strip()]
        if len(times) != lines:
            problems.append(f"{sequence}/{times_file.name}: {len(times)} lines for {lines} boxes")
    return problems


def make_got10k_submission(root: Path, zip_path: Path, expected_frames: Mapping[str, int] | None = None) -> Path:
    """Zip a GOT-10k results tree for the server: top level = one folder per sequence holding
    <seq>_NNN.txt and <seq>_time.txt. Refuses (SubmissionError) if check_got10k_results finds problems."""
    root = Path(root)
    problems = check_got10k_results(root, expected_frames)
    if problems:
        raise SubmissionError(f"{root} is not a valid GOT-10k submission:\n  " + "\n  ".join(problems))
    members = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        pattern = re.compile(rf"{re.escape(folder.name)}_(\d{{3}}|time)\.txt")
        members += [(f, f"{folder.name}/{f.name}") for f in sorted(folder.iterdir()) if pattern.fullmatch(f.name)]
    return _write_zip(Path(zip_path), members)


def make_trackingnet_submission(root: Path, zip_path: Path, expected_frames: Mapping[str, int] | None = None) -> Path:
    """Zip every <seq>.txt under root at the zip's top level, after checking each file's lines."""
    root = Path(root)
    files = sorted(root.glob("*.txt"))
    problems: list[str] = [] if files else [f"{root}: no <seq>.txt files"]
    names = {f.stem for f in files}
    if expected_frames is not None:
        missing = sorted(set(expected_frames) - names)
        if missing:
            problems.append(f"missing sequences: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    for f in files:
        expected = expected_frames.get(f.stem) if expected_frames is not None else None
        _check_box_lines(f.read_text(), f.name, expected, problems)
    if problems:
        raise SubmissionError(f"{root} is not a valid TrackingNet submission:\n  " + "\n  ".join(problems))
    return _write_zip(Path(zip_path), [(f, f.name) for f in files])


def _write_zip(zip_path: Path, members: Iterable[tuple[Path, str]]) -> Path:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{zip_path.name}.", suffix=".tmp", dir=zip_path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for source, arcname in members:
                archive.write(source, arcname)
        os.replace(tmp, zip_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return zip_path


# --- metric tables --------------------------------------------------------------------------------
def write_table_csv(rows: list[dict], path: Path) -> Path:
    """Rows of one table (e.g. BenchmarkMetrics.per_sequence) as CSV; floats with 6 decimals."""
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    columns = list(rows[0])
    lines: list[list[str]] = [columns]
    for row in rows:
        lines.append([f"{row[c]:.6f}" if isinstance(row[c], float) else str(row[c]) for c in columns])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return write_file_atomic(Path(path), buffer.getvalue().encode())


def write_metric_tables(metrics, out_dir: Path) -> dict[str, Path]:
    """per_sequence.csv always, per_attribute.csv when there are attributes; returns {table: path}."""
    out_dir = Path(out_dir)
    written = {"per_sequence": write_table_csv(metrics.per_sequence, out_dir / "per_sequence.csv")}
    if metrics.per_attribute:
        written["per_attribute"] = write_table_csv(metrics.per_attribute, out_dir / "per_attribute.csv")
    return written
