"""Sample crops are cut exactly as the tracker cuts them, and their targets are where the object is; the
photometric half (grayscale, brightness, normalisation) runs on the training device, as the official
processing would have done it on the crop."""
from __future__ import annotations

import math

import numpy as np
import torch

from stark.platform.crop import crop_around_box
from stark.platform.data.config import DataConfig
from stark.platform.data.device_images import network_images
from stark.platform.data.processing import (IMAGENET_MEAN, IMAGENET_STD, clip_box_to_crop, crop_target, empty_batch,
                                            fill_sample, process_sample)
from stark.platform.data.sampling import CropGeometry, CropSpec, SampleSpec, make_sample_spec
from stark.platform.ingest.synthetic import make_sequence

from tests.support.data_fixtures import ST, three_sequence_index


def crop_spec(box, crop_box=None, flip=False, brightness=1.0) -> CropSpec:
    box = np.asarray(box, dtype=np.float64)
    return CropSpec(0, 0, box if crop_box is None else np.asarray(crop_box, dtype=np.float64), box, flip, brightness)


def to_pixels(image: np.ndarray) -> np.ndarray:
    """Undo the ImageNet normalisation: [3, S, S] -> [S, S, 3] in 0..255."""
    return (image.transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN) * 255.0


def on_device(frame: np.ndarray, spec: SampleSpec, geometry: CropGeometry) -> dict[str, np.ndarray]:
    """One sample through both halves: uint8 crops from the frame, then `network_images` (float input)."""
    batch = empty_batch(1, geometry)
    fill_sample(batch, 0, spec, {(0, 0): frame}, geometry)
    return {k: v[0].numpy() for k, v in network_images({k: torch.from_numpy(v) for k, v in batch.items()}).items()}


def test_crop_then_map_back_returns_the_original_box():
    rng = np.random.default_rng(0)
    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    for _ in range(200):
        box = np.array([rng.uniform(-50, 600), rng.uniform(-50, 450), rng.uniform(5, 300), rng.uniform(5, 300)])
        crop_box = box + rng.uniform(-20, 20, size=4) * np.array([1, 1, 0, 0])
        _, _, box_in_crop = crop_target(frame, crop_spec(box, crop_box), 5.0, 320)
        _, _, window = crop_around_box(frame, crop_box, 5.0, 320)
        np.testing.assert_allclose(window.box_from_crop(box_in_crop * 320), box, atol=1e-6)


def test_a_crop_matches_the_frame_pixels_it_was_cut_from():
    seq = make_sequence("s", 1, (320, 240), np.random.default_rng(1), with_absence=False)
    box = np.array([100.0, 80.0, 64.0, 64.0])  # crop side ceil(64 * 2) = 128 -> 128: no resampling
    image, mask, _ = crop_target(seq.frames[0], crop_spec(box), 2.0, 128)
    assert image.dtype == np.uint8 and image.shape == (3, 128, 128)
    np.testing.assert_array_equal(image.transpose(1, 2, 0), seq.frames[0][48:176, 68:196])
    assert not mask.any()


def test_training_crops_are_the_trackers_crops():
    """The tracker cuts with `crop_around_box` at test time; training cuts the same pixels and mask."""
    seq = make_sequence("s", 1, (320, 240), np.random.default_rng(3), with_absence=False)
    for box in ([30.0, 40.0, 50.0, 30.0], [250.0, 180.0, 60.0, 50.0], [-10.0, 100.0, 40.0, 40.0]):
        image, mask, _ = crop_target(seq.frames[0], crop_spec(box), 5.0, 200)
        tracker_crop, tracker_mask, _ = crop_around_box(seq.frames[0], box, 5.0, 200)
        np.testing.assert_array_equal(image.transpose(1, 2, 0), tracker_crop)
        np.testing.assert_array_equal(mask, tracker_mask)


def test_padding_is_zero_and_masked_where_the_crop_leaves_the_frame():
    frame = np.full((100, 100, 3), 200, dtype=np.uint8)
    image, mask, _ = crop_target(frame, crop_spec([0.0, 0.0, 20.0, 20.0]), 5.0, 100)
    pixels = image.transpose(1, 2, 0).astype(np.float64)
    # the box sits at the frame corner: the crop's top-left 40 px are outside the frame
    assert mask[:30, :30].all() and not mask[60:, 60:].any()
    np.testing.assert_allclose(pixels[:30, :30], 0.0, atol=1e-3)
    np.testing.assert_allclose(pixels[60:, 60:], 200.0, atol=1e-3)


def test_a_flipped_crop_mirrors_pixels_mask_and_box():
    seq = make_sequence("s", 1, (320, 240), np.random.default_rng(2), with_absence=False)
    box = [30.0, 40.0, 50.0, 30.0]
    plain = crop_target(seq.frames[0], crop_spec(box), 5.0, 200)
    flipped = crop_target(seq.frames[0], crop_spec(box, flip=True), 5.0, 200)
    np.testing.assert_allclose(flipped[0], plain[0][:, :, ::-1])
    np.testing.assert_array_equal(flipped[1], plain[1][:, ::-1])
    np.testing.assert_allclose(flipped[2], [1 - plain[2][0] - plain[2][2], *plain[2][1:]])


GEOMETRY_64 = CropGeometry(64, 64, 2.0, 2.0, num_templates=1)


def test_brightness_scales_and_saturates_like_the_official_jitter_on_the_device():
    frame = np.full((64, 64, 3), 100, dtype=np.uint8)
    frame[:, 32:] = 250
    crop = crop_spec([16.0, 16.0, 32.0, 32.0], brightness=1.2)
    sample = on_device(frame, SampleSpec(0, 1.0, [crop], crop, grayscale=False), GEOMETRY_64)
    pixels = to_pixels(sample["search"])
    np.testing.assert_allclose(pixels[10, 5], 120.0, atol=1e-3)
    np.testing.assert_allclose(pixels[10, 60], 255.0, atol=1e-3)  # 250 * 1.2 clamps at 1.0
    np.testing.assert_allclose(to_pixels(sample["template"][0])[10, 5], 120.0, atol=1e-3)


def test_grayscale_on_the_device_is_the_rounded_itu_601_luma_of_every_crop():
    frame = np.zeros((64, 64, 3), dtype=np.uint8)
    frame[...] = (200, 100, 50)
    crop = crop_spec([16.0, 16.0, 32.0, 32.0])
    sample = on_device(frame, SampleSpec(0, 1.0, [crop], crop, grayscale=True), GEOMETRY_64)
    luma = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)  # 124
    for image in (sample["search"], sample["template"][0]):
        np.testing.assert_allclose(to_pixels(image)[20, 20], [luma] * 3, atol=1e-3)


def test_float_batches_made_by_hand_reach_the_network_unchanged():
    batch = {"search": torch.rand(2, 3, 8, 8), "template": torch.rand(2, 1, 3, 4, 4)}
    assert network_images(batch) is batch


def test_a_samples_target_box_lies_inside_the_search_crop():
    index = three_sequence_index()
    frames_of = {}
    for i in range(300):
        spec = make_sample_spec(index, i, DataConfig(), ST, stage=1, seed=0, epoch=0)
        for c in (*spec.templates, spec.search):
            frames_of.setdefault((c.sequence, c.frame), np.zeros((480, 640, 3), dtype=np.uint8))
        box = process_sample(spec, frames_of, ST)["search_box"]
        cx, cy, w, h = box
        assert 0 <= cx - w / 2 and cx + w / 2 <= 1 and 0 <= cy - h / 2 and cy + h / 2 <= 1
        assert w > 0 and h > 0


def test_the_target_is_clipped_to_the_crop_only_where_it_leaves_it():
    np.testing.assert_allclose(clip_box_to_crop(np.array([0.2, 0.3, 0.4, 0.2])), [0.4, 0.4, 0.4, 0.2])
    np.testing.assert_allclose(clip_box_to_crop(np.array([-0.2, 0.9, 0.4, 0.2])), [0.1, 0.95, 0.2, 0.1])


def test_a_processed_sample_has_the_batch_format_shapes():
    geometry = CropGeometry(64, 128, 2.0, 5.0, num_templates=2)
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    spec = SampleSpec(5, 1.0, [crop_spec([40, 40, 20, 20]), crop_spec([42, 40, 20, 20])],
                      crop_spec([44, 41, 20, 20]), grayscale=True)
    sample = process_sample(spec, {(0, 0): frame}, geometry)
    assert sample["template"].shape == (2, 3, 64, 64) and sample["template"].dtype == np.uint8
    assert sample["template_mask"].shape == (2, 64, 64) and sample["template_mask"].dtype == bool
    assert sample["search"].shape == (3, 128, 128) and sample["search_mask"].shape == (128, 128)
    assert sample["search_box"].shape == (4,) and sample["label"] == 1.0 and sample["sample_index"] == 5
    assert sample["brightness"].shape == (3,) and sample["grayscale"]
    assert math.isclose(float(sample["search_box"][2]), 20 * 128 / math.ceil(20 * 5) / 128, rel_tol=1e-6)
