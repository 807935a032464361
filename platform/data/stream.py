"""The Ray Data training stream: manifests -> windows of clips -> sample specs -> crops, as batches.

    ds = build_training_stream(["s3://bucket/got10k"], cfg.data, cfg.model, stage=1, epoch=0, seed=42,
                               storage_cfg=cfg.storage)
    for batch in ds.iter_torch_batches(batch_size=16):     # or ray.train.get_dataset_shard("train")
        images = device_images.network_images(batch)      # train_step does this on the training device

Batch format (dict of tensors; B = batch, T = model.num_templates, z = template, x = search):
    template       [B, T, 3, Hz, Wz] uint8    RGB crops; T=0 the initial template, T=1 the dynamic one
    template_mask  [B, T, Hz, Wz]    bool     True where the crop is zero padding (outside the frame)
    search         [B, 3, Hx, Wx]    uint8    RGB crop
    search_mask    [B, Hx, Wx]       bool     True = padding
    search_box     [B, 4]            float32  target cxcywh normalised to the search crop, clipped to [0, 1]
    label          [B]               float32  1 = the target is in the search crop (stage 1: always 1)
    brightness     [B, T + 1]        float32  each crop's brightness factor (templates, then search)
    grayscale      [B]               bool     the sample is turned gray (every crop)
    sequence       [B]               int64    FrameIndex sequence of the template (batch diversity)
    sample_index   [B]               int64    which sample of the epoch (same index, same sample)
Flips are already in the pixels; grayscale, brightness and ImageNet normalisation are applied on the
training device by `device_images.network_images` (uint8 crops: 4x fewer bytes through the object store).

How it runs: sample numbers 0..samples_per_epoch-1, in blocks of one unit (`windows.py`: U =
samples_per_window x windows_in_flight samples cut from windows_in_flight clip windows), feed at most
`data.decode_actors` Ray tasks at a time (`map_batches`, TaskPoolStrategy, one CPU each; Ray reuses
their worker processes across tasks and streams, see `decode_in_worker_pool`). A task draws the unit,
decodes each window once in order straight into crops (`decode.py`; S3 clips fetched in one GET each)
and yields the unit's samples as one batch (see `make_batches`). Memory per decode worker is bounded by
one unit of crops, one decoded frame and `data.open_clip_cache` compressed clips (`unit_bytes`); a
worker keeps its unit buffer while Ray keeps the process. Samples are seeded by (seed, epoch, unit)
and the order is kept, so an epoch is reproducible.
"""
from __future__ import annotations

import gc

import numpy as np
import pyarrow as pa

from ...model.config import ModelConfig
from ..storage import StorageConfig
from .config import DataConfig
from .decode import UnitDecoder
from .frame_index import FrameIndex, load_frame_index
from .processing import empty_batch
from .sampling import CropGeometry
from .windows import draw_unit, unit_positions


def crop_geometry(model_cfg: ModelConfig) -> CropGeometry:
    return CropGeometry(model_cfg.template_size, model_cfg.search_size, model_cfg.template_factor,
                        model_cfg.search_factor, model_cfg.num_templates, model_cfg.feat_stride)


def sample_bytes(geometry: CropGeometry) -> int:
    """Bytes of one sample in the batch format (uint8 crops and bool masks dominate)."""
    return sum(v.nbytes for v in empty_batch(1, geometry).values())


def unit_bytes(data_cfg: DataConfig, geometry: CropGeometry) -> int:
    """The crops one actor holds while it cuts a unit: the bound on its batch memory."""
    return data_cfg.samples_per_unit * sample_bytes(geometry)


class BatchMaker:
    """What a decode worker holds for one stream (the frame index, the crop geometry, a unit decoder, a
    unit buffer), and the batches it makes; the subclasses below differ only in how they read their
    input rows."""

    def __init__(self, index_ref: list, data_cfg: DataConfig, geometry: CropGeometry, stage: int, seed: int,
                 storage: StorageConfig | None, buffer: dict[str, np.ndarray] | None = None):
        import ray

        self.index = ray.get(index_ref[0])
        self.cfg, self.geometry, self.stage, self.seed = data_cfg, geometry, stage, seed
        self.decoder = UnitDecoder(self.index, storage, data_cfg.open_clip_cache)
        # one unit's crops (an `empty_batch` of samples_per_unit), reused by every call: a fresh buffer
        # would be a few hundred MB to fault in per unit (a second or more of kernel time where huge pages
        # need compacting). A call's batches are serialised into the object store by the time it returns,
        # so the next call may overwrite them; within a call, only its first unit is cut into the buffer.
        self.buffer = buffer if buffer is not None else empty_batch(data_cfg.samples_per_unit, geometry)

    def make(self, sample_indices: list[int], epoch: int, first_in_call: bool = True):
        """Yield batches (one per unit) of these samples of `epoch`, in order.
        `first_in_call`: no batch of this task is still pending, so the buffer is free."""
        yield from make_batches(self.index, sample_indices, self.cfg, self.geometry, self.stage, self.seed, epoch,
                                self.decoder, self.buffer if first_in_call else None)


class SampleMaker(BatchMaker):
    """The maker of one epoch: {'id': [N]} sample numbers -> training batches (see the module docstring)."""

    def __init__(self, index_ref: list, data_cfg: DataConfig, geometry: CropGeometry, stage: int, seed: int,
                 epoch: int, storage: StorageConfig | None, buffer: dict[str, np.ndarray] | None = None):
        super().__init__(index_ref, data_cfg, geometry, stage, seed, storage, buffer)
        self.epoch = epoch

    def __call__(self, batch: dict[str, np.ndarray]):
        yield from self.make([int(i) for i in batch["id"]], self.epoch)


def make_batches(index: FrameIndex, sample_indices: list[int], cfg: DataConfig, geometry: CropGeometry,
                 stage: int, seed: int, epoch: int, decoder: UnitDecoder, buffer: dict[str, np.ndarray] | None = None):
    """Samples of one epoch (in increasing order) -> one batch per unit they fall in: each unit is drawn
    once and decoded once, and only the asked-for samples are cut. With `buffer` (an `empty_batch` of at
    least a unit), the first unit's crops are cut into it and its batch is a view of it (the caller keeps
    it untouched while it is in use); later units get fresh arrays.

    One batch per unit, not many small ones: Ray Data joins a call's small batches into one block of many
    chunks, and the consumer's batcher copies such a block whole to cut training batches from it
    (measured: the driver's CPU for 1536 ST50 samples 0.6-0.9 s -> 0.4-0.6 s). A unit is complete before
    its first sample can go anyway (its samples interleave its windows); Ray Data slices it into blocks
    of `DataContext.target_max_block_size` without copying."""
    for number, positions in unit_positions(sample_indices, cfg).items():
        unit = draw_unit(index, epoch, number, cfg, geometry, stage, seed)
        specs = [unit.samples[p] for p in positions]
        if buffer is None or len(specs) > len(buffer["label"]):
            batch = empty_batch(len(specs), geometry)
        else:
            batch = {key: value[:len(specs)] for key, value in buffer.items()}
        buffer = None
        decoder.fill(batch, specs, geometry)  # every window of the unit decoded once, crops into the batch
        yield batch


def make_batch(index: FrameIndex, sample_indices: list[int], cfg: DataConfig, geometry: CropGeometry,
               stage: int, seed: int, epoch: int, decoder: UnitDecoder) -> dict[str, np.ndarray]:
    """The samples as one batch (in-process training and tests)."""
    parts = list(make_batches(index, sample_indices, cfg, geometry, stage, seed, epoch, decoder))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


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
    # sample numbers as in-memory blocks, described here: no read task, nor the metadata task
    # `from_arrow` runs per block, each of which would start a Ray worker process (~1.2 CPU-s) to compete
    # with the pool for CPUs
    n, per_block = data_cfg.samples_per_epoch, data_cfg.samples_per_unit  # one block per unit
    blocks = [pa.table({"id": np.arange(start, min(start + per_block, n), dtype=np.int64)})
              for start in range(0, n, per_block)]
    return decode_in_worker_pool(ray.data.from_blocks(blocks), SampleMaker, data_cfg, dict(
        index_ref=[ray.put(index)], data_cfg=data_cfg, geometry=geometry, stage=stage, seed=seed, epoch=epoch,
        storage=storage_cfg))


def decode_in_worker_pool(sample_numbers, maker: type, data_cfg: DataConfig, maker_kwargs: dict):
    """Sample numbers -> training batches, through at most `data.decode_actors` Ray tasks at a time (one
    CPU each), in input order: the same sample numbers give the same batches in the same order. Each
    input block (one unit's sample numbers) is one task, run by `make_in_worker` with the
    `maker(**maker_kwargs)` its worker process keeps.

    Tasks, not an actor pool: Ray Data starts a pool's actors afresh for every stream, and a fresh decode
    process costs ~2.5 CPU-s before its first batch is out (a Ray worker importing Ray, Ray Data and
    pandas; then the first touches of its unit buffer and of the object store's pages). Ray keeps a
    task's worker process and gives it the next task of the same kind, so a job pays that once per
    worker, not once per stream (every stage and epoch builds one) and the first batch of a later stream
    is out in ~1.5 s (the unit it waits for) instead of 3-5 s. Measured, 640x480, ST50 crops, 1536
    samples on a warm Ray instance, with the other changes of that commit: 1 worker 176 -> 302-352
    samples per CPU-s, 2 workers 140-183 -> 328-345 (docs/data_stream.md has the benchmark's runs)."""
    import ray

    from .pacing import PaceIdleScheduling  # imports Ray

    ds = sample_numbers.map_batches(
        make_in_worker,
        batch_size=None,  # whole blocks: a unit is decoded by one task
        batch_format="numpy",
        compute=ray.data.TaskPoolStrategy(size=data_cfg.decode_actors),
        num_cpus=1,
        fn_kwargs=dict(maker=maker, maker_kwargs=maker_kwargs),
        # a worker touches its unit buffer (a few hundred MB) once; backing it with transparent huge pages
        # (NumPy's default) made the kernel compact memory for 1.4-1.7 CPU-s per fresh process on a 2-core
        # VM, 4 KiB pages cost 0.6 s (measured in-process, 640x480, ST50 crops). Ray reuses a worker only
        # for tasks of the same runtime env, so the decode workers are a pool of their own.
        runtime_env={"env_vars": {"NUMPY_MADVISE_HUGEPAGE": "0"}},
    )
    ds.context.execution_options.preserve_order = True
    # the executor would spin a core whenever the stream is full and training is busy (see pacing.py)
    ds.context.custom_execution_callback_classes = [*ds.context.custom_execution_callback_classes,
                                                    PaceIdleScheduling]
    return ds


# What a decode worker process keeps between its tasks: the last stream's maker and the unit buffer (see
# `make_in_worker`). Module state on purpose: it lives exactly as long as the process Ray reuses.
_worker_state: dict = {"maker_key": None, "maker": None, "buffer_key": None, "buffer": None, "frozen": False}


def make_in_worker(batch: dict[str, np.ndarray], maker: type, maker_kwargs: dict):
    """The map_batches UDF (a Ray task): one input block -> its training batches, made by this process's
    `maker(**maker_kwargs)`. The maker is built on the first task of a stream and kept for the next
    ones; the unit buffer outlives it and serves the next stream of the same crop geometry."""
    maker_key = (maker.__module__, maker.__qualname__, repr(maker_kwargs))  # the index's ObjectRef included
    if _worker_state["maker_key"] != maker_key:
        _worker_state["maker"] = _worker_state["maker_key"] = None  # let the last stream's decoder go first
        data_cfg, geometry = maker_kwargs["data_cfg"], maker_kwargs["geometry"]
        buffer_key = (data_cfg.samples_per_unit, repr(geometry))
        if _worker_state["buffer_key"] != buffer_key:
            _worker_state["buffer"] = None
            _worker_state["buffer"] = empty_batch(data_cfg.samples_per_unit, geometry)
            _worker_state["buffer_key"] = buffer_key
        _worker_state["maker"] = maker(**maker_kwargs, buffer=_worker_state["buffer"])
        _worker_state["maker_key"] = maker_key
        if not _worker_state["frozen"]:
            # Python's full collections walk every object alive, most of them the modules Ray, Ray Data
            # and pandas imported (~145k objects): ~90 ms each, two per 1536 samples of a fresh process.
            # Frozen, they are skipped; what the worker makes from here on is still collected.
            gc.freeze()
            _worker_state["frozen"] = True
    yield from _worker_state["maker"](batch)
