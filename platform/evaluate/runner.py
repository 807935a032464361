"""Distributed, batched evaluation: track a set of sequences, write result files, score, plot.

Sequences are described by plain, serialisable `EvalSequence`s so that Ray workers open their
frames themselves. With `num_workers > 0`, the model goes to the object store once and each
worker (a Ray actor) builds it once, then tracks chunks of sequences with one batched forward per
step; with `num_workers == 0` everything runs in this process.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal

import numpy as np
import torch

from ...model.config import ModelConfig
from ...model.stark import build_stark
from .. import storage
from ..experiment import from_dict
from ..ingest.clips import decode_clip_frames, open_clip
from ..ingest.importers import read_source
from ..ingest.manifest import check_clips_present, manifest_uri, read_records
from ..ingest.sources import read_image
from ..model_loading import LoadedModel
from ..precision import AMP_DTYPES
from ..ray_runtime import init_ray
from ..track.config import TrackerSettings
from ..track.export import export_tracker
from ..track.onnx_folder import ExportedTracker, exported_files, write_exported_files
from ..track.frames import VideoFrames
from ..track.onnx_tracker import OnnxTracker
from ..track.tracker import StarkTracker, TrackResult, track_many
from .config import EvalConfig

@dataclass(frozen=True)
class FramesRef:
    """How a worker reads a sequence's frames: image files, one video file, or manifest clips."""

    kind: Literal["images", "video", "clips"]
    paths: tuple[str, ...]
    size: tuple[int, int] | None = None  # (width, height): clips are padded to even sides at ingest


@dataclass
class EvalSequence:
    name: str
    dataset: str  # got10k | lasot | trackingnet | footage
    split: str
    frames: FramesRef
    boxes_xywh: np.ndarray  # [N, 4]; NaN rows where no box is known
    visible: np.ndarray  # [N] bool
    has_groundtruth: bool  # False: only the first box is known (test splits)
    attributes: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.boxes_xywh)

    @property
    def init_box(self) -> np.ndarray:
        return self.boxes_xywh[0]


def sequence_fingerprint(seq: EvalSequence) -> str:
    """Identity of a sequence's content wherever its frames are stored (benchmark tree or ingested
    clips): its name, ground truth (to 0.1 px) and visibility. Tuning records these so that promotion
    can tell whether it is judging on the sequences the settings were tuned on."""
    boxes = np.round(np.nan_to_num(np.asarray(seq.boxes_xywh, dtype=np.float64), nan=-1.0), 1) + 0.0  # no -0.0
    digest = hashlib.sha256(seq.name.encode())
    digest.update(np.ascontiguousarray(boxes).tobytes())
    digest.update(np.ascontiguousarray(seq.visible, dtype=bool).tobytes())
    return digest.hexdigest()[:12]


def read_sequence_frames(ref: FramesRef, storage_cfg: storage.StorageConfig | None = None, start: int = 0
                ) -> Iterator[np.ndarray]:
    """Frames start, start+1, ... in order, HWC uint8 RGB. Frames before `start` are not decoded where
    the source allows it (image files, and whole clips before the one holding `start`)."""
    if ref.kind == "images":
        for path in ref.paths[start:]:
            yield read_image(path)
        return
    if ref.kind == "video":
        yield from VideoFrames(ref.paths[0], start=start)
        return

    width, height = ref.size
    offset = 0  # sequence frame number of the current clip's first frame
    for uri in ref.paths:  # one clip in memory at a time (decord reads a clip wholly)
        reader = open_clip(uri, storage_cfg)
        count = len(reader)
        first = max(start - offset, 0)
        for chunk in range(first, count, 32):
            yield from decode_clip_frames(reader, list(range(chunk, min(chunk + 32, count))), width, height)
        offset += count


def sequences_from_manifest(uri: str, storage_cfg: storage.StorageConfig | None = None,
                            split: str | None = None) -> list[EvalSequence]:
    """Clips of a manifest joined back into sequences (rows share sequence_id; ordered by clip_index)."""
    grouped: dict[tuple, list] = {}
    records = [r for r in read_records(uri, storage_cfg) if split is None or r.split == split]
    check_clips_present(uri, records, storage_cfg)  # here, not as a decode error in a Ray worker
    for record in records:
        grouped.setdefault((record.dataset, record.split, record.sequence_id), []).append(record)
    sequences = []
    for (dataset, split_name, name), clips in sorted(grouped.items()):
        clips.sort(key=lambda r: r.clip_index)
        sequences.append(EvalSequence(
            name=name, dataset=dataset, split=split_name,
            frames=FramesRef("clips", tuple(c.clip_uri for c in clips), (clips[0].width, clips[0].height)),
            boxes_xywh=np.concatenate([c.boxes_xywh for c in clips]),
            visible=np.concatenate([c.visible for c in clips]),
            has_groundtruth=clips[0].has_groundtruth))
    return sequences


def sequences_from_folder(root: str, split: str | None = None) -> tuple[str, list[EvalSequence]]:
    """A GOT-10k / LaSOT / TrackingNet tree or a folder of videos with box files -> (layout, sequences).
    Invalid sequences are an error here: an evaluation must cover its whole split."""
    import os


    # absolute paths: Ray workers (and Tune trials) do not share this process's working directory
    layout, listing = read_source(os.path.abspath(root), splits=[split] if split else None)
    if listing.invalid:
        first = listing.invalid[0]
        raise ValueError(f"{len(listing.invalid)} invalid sequence(s) in {root}; first: {first.error}")
    sequences = []
    for src in listing.sequences:
        if src.video_path is not None:
            frames = FramesRef("video", (src.video_path,))
        else:
            frames = FramesRef("images", tuple(src.frame_paths))
        sequences.append(EvalSequence(name=src.name, dataset=src.dataset, split=src.split, frames=frames,
                                      boxes_xywh=src.boxes_xywh, visible=src.visible,
                                      has_groundtruth=src.has_groundtruth))
    return layout, sequences


def load_sequences(data: str, storage_cfg: storage.StorageConfig | None = None, split: str | None = None
                   ) -> list[EvalSequence]:
    """DATA for `stark evaluate`: a manifest (file, or ingest folder holding one; local or s3://) or a
    benchmark tree on disk."""

    if storage.is_s3(data) or data.endswith(".parquet") or storage.exists(manifest_uri(data), storage_cfg):
        sequences = sequences_from_manifest(data, storage_cfg, split)
    else:
        sequences = sequences_from_folder(data, split)[1]
    if not sequences:
        raise ValueError(f"{data}: no sequences{f' in split {split!r}' if split else ''}")
    return sequences


class TrackingWorker:
    """Holds one model; tracks chunks of sequences. Used in-process or as a Ray actor."""

    def __init__(self, packed_model: dict, settings: TrackerSettings, eval_cfg: EvalConfig,
                 storage_cfg: storage.StorageConfig | None, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        model_cfg = from_dict(ModelConfig, packed_model["config"], source="<model>", prefix="model.")
        model = build_stark(model_cfg)
        model.load_state_dict(packed_model["state"])
        if eval_cfg.engine == "onnx":
            import tempfile

            with tempfile.TemporaryDirectory(prefix="stark-onnx-") as folder:  # sessions read the graphs once
                exported = (write_exported_files(packed_model["onnx"], folder) if "onnx" in packed_model
                            else export_tracker(model, model_cfg, settings, folder))
                self.tracker = OnnxTracker(exported, settings, device=eval_cfg.device, threads=threads)
        else:
            self.tracker = StarkTracker(model, model_cfg, settings, device=eval_cfg.device,
                                        amp_dtype=AMP_DTYPES[eval_cfg.amp], channels_last=eval_cfg.channels_last)
        self.batch_size = eval_cfg.batch_size
        self.storage_cfg = storage_cfg

    def track(self, sequences: list[EvalSequence]) -> list[tuple[str, TrackResult]]:
        return list(self.track_each(sequences))

    def track_each(self, sequences: list[EvalSequence]) -> Iterator[tuple[str, TrackResult]]:
        """(name, result) as each sequence finishes; a Ray actor streams them (num_returns="streaming")."""
        inputs = [(read_sequence_frames(s.frames, self.storage_cfg), s.init_box) for s in sequences]
        for i, result in track_many(self.tracker, inputs, self.batch_size):
            yield sequences[i].name, _to_cpu(result)


def _to_cpu(result: TrackResult) -> TrackResult:
    if result.initial_template is not None:
        result.initial_template = result.initial_template.to("cpu")
    return result


def pack_model(model: torch.nn.Module, model_cfg: ModelConfig, exported: ExportedTracker | None = None) -> dict:
    """Plain tensors and dicts: what goes to the object store once; with `exported`, its ONNX files too
    (evaluate.engine=onnx; without them the onnx engine exports the weights itself)."""
    import dataclasses

    packed = {"state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
              "config": dataclasses.asdict(model_cfg)}
    if exported is not None:
        packed["onnx"] = exported_files(exported)
    return packed


def with_exported_graphs(packed_model: dict, settings: TrackerSettings) -> dict:
    """The pack with ONNX graphs: as given when it has them, else exported here once (not once per worker)."""
    import tempfile

    if "onnx" in packed_model:
        return packed_model
    model_cfg = from_dict(ModelConfig, packed_model["config"], source="<model>", prefix="model.")
    model = build_stark(model_cfg)
    model.load_state_dict(packed_model["state"])
    with tempfile.TemporaryDirectory(prefix="stark-onnx-") as folder:
        return {**packed_model, "onnx": exported_files(export_tracker(model, model_cfg, settings, folder))}


def track_sequences(packed_model: dict, settings: TrackerSettings, sequences: list[EvalSequence],
                    eval_cfg: EvalConfig, storage_cfg: storage.StorageConfig | None = None,
                    on_result: Callable[[EvalSequence, TrackResult], None] | None = None
                    ) -> dict[str, TrackResult]:
    """Track every sequence; calls on_result as each finishes (for progress). Returns {name: result}.
    `settings` reach every worker as they are (resolved once by the caller, frozen)."""
    if eval_cfg.engine == "onnx":
        packed_model = with_exported_graphs(packed_model, settings)
    by_name = {s.name: s for s in sequences}
    if len(by_name) != len(sequences):
        raise ValueError("sequence names must be unique within an evaluation")
    results: dict[str, TrackResult] = {}

    def collect(pairs):
        for name, result in pairs:
            results[name] = result
            if on_result:
                on_result(by_name[name], result)

    if eval_cfg.num_workers == 0:
        worker = TrackingWorker(packed_model, settings, eval_cfg, storage_cfg)
        # one chunk: the whole list, so sequences join the batch as others finish
        collect(worker.track_each(sequences))
        return results

    import ray


    init_ray()
    model_ref = ray.put(packed_model)  # once; every actor reads the same object
    actor_cls = ray.remote(TrackingWorker).options(num_cpus=eval_cfg.cpus_per_worker,
                                                   num_gpus=eval_cfg.gpus_per_worker)
    threads = max(1, int(eval_cfg.cpus_per_worker))
    actors = [actor_cls.remote(model_ref, settings, eval_cfg, storage_cfg, threads)
              for _ in range(eval_cfg.num_workers)]
    queue = worker_chunks(sequences, eval_cfg.batch_size, eval_cfg.num_workers)
    streams: dict = {}  # a chunk's stream of (name, result), as the actor finishes each -> the actor

    def give(actor) -> None:
        if queue:
            streams[actor.track_each.options(num_returns="streaming").remote(queue.pop(0))] = actor

    for actor in actors:
        give(actor)
    try:
        while streams:
            (stream,), _ = ray.wait(list(streams), num_returns=1)
            try:
                ref = next(stream)
            except StopIteration:  # the chunk is done: the actor takes the next one
                give(streams.pop(stream))
                continue
            collect([ray.get(ref)])
    finally:
        for actor in actors:
            ray.kill(actor)
    return results


def track_model(loaded: LoadedModel, settings: TrackerSettings, sequences: list[EvalSequence], eval_cfg: EvalConfig,
                storage_cfg: storage.StorageConfig | None = None,
                on_result: Callable[[EvalSequence, TrackResult], None] | None = None,
                exported: ExportedTracker | None = None) -> dict[str, TrackResult]:
    """What jobs do with a model they loaded: track every sequence with the settings resolved for it
    (`cfg.tracker_choice.for_model(loaded.tracker)`). With `exported` (a registered version's own ONNX
    graphs), evaluate.engine=onnx runs those rather than exporting the weights. Returns {name: result}."""
    return track_sequences(pack_model(loaded.model, loaded.model_cfg, exported), settings, sequences, eval_cfg,
                           storage_cfg, on_result)


def worker_chunks(sequences: list[EvalSequence], batch_size: int, num_workers: int) -> list[list[EvalSequence]]:
    """Chunks of up to two batches: big enough to keep a worker's batch full, small enough to balance,
    never so big that a worker is left without one; longest first, so the last to finish is short."""
    size = max(1, min(batch_size * 2, math.ceil(len(sequences) / max(num_workers, 1))))
    chunks = [sequences[i:i + size] for i in range(0, len(sequences), size)]
    return sorted(chunks, key=lambda c: -sum(s.num_frames for s in c))


def frames_per_second(results: dict[str, TrackResult], wall_seconds: float) -> float:
    frames = sum(len(r.boxes) for r in results.values())
    return frames / wall_seconds if wall_seconds > 0 else math.nan

