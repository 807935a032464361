"""A whole training stage as one Ray Data stream, starting wherever the stage's latest checkpoint stopped.

`data.stream.build_training_stream` makes one epoch. Ray Train hands a trainer's datasets to its
workers once per worker-group start, so a stage of many epochs needs one stream over all of them:
stream sample g is sample g % samples_per_epoch of epoch g // samples_per_epoch, made exactly as
`build_training_stream(epoch=g // samples_per_epoch)` makes it (same seed, same draws, same crops).

The sample numbers come from a small datasource with one read task per epoch, each yielding one block
per unit (`data.windows`: the samples an actor cuts from one set of clip windows) lazily, so a 500-epoch stage costs no more to plan
than one epoch (a `ray.data.range` over 30M samples in small blocks takes minutes and a GB to plan).

Resume: `StageStream` is handed to the trainer as a dataset *factory*. Ray Train calls it each time it
starts the worker group: on the first start of a job and again after a worker dies. It reads the
stage's latest registered checkpoint from storage (the same checkpoint `ray.train.get_checkpoint()`
hands the restarted workers) and starts the stream at that checkpoint's sampler position, so neither
a re-run job nor a restarted worker group replays samples it already trained on. With one worker
this is exact. With several, `streaming_split` deals blocks to whichever worker asks next and each
worker prefetches a little, so the samples trained by a checkpoint are the stream's first
`samples_seen` only up to the batches in flight: on resume, at most a few prefetched batches near the
boundary are skipped or seen twice. Steps taken after the checkpoint by a group that died are lost
and retrained on the same positions.
"""
from __future__ import annotations

import math

import numpy as np

from ...model.config import ModelConfig
from ..data.config import DataConfig
from ..data.stream import BatchMaker, crop_geometry, decode_in_worker_pool
from ..storage import StorageConfig
from .run_layout import latest_position


def _epoch_sample_source(start: int, end: int, samples_per_epoch: int, rows_per_block: int):
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class EpochSampleSource(Datasource):
        """Rows {'epoch', 'sample_index'} for stream samples [start, end), one read task per epoch."""

        def estimate_inmemory_data_size(self) -> int:
            return 16 * (end - start)

        def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list:
            tasks = []
            for epoch in range(start // samples_per_epoch, math.ceil(end / samples_per_epoch)):
                lo, hi = max(start, epoch * samples_per_epoch), min(end, (epoch + 1) * samples_per_epoch)
                meta = BlockMetadata(num_rows=hi - lo, size_bytes=16 * (hi - lo), input_files=None, exec_stats=None)
                tasks.append(ReadTask(lambda lo=lo, hi=hi: _sample_blocks(lo, hi, samples_per_epoch, rows_per_block),
                                      meta, per_task_row_limit=per_task_row_limit))
            return tasks

    return EpochSampleSource()


def _sample_blocks(lo: int, hi: int, samples_per_epoch: int, rows_per_block: int):
    """Blocks of stream samples [lo, hi) (one epoch), cut at the epoch's unit boundaries (multiples of
    rows_per_block into the epoch): a resumed stream's first block is the rest of its unit."""
    import pyarrow as pa

    epoch_start = lo // samples_per_epoch * samples_per_epoch
    first = lo
    while first < hi:
        end = min(hi, epoch_start + ((first - epoch_start) // rows_per_block + 1) * rows_per_block)
        numbers = np.arange(first, end, dtype=np.int64)
        yield pa.table({"epoch": numbers // samples_per_epoch, "sample_index": numbers % samples_per_epoch})
        first = end


class StageSampleMaker(BatchMaker):
    """The maker of a stage: {'epoch', 'sample_index'} -> training batches (data.stream's format) + 'epoch'."""

    def __call__(self, batch: dict[str, np.ndarray]):
        epochs = batch["epoch"].astype(np.int64)
        for k, epoch in enumerate(np.unique(epochs)):  # a block lies in one epoch; any rows are handled, in order
            indices = [int(i) for i in batch["sample_index"][epochs == epoch]]
            for part in self.make(indices, int(epoch), first_in_call=k == 0):
                part["epoch"] = np.full(len(part["label"]), epoch, dtype=np.int64)
                yield part


def build_stage_stream(index_ref, data_cfg: DataConfig, model_cfg: ModelConfig, stage: int, seed: int,
                       start_sample: int, end_sample: int, storage_cfg: StorageConfig | None = None):
    """Stream samples [start_sample, end_sample) of a stage as a ray.data.Dataset, in order.

    `index_ref`: an ObjectRef of the stage's FrameIndex (`ray.put(load_frame_index(...))`)."""
    import ray

    rows_per_block = data_cfg.samples_per_unit
    source = _epoch_sample_source(start_sample, end_sample, data_cfg.samples_per_epoch, rows_per_block)
    return decode_in_worker_pool(ray.data.read_datasource(source), StageSampleMaker, data_cfg, dict(
        index_ref=[index_ref], data_cfg=data_cfg, geometry=crop_geometry(model_cfg), stage=stage, seed=seed,
        storage=(storage_cfg or StorageConfig()).resolved()))


class StageStream:
    """Dataset factory for the trainer: the rest of the stage, from the latest checkpoint's position."""

    def __init__(self, index_ref, data_cfg: DataConfig, model_cfg: ModelConfig, stage: int, seed: int,
                 end_sample: int, run_path: str, storage_cfg: StorageConfig | None = None):
        self.index_ref, self.data_cfg, self.model_cfg = index_ref, data_cfg, model_cfg
        self.stage, self.seed, self.end_sample = stage, seed, end_sample
        self.run_path, self.storage_cfg = run_path, storage_cfg

    def __call__(self):
        start = latest_position(self.run_path, self.data_cfg.samples_per_epoch, self.storage_cfg)
        print(f"stage {self.stage}: data stream from sample {start} (epoch {start // self.data_cfg.samples_per_epoch})"
              f" to {self.end_sample}", flush=True)
        return build_stage_stream(self.index_ref, self.data_cfg, self.model_cfg, self.stage, self.seed, start,
                                  self.end_sample, self.storage_cfg)
