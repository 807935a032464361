"""`tracker.crop_rule`: `official` cuts and maps back exactly as the official STARK tracker, `platform`
keeps the training crops, and official release files track with the official rule unless told otherwise.

The references below restate the official code (researchmm/Stark): `sample_target` of
lib/train/data/processing_utils.py and `map_box_back` of lib/test/tracker/stark_st.py (stark_s.py has
the same). cv2.copyMakeBorder(BORDER_CONSTANT) is zero-padding; the resize is PyTorch's bilinear
(align_corners=False), the resampler the platform's crops use in place of cv2.resize.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.support.model_fixtures import OFFICIAL_NETWORK, preset_model_config
from stark.model.stark import build_stark
from stark.platform.checkpoint import make_checkpoint, save_checkpoint
from stark.platform.experiment import ConfigError, load_config, to_dict
from stark.platform.crop import (clip_box_xywh, crop_around_box, crop_window, official_crop_around_box,
                                 official_crop_window)
from stark.platform.evaluate.runner import TrackingWorker, pack_model
from stark.platform.evaluate.config import EvalConfig
from stark.platform.image_norm import IMAGENET_MEAN, IMAGENET_STD
from stark.platform.model_loading import load_model
from stark.platform.track.tracker import StarkTracker
from stark.platform.track.config import TrackerChoice, TrackerSettings
from tests.model.test_official_checkpoint import official_state_dict, write_release_file

HEIGHT, WIDTH = 90, 120


def resize_bilinear(canvas: np.ndarray, out_size: int) -> np.ndarray:
    """[H, W, C] -> [out, out, C] float32, F.interpolate(bilinear, align_corners=False)."""
    tensor = torch.from_numpy(np.ascontiguousarray(canvas, dtype=np.float32)).permute(2, 0, 1)[None]
    resized = F.interpolate(tensor, size=(out_size, out_size), mode="bilinear", align_corners=False)
    return resized[0].permute(1, 2, 0).numpy()


def official_sample_target(im: np.ndarray, target_bb, search_area_factor: float, output_sz: int):
    """processing_utils.sample_target, line for line -> (crop uint8, resize_factor, att_mask bool)."""
    x, y, w, h = (float(v) for v in target_bb)
    crop_sz = math.ceil(math.sqrt(w * h) * search_area_factor)
    x1 = round(x + 0.5 * w - crop_sz * 0.5)
    x2 = x1 + crop_sz
    y1 = round(y + 0.5 * h - crop_sz * 0.5)
    y2 = y1 + crop_sz
    x1_pad = max(0, -x1)
    x2_pad = max(x2 - im.shape[1] + 1, 0)
    y1_pad = max(0, -y1)
    y2_pad = max(y2 - im.shape[0] + 1, 0)
    im_crop = im[y1 + y1_pad:y2 - y2_pad, x1 + x1_pad:x2 - x2_pad, :]
    im_crop_padded = np.pad(im_crop, ((y1_pad, y2_pad), (x1_pad, x2_pad), (0, 0)))  # copyMakeBorder, constant 0
    H, W, _ = im_crop_padded.shape
    att_mask = np.ones((H, W))
    end_x, end_y = -x2_pad, -y2_pad
    if y2_pad == 0:
        end_y = None
    if x2_pad == 0:
        end_x = None
    att_mask[y1_pad:end_y, x1_pad:end_x] = 0
    resize_factor = output_sz / crop_sz
    crop = np.rint(resize_bilinear(im_crop_padded, output_sz)).clip(0, 255).astype(np.uint8)
    att_mask = resize_bilinear(att_mask[:, :, None], output_sz)[:, :, 0].astype(np.bool_)
    return crop, resize_factor, att_mask


def official_map_box_back(state, pred_box, resize_factor: float, search_size: int) -> list[float]:
    """stark_st.py map_box_back; pred_box is cxcywh in frame units (crop pixels / resize_factor)."""
    cx_prev, cy_prev = state[0] + 0.5 * state[2], state[1] + 0.5 * state[3]
    cx, cy, w, h = pred_box
    half_side = 0.5 * search_size / resize_factor
    cx_real = cx + (cx_prev - half_side)
    cy_real = cy + (cy_prev - half_side)
    return [cx_real - 0.5 * w, cy_real - 0.5 * h, w, h]


def platform_reference_crop(im: np.ndarray, box, factor: float, out_size: int):
    """The platform rule restated: the window's own pixels, zeros outside the image, then the resize."""
    window = crop_window(box, factor, out_size)
    canvas = np.zeros((window.side, window.side, 3), dtype=np.uint8)
    validity = np.zeros((window.side, window.side, 1))
    ys, xs = slice(max(window.y0, 0), min(window.y0 + window.side, im.shape[0])), \
        slice(max(window.x0, 0), min(window.x0 + window.side, im.shape[1]))
    inside = (slice(ys.start - window.y0, ys.stop - window.y0), slice(xs.start - window.x0, xs.stop - window.x0))
    canvas[inside] = im[ys, xs]
    validity[inside] = 1.0
    crop = np.rint(resize_bilinear(canvas, out_size)).clip(0, 255).astype(np.uint8)
    return crop, resize_bilinear(1.0 - validity, out_size)[:, :, 0].astype(np.bool_)


def assert_same_pixels(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal, up to one grey level on rare pixels of an enlarged window: the platform's crops evaluate
    the bilinear taps in their own float32 order (platform/crop.py), F.interpolate in its own."""
    difference = np.abs(actual.astype(np.int64) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3, (difference.max(), (difference > 0).sum())


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(1, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)  # no zero pixels


# (box xywh, factor, out_size): windows past each edge, both corners, the right/bottom edges touched
# exactly (x2 == W: inside the image, yet the official slice drops the last column), and inside.
WINDOWS = {
    "left": ([-4.0, 30.0, 20.0, 20.0], 2.0, 64),
    "top": ([50.0, -6.3, 18.0, 22.0], 2.0, 64),
    "right": ([104.6, 30.0, 20.0, 20.0], 2.0, 64),
    "bottom": ([50.0, 80.2, 16.0, 20.0], 2.0, 64),
    "top-left, enlarged": ([-3.0, -5.0, 12.0, 10.0], 3.0, 80),
    "bottom-right, shrunk": ([95.5, 70.5, 30.0, 26.0], 4.0, 64),
    "all four edges": ([40.0, 30.0, 30.0, 30.0], 5.0, 128),
    "right edge touched": ([90.0, 30.0, 20.0, 20.0], 2.0, 64),
    "bottom edge touched": ([50.0, 60.0, 20.0, 20.0], 2.0, 64),
    "inside": ([40.0, 30.0, 20.0, 20.0], 2.0, 64),
}


@pytest.mark.parametrize("box, factor, out_size", WINDOWS.values(), ids=WINDOWS.keys())
def test_the_official_crop_and_mask_are_those_of_the_official_sample_target(image, box, factor, out_size):
    crop, mask, window = official_crop_around_box(image, box, factor, out_size)
    expected_crop, resize_factor, expected_mask = official_sample_target(image, box, factor, out_size)
    assert_same_pixels(crop, expected_crop)
    np.testing.assert_array_equal(mask, expected_mask)
    assert window.scale == resize_factor


@pytest.mark.parametrize("box, factor, out_size", WINDOWS.values(), ids=WINDOWS.keys())
def test_the_platform_crop_stays_the_windows_own_pixels_zero_padded(image, box, factor, out_size):
    crop, mask, window = crop_around_box(image, box, factor, out_size)
    expected_crop, expected_mask = platform_reference_crop(image, box, factor, out_size)
    assert_same_pixels(crop, expected_crop)
    np.testing.assert_array_equal(mask, expected_mask)
    assert (window.origin_x, window.origin_y) == (window.x0, window.y0)


def test_the_rules_differ_only_where_a_window_reaches_the_right_or_bottom_edge(image):
    def same(box, factor=2.0, out_size=64):
        official, platform = official_crop_around_box(image, box, factor, out_size), \
            crop_around_box(image, box, factor, out_size)
        return all(np.array_equal(a, b) for a, b in zip(official[:2], platform[:2]))

    assert same([-4.0, -6.0, 20.0, 20.0])  # left and top: both rules pad exactly the overhang
    assert same([40.0, 30.0, 20.0, 20.0])
    assert not same([90.0, 30.0, 20.0, 20.0])  # touches the right edge: the official drops column W - 1
    assert not same([50.0, 60.0, 20.0, 20.0])
    # the last column inside a window that reaches the edge is padding under the official rule only
    box = [100.0, 30.0, 20.0, 20.0]  # window x 100..119 at 1:1 (no resampling), ending at the right edge
    _, official_mask, _ = official_crop_around_box(image, box, 1.0, 20)
    _, platform_mask, _ = crop_around_box(image, box, 1.0, 20)
    assert official_mask[:, -1].all() and not official_mask[:, :-1].any() and not platform_mask.any()


@pytest.mark.parametrize("state", [[40.3, 30.7, 30.0, 20.0], [-5.2, -8.6, 25.1, 40.3], [101.7, 61.2, 17.9, 26.4]])
def test_the_official_map_back_is_map_box_back_through_the_unrounded_window_origin(state):
    search_size, factor = 128, 5.0
    window = official_crop_window(state, factor, search_size)
    rng = np.random.default_rng(1)
    for box_cxcywh in rng.uniform([0, 0, 5, 5], [search_size, search_size, 80, 80], (20, 4)):
        cx, cy, w, h = box_cxcywh
        ours = window.box_from_crop([cx - w / 2, cy - h / 2, w, h])  # what the tracker maps
        official = official_map_box_back(state, box_cxcywh / window.scale, window.scale, search_size)
        np.testing.assert_allclose(ours, official, rtol=0, atol=1e-9)
        np.testing.assert_allclose(window.box_to_crop(ours), [cx - w / 2, cy - h / 2, w, h], atol=1e-9)


def test_the_official_map_back_moves_boxes_by_the_rounding_the_platform_rule_keeps():
    state = [40.3, 30.7, 30.0, 20.0]  # centre (55.3, 40.7), side ceil(sqrt(600) * 5) = 123
    official, platform = official_crop_window(state, 5.0, 128), crop_window(state, 5.0, 128)
    assert (official.x0, official.y0, official.side) == (platform.x0, platform.y0, platform.side) == (-6, -21, 123)
    # unrounded origin: 55.3 - 61.5 = -6.2 and 40.7 - 61.5 = -20.8 (the platform rounds to -6, -21)
    assert official.origin_x == pytest.approx(-6.2, abs=1e-12) and official.origin_y == pytest.approx(-20.8, abs=1e-12)
    box = np.array([60.0, 50.0, 20.0, 10.0])
    np.testing.assert_allclose(official.box_from_crop(box) - platform.box_from_crop(box), [-0.2, 0.2, 0.0, 0.0],
                               atol=1e-12)


def test_crop_rule_is_validated_and_read_from_the_config():
    with pytest.raises(ValueError, match="tracker.crop_rule"):
        TrackerSettings(crop_rule="nearest").validate()
    with pytest.raises(ConfigError, match="tracker.crop_rule"):
        load_config("stark_tiny", ["tracker.crop_rule=nearest"])
    assert load_config("stark_tiny").tracker.crop_rule == "platform"
    assert load_config("stark_tiny", ["tracker.crop_rule=official"]).tracker.crop_rule == "official"


def test_an_official_tracker_feeds_the_network_official_crops_and_maps_boxes_back_officially(monkeypatch):
    """The official STARK-ST loop (stark_st.py initialize/track), checked step by step from the tracker's
    own previous box: template and search crops, masks, and the clipped map-back."""
    cfg = preset_model_config("stark_tiny")
    torch.manual_seed(0)
    tracker = StarkTracker(build_stark(cfg).eval(), cfg, TrackerSettings(update_interval=1000, crop_rule="official"))
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(6)]
    seen = {"backbone": [], "search": []}
    backbone, search = tracker.model.forward_backbone, tracker.model.forward_search

    def record_backbone(images, mask):
        seen["backbone"].append((images.clone(), mask.clone()))
        return backbone(images, mask)

    def record_search(templates, images, mask):
        out = search(templates, images, mask)
        seen["search"].append((images.clone(), mask.clone(), out["pred_boxes"].float().clone()))
        return out

    def pixels(images: torch.Tensor) -> np.ndarray:
        """The network's input [1, 3, H, W] back to the uint8 crop [H, W, 3] it was normalised from."""
        mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return (images[0].float() * std + mean).mul(255).round().permute(1, 2, 0).numpy().astype(np.uint8)

    monkeypatch.setattr(tracker.model, "forward_backbone", record_backbone)
    monkeypatch.setattr(tracker.model, "forward_search", record_search)
    init_box = [92.5, 66.0, 24.0, 20.0]  # near the bottom-right corner: windows reach both edges
    result = tracker.track(frames, init_box)

    z_patch, _, z_mask = official_sample_target(frames[0], init_box, cfg.template_factor, cfg.template_size)
    assert_same_pixels(pixels(seen["backbone"][0][0]), z_patch)
    assert torch.equal(seen["backbone"][0][1], torch.from_numpy(z_mask[None]))
    assert len(seen["search"]) == len(frames) - 1
    reached_edge = 0
    for t, (images, mask, pred_boxes) in enumerate(seen["search"], start=1):
        state = result.boxes[t - 1].tolist()
        x_patch, resize_factor, x_mask = official_sample_target(frames[t], state, cfg.search_factor, cfg.search_size)
        assert_same_pixels(pixels(images), x_patch)
        assert torch.equal(mask, torch.from_numpy(x_mask[None]))
        pred_box = (pred_boxes.view(-1, 4).mean(dim=0) * cfg.search_size / resize_factor).tolist()
        expected = clip_box_xywh(official_map_box_back(state, pred_box, resize_factor, cfg.search_size),
                                 HEIGHT, WIDTH, margin=10)
        np.testing.assert_allclose(result.boxes[t], expected, rtol=0, atol=1e-4)  # float32 rounding only
        window = official_crop_window(state, cfg.search_factor, cfg.search_size)
        reached_edge += window.x0 + window.side >= WIDTH or window.y0 + window.side >= HEIGHT
    assert reached_edge  # the official extra column / row was exercised


def test_an_official_file_tracks_with_the_official_rule_unless_the_command_line_says_otherwise(tmp_path):
    cfg = load_config("stark_tiny", OFFICIAL_NETWORK)
    torch.manual_seed(2)
    model = build_stark(cfg.model)
    official_path = tmp_path / "STARKST_ep0050.pth.tar"
    write_release_file(official_path, official_state_dict(model))
    platform_path = tmp_path / "ckpt.pt"
    save_checkpoint(str(platform_path), make_checkpoint(model, to_dict(cfg), tracker=None, step=1))

    official = load_model(str(official_path), base_cfg=cfg.model)
    assert official.tracker == {"crop_rule": "official"}
    assert cfg.tracker_choice.for_model(official.tracker).crop_rule == "official"
    overrides = ["tracker.crop_rule=platform"]
    chosen = load_config("stark_tiny", overrides).tracker_choice
    assert chosen.for_model(official.tracker).crop_rule == "platform"
    # other stored settings still win over the config file beside it
    assert cfg.tracker_choice.for_model({**official.tracker, "update_interval": 7}) \
        == dataclasses.replace(cfg.tracker, update_interval=7, crop_rule="official")
    # a platform checkpoint keeps the platform rule
    assert cfg.tracker_choice.for_model(load_model(str(platform_path)).tracker).crop_rule == "platform"


def test_evaluation_workers_receive_crop_rule_through_their_settings():
    cfg = preset_model_config("stark_tiny")
    settings = TrackerSettings(update_interval=5, score_threshold=0.2, crop_rule="official")
    worker = TrackingWorker(pack_model(build_stark(cfg), cfg), settings, EvalConfig(), None)
    assert worker.tracker.settings == settings


@pytest.mark.slow
def test_a_registered_official_file_keeps_the_official_rule(tmp_path, monkeypatch):
    """`stark register` turns an official file into a platform checkpoint: the rule travels with it."""
    from stark.jobs.register import register

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = load_config("stark_tiny", [f"mlflow.tracking_uri={uri}", *OFFICIAL_NETWORK])
    torch.manual_seed(2)
    path = tmp_path / "STARKST_ep0050.pth.tar"
    write_release_file(path, official_state_dict(build_stark(cfg.model)))
    version = register(cfg, str(path), log=lambda *_: None)
    loaded = load_model(f"models:/{cfg.registry.model_name}/{version.version}", tracking_uri=uri)
    assert loaded.tracker == {"crop_rule": "official"}
    assert cfg.tracker_choice.for_model(loaded.tracker).crop_rule == "official"
