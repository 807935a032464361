"""The Ray Data training stream, reading clips back from a real S3 endpoint (moto server process) on a
real local Ray: batches in the documented format, matching crops of the source frames, reproducible, each
clip fetched once per unit of windows."""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest

from stark.platform.experiment import load_config
from stark.platform.ingest.config import IngestConfig
from stark.platform.data.decode import UnitDecoder
from stark.platform.data.stream import build_training_stream, crop_geometry, make_batch, make_batches
from stark.platform.data.frame_index import load_frame_index
from stark.platform.ingest.run import ingest
from stark.platform.data.processing import empty_batch, process_sample
from stark.platform.data.windows import draw_unit, window_sample_spec
from stark.platform.ingest.sources import read_image
from stark.platform.ingest.synthetic import write_demo_dataset

pytestmark = pytest.mark.slow
SAMPLES = 48


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def dataset(ray_local, s3_endpoint, tmp_path_factory):
    """A generated GOT-10k tree ingested to s3:// (clips of 16 frames: sequences span several clips)."""
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="stream")
    src = tmp_path_factory.mktemp("got10k")
    write_demo_dataset(str(src), "got10k", num_sequences=4, num_frames=40, size=(192, 144), num_test=0, seed=21)
    report = ingest(str(src), "s3://stream/got10k", IngestConfig(max_clip_frames=16), out=io.StringIO())
    return report.manifest_uri


@pytest.fixture(scope="module")
def cfg():
    # units of 3 windows x 8 samples: the epoch's 48 samples are 2 units, one per decode worker
    return load_config("stark_tiny", [f"data.samples_per_epoch={SAMPLES}", "data.decode_actors=2",
                                      "data.samples_per_window=8", "data.windows_in_flight=3"])


def collect(ds) -> dict[str, np.ndarray]:
    batches = list(ds.iter_torch_batches(batch_size=16))
    return {key: np.concatenate([b[key].numpy() for b in batches]) for key in batches[0]}


@pytest.fixture(scope="module")
def stage_one(dataset, cfg):
    return collect(build_training_stream([dataset], cfg.data, cfg.model, stage=1, epoch=0, seed=5))


def test_batches_have_the_documented_format(stage_one, cfg):
    m = cfg.model
    shapes = {key: value.shape for key, value in stage_one.items()}
    assert shapes == {"template": (SAMPLES, 2, 3, m.template_size, m.template_size),
                      "template_mask": (SAMPLES, 2, m.template_size, m.template_size),
                      "search": (SAMPLES, 3, m.search_size, m.search_size),
                      "search_mask": (SAMPLES, m.search_size, m.search_size),
                      "search_box": (SAMPLES, 4), "label": (SAMPLES,), "brightness": (SAMPLES, 3),
                      "grayscale": (SAMPLES,), "sequence": (SAMPLES,), "sample_index": (SAMPLES,)}
    assert stage_one["template"].dtype == np.uint8 and stage_one["search"].dtype == np.uint8
    assert stage_one["search_mask"].dtype == bool
    np.testing.assert_array_equal(stage_one["sample_index"], np.arange(SAMPLES))  # order is kept


def test_stage_one_stream_has_only_present_targets_inside_the_crop(stage_one):
    assert (stage_one["label"] == 1.0).all()
    cx, cy, w, h = stage_one["search_box"].T
    assert (w > 0).all() and (h > 0).all()
    assert (cx - w / 2 >= 0).all() and (cx + w / 2 <= 1).all() and (cy - h / 2 >= 0).all() and (cy + h / 2 <= 1).all()


def test_streamed_samples_match_crops_cut_from_the_source_jpegs(stage_one, dataset, cfg):
    """Decoded-from-S3 crops vs the same crops cut from the original JPEG files: same samples, PSNR >= 35 dB."""
    from stark.platform.ingest.manifest import read_records

    index = load_frame_index([dataset], cfg.data, cfg.model.num_templates)
    geometry = crop_geometry(cfg.model)
    folders = {f"{r.dataset}/{r.split}/{r.sequence_id}": r.source_path for r in read_records(dataset)}
    for i in range(0, SAMPLES, 6):
        spec = window_sample_spec(index, i, cfg.data, geometry, stage=1, seed=5, epoch=0)
        frames = {(c.sequence, c.frame): read_image(f"{folders[index.sequence_names[c.sequence]]}/"
                                                    f"{c.frame + 1:08d}.jpg")
                  for c in (*spec.templates, spec.search)}
        from_jpegs = process_sample(spec, frames, geometry)
        for key in ("template", "search"):
            mse = np.mean((stage_one[key][i].astype(np.float64) - from_jpegs[key].astype(np.float64)) ** 2)
            assert 10 * np.log10(255.0 ** 2 / max(mse, 1e-9)) >= 35.0
        for key in ("search_box", "brightness"):
            np.testing.assert_allclose(stage_one[key][i], from_jpegs[key], atol=1e-6)
        for key in ("search_mask", "template_mask", "grayscale", "sequence"):
            np.testing.assert_array_equal(stage_one[key][i], from_jpegs[key])


def test_stage_two_stream_labels_are_the_specs_labels_with_negatives_in_it(dataset, cfg):
    batch = collect(build_training_stream([dataset], cfg.data, cfg.model, stage=2, epoch=0, seed=5))
    index = load_frame_index([dataset], cfg.data, cfg.model.num_templates)
    geometry = crop_geometry(cfg.model)
    expected = [window_sample_spec(index, i, cfg.data, geometry, 2, 5, 0).label for i in range(SAMPLES)]
    np.testing.assert_array_equal(batch["label"], expected)
    assert 0 < batch["label"].mean() < 1  # the share itself is specified on 3000 specs in test_sampling


def test_an_epoch_is_reproducible_and_the_next_epoch_differs(stage_one, dataset, cfg):
    again = collect(build_training_stream([dataset], cfg.data, cfg.model, stage=1, epoch=0, seed=5))
    for key in stage_one:
        np.testing.assert_array_equal(again[key], stage_one[key])
    index = load_frame_index([dataset], cfg.data, cfg.model.num_templates)  # a preloaded index works too
    next_epoch = collect(build_training_stream(index, cfg.data, cfg.model, stage=1, epoch=1, seed=5))
    assert not np.array_equal(next_epoch["search"], stage_one["search"])


def test_a_unit_fetches_each_clip_it_needs_once_from_s3(dataset, cfg, ray_local):
    """One GET per clip a unit's windows touch (not one per frame), and no frame decoded twice."""
    index = load_frame_index([dataset], cfg.data, cfg.model.num_templates)
    geometry = crop_geometry(cfg.model)
    unit = draw_unit(index, 0, 0, cfg.data, geometry, 1, 5)
    needed = {index.clip_of(c.sequence, c.frame)[0] for s in unit.samples for c in (*s.templates, s.search)}
    decoder = UnitDecoder(index, None, cache_size=0)
    decoder.fill(empty_batch(len(unit.samples), geometry), unit.samples, geometry)
    crops = 3 * len(unit.samples)
    assert decoder.stats.clips_fetched == len(needed) < crops
    assert decoder.stats.bytes_fetched <= sum(len(_clip_bytes(uri)) for uri in needed)
    assert decoder.stats.crops_cut == crops and decoder.stats.frames_decoded <= 16 * len(needed)


def _clip_bytes(uri: str) -> bytes:
    from stark.platform.storage import read_bytes

    return read_bytes(uri)


def test_a_resumed_stream_cuts_the_rest_of_a_unit_as_the_whole_unit_has_it(dataset, cfg, ray_local):
    index = load_frame_index([dataset], cfg.data, cfg.model.num_templates)
    geometry = crop_geometry(cfg.model)
    whole = make_batch(index, list(range(24)), cfg.data, geometry, 1, 5, 0, UnitDecoder(index, None, 0))
    rest = make_batch(index, list(range(10, 24)), cfg.data, geometry, 1, 5, 0, UnitDecoder(index, None, 0))
    for key in whole:
        np.testing.assert_array_equal(rest[key], whole[key][10:24])


def test_each_unit_leaves_a_decode_worker_as_one_batch(dataset, cfg, ray_local):
    """One batch per unit (24 samples here), not many small ones: Ray Data would join those into a block of
    many chunks, which the consumer copies whole before it can cut training batches from it."""
    index = load_frame_index([dataset], cfg.data, cfg.model.num_templates)
    geometry = crop_geometry(cfg.model)
    batches = list(make_batches(index, list(range(10, 40)), cfg.data, geometry, 1, 5, 0, UnitDecoder(index, None, 0)))
    assert [len(b["label"]) for b in batches] == [14, 16]  # the rest of unit 0, then unit 1 up to sample 39


@pytest.fixture
def fresh_worker_state():
    """`make_in_worker`'s per-process state as a fresh decode worker has it; put back afterwards (this
    process is pytest's, and a worker freezes the objects it finds)."""
    import gc

    from stark.platform.data import stream

    saved = dict(stream._worker_state)
    stream._worker_state.update(maker_key=None, maker=None, buffer_key=None, buffer=None, frozen=False)
    yield
    stream._worker_state.update(saved)
    gc.unfreeze()


def test_a_decode_worker_keeps_its_maker_within_a_stream_and_its_unit_buffer_across_streams(
        dataset, cfg, ray_local, fresh_worker_state):
    """Ray reuses a task's worker process: what it built for a stream (the frame index, the decoder) serves
    the stream's next tasks, and its unit buffer (hundreds of MB, costly to fault in) the next stream's."""
    import ray

    from stark.platform.data import stream
    from stark.platform.data.stream import SampleMaker, make_in_worker

    index = load_frame_index([dataset], cfg.data, cfg.model.num_templates)
    kwargs = dict(index_ref=[ray.put(index)], data_cfg=cfg.data, geometry=crop_geometry(cfg.model), stage=1,
                  seed=5, epoch=0, storage=None)
    first = list(make_in_worker({"id": np.arange(0, 24)}, SampleMaker, kwargs))
    maker = stream._worker_state["maker"]
    list(make_in_worker({"id": np.arange(24, 48)}, SampleMaker, kwargs))
    assert stream._worker_state["maker"] is maker  # same stream: kept
    buffer = stream._worker_state["buffer"]

    next_stream = dict(kwargs, index_ref=[ray.put(index)], epoch=1)
    second = list(make_in_worker({"id": np.arange(0, 24)}, SampleMaker, next_stream))
    assert stream._worker_state["maker"] is not maker  # a new stream: a new maker ...
    assert all(stream._worker_state["buffer"][k] is buffer[k] for k in buffer)  # ... on the same buffer
    assert np.shares_memory(second[0]["search"], buffer["search"])
    assert first[0]["search"].shape == second[0]["search"].shape == (24, 3, 128, 128)

    other_geometry = dict(next_stream, geometry=dataclasses.replace(kwargs["geometry"], search_size=64))
    list(make_in_worker({"id": np.arange(0, 24)}, SampleMaker, other_geometry))
    assert stream._worker_state["buffer"]["search"].shape[-1] == 64  # other crops: a buffer of their size


def test_stage_two_needs_the_st_variant(dataset, cfg):
    import dataclasses

    stark_s = dataclasses.replace(cfg.model, variant="S")
    with pytest.raises(ValueError, match="only STARK-ST"):
        build_training_stream([dataset], cfg.data, stark_s, stage=2, epoch=0, seed=0)


def test_every_stream_paces_the_executor_so_a_full_stream_does_not_spin_a_core(dataset, cfg):
    from stark.platform.data.pacing import PaceIdleScheduling

    ds = build_training_stream([dataset], cfg.data, cfg.model, stage=1, epoch=0, seed=5)
    assert PaceIdleScheduling in ds.context.execution_callback_classes


def test_the_pacing_callback_rests_only_after_a_step_that_had_nothing_to_wait_on():
    import time

    from stark.platform.data.pacing import PaceIdleScheduling

    pacing = PaceIdleScheduling()
    start = time.perf_counter()
    pacing.on_execution_step(None)  # an instant step: rest
    assert time.perf_counter() - start >= PaceIdleScheduling.PAUSE_S
    time.sleep(0.05)  # a step that waited on a task (ray.wait) takes this long
    start = time.perf_counter()
    pacing.on_execution_step(None)
    assert time.perf_counter() - start < PaceIdleScheduling.PAUSE_S
