"""Sample crops are cut exactly as the tracker cuts them, and their targets are where the object is."""
from __future__ import annotations

import math

import numpy as np

from stark.platform.crop import crop_around_box
from stark.platform.data.config import DataConfig
from stark.platform.data.processing import IMAGENET_MEAN, IMAGENET_STD, clip_box_to_crop, crop_target, process_sample
from stark.platform.data.sampling import CropGeometry, CropSpec, SampleSpec, make_sample_spec
from stark.platform.ingest.synthetic import make_sequence

from tests.support.data_fixtures import ST, three_sequence_index


def crop_spec(box, crop_box=None, flip=False, brightness=1.0) -> CropSpec:
    box = np.asarray(box, dtype=np.float64)
    return CropSpec(0, 0, box if crop_box is None else np.asarray(crop_box, dtype=np.float64), box, flip, brightness)


def to_pixels(image: np.ndarray) -> np.ndarray:
    """Undo the ImageNet normalisation: [3, S, S] -> [S, S, 3] in 0..255."""
    return (image.transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN) * 255.0


def test_crop_then_map_back_returns_the_original_box():
    rng = np.random.default_rng(0)
    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    for _ in range(200):
        box = np.array([rng.uniform(-50, 600), rng.uniform(-50, 450), rng.uniform(5, 300), rng.uniform(5, 300)])
        crop_box = box + rng.uniform(-20, 20, size=4) * np.array([1, 1, 0, 0])
        _, _, box_in_crop = crop_target(frame, crop_spec(box, crop_box), 5.0, 320, grayscale=False)
        _, _, window = crop_around_box(frame, crop_box, 5.0, 320)
        np.testing.assert_allclose(window.box_from_crop(box_in_crop * 320), box, atol=1e-6)


def test_a_crop_matches_the_frame_pixels_it_was_cut_from():
    seq = make_sequence("s", 1, (320, 240), np.random.default_rng(1), with_absence=False)
    box = np.array([100.0, 80.0, 64.0, 64.0])  # crop side ceil(64 * 2) = 128 -> 128: no resampling
    image, mask, _ = crop_target(seq.frames[0], crop_spec(box), 2.0, 128, grayscale=False)
    np.testing.assert_allclose(to_pixels(image), seq.frames[0][48:176, 68:196], atol=1e-3)
    assert not mask.any()


def test_padding_is_zero_and_masked_where_the_crop_leaves_the_frame():
    frame = np.full((100, 100, 3), 200, dtype=np.uint8)
    image, mask, _ = crop_target(frame, crop_spec([0.0, 0.0, 20.0, 20.0]), 5.0, 100, grayscale=False)
    pixels = to_pixels(image)
    # the box sits at the frame corner: the crop's top-left 40 px are outside the frame
    assert mask[:30, :30].all() and not mask[60:, 60:].any()
    np.testing.assert_allclose(pixels[:30, :30], 0.0, atol=1e-3)
    np.testing.assert_allclose(pixels[60:, 60:], 200.0, atol=1e-3)


def test_a_flipped_crop_mirrors_pixels_mask_and_box():
    seq = make_sequence("s", 1, (320, 240), np.random.default_rng(2), with_absence=False)
    box = [30.0, 40.0, 50.0, 30.0]
    plain = crop_target(seq.frames[0], crop_spec(box), 5.0, 200, grayscale=False)
    flipped = crop_target(seq.frames[0], crop_spec(box, flip=True), 5.0, 200, grayscale=False)
    np.testing.assert_allclose(flipped[0], plain[0][:, :, ::-1])
    np.testing.assert_array_equal(flipped[1], plain[1][:, ::-1])
    np.testing.assert_allclose(flipped[2], [1 - plain[2][0] - plain[2][2], *plain[2][1:]])


def test_brightness_scales_and_saturates_like_the_official_jitter():
    frame = np.full((64, 64, 3), 100, dtype=np.uint8)
    frame[:, 32:] = 250
    image, _, _ = crop_target(frame, crop_spec([16.0, 16.0, 32.0, 32.0], brightness=1.2), 2.0, 64, grayscale=False)
    pixels = to_pixels(image)
    np.testing.assert_allclose(pixels[10, 5], 120.0, atol=1e-3)
    np.testing.assert_allclose(pixels[10, 60], 255.0, atol=1e-3)  # 250 * 1.2 clamps at 1.0


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
    assert sample["template"].shape == (2, 3, 64, 64) and sample["template"].dtype == np.float32
    assert sample["template_mask"].shape == (2, 64, 64) and sample["template_mask"].dtype == bool
    assert sample["search"].shape == (3, 128, 128) and sample["search_mask"].shape == (128, 128)
    assert sample["search_box"].shape == (4,) and sample["label"] == 1.0 and sample["sample_index"] == 5
    assert math.isclose(float(sample["search_box"][2]), 20 * 128 / math.ceil(20 * 5) / 128, rel_tol=1e-6)
