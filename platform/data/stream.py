"""The Ray Data training stream: manifests -> sample specs -> decoded frames -> crops, as batches.

    ds = build_training_stream(["s3://bucket/got10k"], cfg.data, cfg.model, stage=1, epoch=0, seed=42,
                               storage_cfg=cfg.storage)
    for batch in ds.iter_torch_batches(batch_size=16):     # or ray.train.get_dataset_shard("train")
        ...

Batch format (dict of tensors; B = batch, T = model.num_templates, z = template, x = search):
    template       [B, T, 3, Hz, Wz] float32  ImageNet-normalised; T=0 the initial template, T=1 the dynamic one
    template_mask  [B, T, Hz, Wz]    bool     True where the crop is zero padding (outside the frame)
    search         [B, 3, Hx, Wx]    float32  ImageNet-normalised
    search_mask    [B, Hx, Wx]       bool     True = padding
    search_box     [B, 4]            float32  target cxcywh normalised to the search crop, clipped to [0, 1]
    label          [B]               float32  1 = the target is in the search crop (stage 1: always 1)
    sample_index   [B]               int64    which sample of the epoch (same index, same sample)

How it runs: blocks of sample numbers 0..samples_per_epoch-1 feed to a pool of `data.decode_actors`
actors (`map_batches`, ActorPoolStrategy). Each actor turns a batch of numbers into specs, groups the
frames the batch needs by clip, opens each clip once (decord, num_threads=1; S3 clips fetched in one
GET through s3fs), decodes the needed frames in one sorted pass, then crops. Memory is bounded: Ray
Data streams blocks with backpressure, clips are bounded in length at ingest, and an actor keeps at most
`data.open_clip_cache` clips open. Samples are seeded by (seed, epoch, index) and the order is kept, so
an epoch is reproducible.
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict

import numpy as np
import pyarrow as pa

from ...model.config import ModelConfig
from ..ingest.clips import open_clip, decode_clip_frames
from ..storage import StorageConfig
from .config import DataConfig
from .frame_index import FrameIndex, load_frame_index
from .processing import empty_batch, fill_sample
from .sampling import CropGeometry, SampleSpec, make_sample_spec

BATCHES_PER_BLOCK = 2  # input blocks of sample numbers: small, so work spreads over the actor pool


def crop_geometry(model_cfg: ModelConfig) -> CropGeometry:
    return CropGeometry(model_cfg.template_size, model_cfg.search_size, model_cfg.template_factor,
                        model_cfg.search_factor, model_cfg.num_templates, model_cfg.feat_stride)


class FrameDecoder:
    """Decodes the frames a batch of specs needs, each clip opened once; keeps a few clips open."""

    def __init__(self, index: FrameIndex, storage: StorageConfig | None, cache_size: int):
        self.index, self.storage, self.cache_size = index, storage, cache_size
        self.readers: OrderedDict[str, object] = OrderedDict()
        self.clips_opened = 0

    def _reader(self, uri: str):
        if uri in self.readers:
            self.readers.move_to_end(uri)
            return self.readers[uri]
        reader = open_clip(uri, self.storage)
        self.clips_opened += 1
        self.readers[uri] = reader
        while len(self.readers) > max(self.cache_size, 1):  # within a batch a clip is open once anyway
            self.readers.popitem(last=False)
        return reader

    def decode(self, specs: list[SampleSpec]) -> dict[tuple[int, int], np.ndarray]:
        wanted = {(c.sequence, c.frame) for s in specs for c in (*s.templates, s.search)}
        by_clip: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for seq, frame in wanted:
            uri, in_clip = self.index.clip_of(seq, frame)
            by_clip[uri].append((in_clip, seq, frame))
        frames = {}
        for uri in sorted(by_clip):
            needs = sorted(by_clip[uri])
            seq = needs[0][1]
            decoded = decode_clip_frames(self._reader(uri), [n[0] for n in needs],
                                  int(self.index.seq_width[seq]), int(self.index.seq_height[seq]))
            frames.update({(s, f): image for (_, s, f), image in zip(needs, decoded)})
        if self.cache_size == 0:
            self.readers.clear()
        return frames


class BatchMaker:
    """What a decode actor holds (the frame index, the crop geometry, a frame decoder), and the batches it
    makes; the map_batches UDFs below differ only in how they read their input rows."""

    def __init__(self, index_ref: list, data_cfg: DataConfig, geometry: CropGeometry, stage: int, seed: int,
                 storage: StorageConfig | None):
        import ray
        import torch

        torch.set_num_threads(1)  # one core per actor; parallelism comes from the pool
        self.index = ray.get(index_ref[0])
        self.cfg, self.geometry, self.stage, self.seed = data_cfg, geometry, stage, seed
        self.decoder = FrameDecoder(self.index, storage, data_cfg.open_clip_cache)

    def make(self, sample_indices: list[int], epoch: int) -> dict[str, np.ndarray]:
        return make_batch(self.index, sample_indices, self.cfg, self.geometry, self.stage, self.seed, epoch,
                          self.decoder)


class SampleMaker(BatchMaker):
    """The map_batches UDF of one epoch: {'id': [B]} sample numbers -> one training batch (see the module
    docstring)."""

    def __init__(self, index_ref: list, data_cfg: DataConfig, geometry: CropGeometry, stage: int, seed: int,
                 epoch: int, storage: StorageConfig | None):
        super().__init__(index_ref, data_cfg, geometry, stage, seed, storage)
        self.epoch = epoch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.make([int(i) for i in batch["id"]], self.epoch)


def make_batch(index: FrameIndex, sample_indices: list[int], cfg: DataConfig, geometry: CropGeometry,
               stage: int, seed: int, epoch: int, decoder: FrameDecoder) -> dict[str, np.ndarray]:
    specs = [make_sample_spec(index, i, cfg, geometry, stage, seed, epoch) for i in sample_indices]
    frames = decoder.decode(specs)
    batch = empty_batch(len(specs), geometry)
    for row, spec in enumerate(specs):
        fill_sample(batch, row, spec, frames, geometry)  # crops land in the batch arrays: no stacking copy
    return batch


def build_training_stream(manifest_uris: list[str] | FrameIndex, data_cfg: DataConfig, model_cfg: ModelConfig,
                          stage: int, epoch: int, seed: int, storage_cfg: StorageConfig | None = None):
    """One epoch of training batches as a ray.data.Dataset (call again with the next epoch number).

    `manifest_uris`: manifest files or ingest folders (local or s3://), or a FrameIndex already loaded
    with `load_frame_index` (saves re-reading the manifests every epoch)."""
    import ray

    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    if stage == 2 and model_cfg.num_templates == 1:
        raise ValueError("stage 2 trains the score head, which only STARK-ST (model.variant=ST) has")
    storage_cfg = (storage_cfg or StorageConfig()).resolved()
    index = manifest_uris if isinstance(manifest_uris, FrameIndex) else \
        load_frame_index(list(manifest_uris), data_cfg, model_cfg.num_templates, storage_cfg)
    geometry = crop_geometry(model_cfg)
    # sample numbers as in-memory blocks: no read tasks, which would compete with the pool for CPUs
    n = data_cfg.samples_per_epoch
    per_block = data_cfg.decode_batch_size * BATCHES_PER_BLOCK
    blocks = [pa.table({"id": np.arange(start, min(start + per_block, n), dtype=np.int64)})
              for start in range(0, n, per_block)]
    return decode_in_actor_pool(ray.data.from_arrow(blocks), SampleMaker, data_cfg, dict(
        index_ref=[ray.put(index)], data_cfg=data_cfg, geometry=geometry, stage=stage, seed=seed, epoch=epoch,
        storage=storage_cfg))


def decode_in_actor_pool(sample_numbers, maker: type, data_cfg: DataConfig, maker_kwargs: dict):
    """Sample numbers -> training batches, through a pool of `data.decode_actors` actors of `maker`
    (one CPU each), in input order: the same sample numbers give the same batches in the same order."""
    import ray

    from .pacing import PaceIdleScheduling  # imports Ray

    ds = sample_numbers.map_batches(
        maker,
        batch_size=data_cfg.decode_batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=data_cfg.decode_actors),
        num_cpus=1,
        fn_constructor_kwargs=maker_kwargs,
    )
    ds.context.execution_options.preserve_order = True
    # the executor would spin a core whenever the stream is full and training is busy (see pacing.py)
    ds.context.custom_execution_callback_classes = [*ds.context.custom_execution_callback_classes,
                                                    PaceIdleScheduling]
    return ds
