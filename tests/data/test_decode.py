"""Decoding windows in order and cutting crops from YUV planes: the frames are the clip's frames, the crops
are the tracker's crops of those frames up to rounding, and masks and boxes are exactly the tracker's."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from stark.platform.crop import crop_around_box, crop_window
from stark.platform.data.decode import SEEK_AHEAD, DecodeStats, decode_in_order
from stark.platform.data.yuv_crop import YuvFrame, cut_crop
from stark.platform.ingest.clips import EncodeSettings, encode_clip
from stark.platform.ingest.synthetic import make_sequence

FRAMES = 60


@pytest.fixture(scope="module")
def clip():
    """(clip bytes, the source frames, every frame decoded front to back as yuv420p planes)."""
    import io

    import av

    seq = make_sequence("s", FRAMES, (160, 120), np.random.default_rng(4), with_absence=False)
    data = encode_clip(seq.frames, 30.0, EncodeSettings(keyframe_interval=4))
    with av.open(io.BytesIO(data)) as container:
        planes = [f.to_ndarray(format="yuv420p") for f in container.decode(container.streams.video[0])]
    return data, seq.frames, planes


def test_decoding_in_order_yields_exactly_the_asked_frames_of_a_front_to_back_decode(clip):
    data, _, planes = clip
    wanted = [0, 1, 5, 6, 7, 30, 31, 59]  # a stretch > SEEK_AHEAD between 7 and 30: one seek ahead
    stats = DecodeStats()
    got = list(decode_in_order(data, wanted, stats))
    assert [n for n, _ in got] == wanted
    for n, frame in got:
        np.testing.assert_array_equal(frame, planes[n])
    assert stats.seeks >= 2 and stats.frames_decoded < FRAMES  # skipped what nobody needed


def test_a_dense_window_is_decoded_with_one_seek(clip):
    data, _, _ = clip
    stats = DecodeStats()
    wanted = list(range(10, 10 + SEEK_AHEAD))
    assert [n for n, _ in decode_in_order(data, wanted, stats)] == wanted
    assert stats.seeks == 1 and stats.frames_decoded <= len(wanted) + 4  # from the keyframe before frame 10


def test_a_needed_frame_costs_its_group_up_to_it_and_groups_nobody_needs_are_not_decoded(clip):
    data, _, planes = clip  # keyframe every 4 frames
    wanted = [1, 9, 10, 17]
    stats = DecodeStats()
    got = list(decode_in_order(data, wanted, stats))
    assert [n for n, _ in got] == wanted
    for n, frame in got:
        np.testing.assert_array_equal(frame, planes[n])
    decoded = {f for n in wanted for f in range(n - n % 4, n + 1)}  # {0, 1}, {8, 9, 10}, {16, 17}
    assert stats.frames_decoded == len(decoded) == 7 and stats.seeks == 1


def test_a_clip_with_reordered_frames_is_decoded_through_and_still_yields_the_asked_frames():
    """Ingest never writes B-frames, but a clip from elsewhere may have them: no group may be skipped then."""
    import io

    import av

    frames = make_sequence("b", 40, (96, 64), np.random.default_rng(7), with_absence=False).frames
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=30, options={"bf": "3", "g": "12", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    data = out.getvalue()
    with av.open(io.BytesIO(data)) as container:
        planes = [f.to_ndarray(format="yuv420p") for f in container.decode(container.streams.video[0])]
    wanted = [2, 3, 13, 14, 26, 39]
    got = list(decode_in_order(data, wanted))
    assert [n for n, _ in got] == wanted
    for n, frame in got:
        np.testing.assert_array_equal(frame, planes[n])


def test_a_frame_beyond_the_clip_is_an_error_not_a_short_read(clip):
    data, _, _ = clip
    with pytest.raises(RuntimeError, match="no frame 60"):
        list(decode_in_order(data, [58, 60]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-9))


BOXES = ([60.0, 40.0, 30.0, 20.0], [0.0, 0.0, 25.0, 25.0], [140.0, 100.0, 30.0, 30.0], [70.0, 50.0, 8.0, 6.0])


@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("flip", [False, True])
def test_a_yuv_crop_is_the_trackers_crop_of_the_decoded_frame_up_to_rounding(clip, box, flip):
    """Against crop_around_box on the frame libswscale converts to RGB: PSNR >= 36 dB (the conversions
    round differently and interpolate chroma differently), and at least as close to the source frame
    (what ingest encoded) as that whole-frame conversion, within 1 dB (a 7 px window magnified to 64 px
    shows where grid_sample reads the next real pixel and the window rule repeats its edge); the padding
    mask is identical."""
    import io

    import av

    data, sources, planes = clip
    with av.open(io.BytesIO(data)) as container:
        rgb = next(container.decode(container.streams.video[0])).to_ndarray(format="rgb24")
    frame = YuvFrame.from_planes(planes[0], 120, 160)
    for factor, size in ((2.0, 64), (5.0, 128), (4.0, 256)):  # down- and upsampling
        crop, mask = cut_crop(frame, crop_window(box, factor, size), size, flip)
        expected, expected_mask, _ = crop_around_box(rgb, box, factor, size)
        source, _, _ = crop_around_box(sources[0], box, factor, size)
        if flip:
            expected, expected_mask, source = expected[:, ::-1], expected_mask[:, ::-1], source[:, ::-1]
        assert crop.dtype == np.uint8 and crop.shape == (3, size, size)
        assert psnr(crop.transpose(1, 2, 0), expected) >= 36.0
        assert psnr(crop.transpose(1, 2, 0), source) >= psnr(expected, source) - 1.0
        np.testing.assert_array_equal(mask, expected_mask)


def test_padding_is_black_and_edges_blend_into_black_as_in_rgb(clip):
    _, _, planes = clip
    frame = YuvFrame.from_planes(planes[0], 120, 160)
    crop, mask = cut_crop(frame, crop_window([0.0, 0.0, 20.0, 20.0], 5.0, 100), 100, False)
    assert mask[:30, :30].all() and not mask[60:, 60:].any()
    assert crop[:, :30, :30].max() == 0  # (Y, U, V) = (16, 128, 128): black, not the green of zeros


@pytest.mark.parametrize("box", [[-200.0, 20.0, 30.0, 30.0], [20.0, -150.0, 30.0, 20.0], [400.0, 300.0, 30.0, 30.0]])
def test_a_window_that_misses_the_frame_is_all_black_padding(clip, box):
    _, _, planes = clip
    frame = YuvFrame.from_planes(planes[0], 120, 160)
    crop, mask = cut_crop(frame, crop_window(box, 2.0, 64), 64, False)
    assert mask.all() and crop.max() == 0


def test_odd_sized_frames_crop_within_their_own_size():
    """ingest pads odd sides by one replicated pixel; the frame's own width is where padding starts."""
    seq = make_sequence("s", 2, (161, 121), np.random.default_rng(5), with_absence=False)
    import io

    import av

    data = encode_clip(seq.frames, 30.0)
    with av.open(io.BytesIO(data)) as container:
        planes = next(container.decode(container.streams.video[0])).to_ndarray(format="yuv420p")
    frame = YuvFrame.from_planes(planes, 121, 161)
    box = [130.0, 95.0, 30.0, 25.0]
    crop, mask = cut_crop(frame, crop_window(box, 4.0, 128), 128, False)
    expected, expected_mask, _ = crop_around_box(seq.frames[0], box, 4.0, 128)
    np.testing.assert_array_equal(mask, expected_mask)
    assert psnr(crop.transpose(1, 2, 0), expected) >= 30.0  # against the source: encoding loss included


def test_a_decode_worker_cuts_its_crops_without_importing_torch(clip, tmp_path):
    """What a decode worker imports to make batches (the stream module, the unit decoder, the crop) leaves torch
    out: importing it alone would cost every fresh worker about a CPU-second."""
    _, _, planes = clip
    np.save(tmp_path / "planes.npy", planes[0])
    script = f"""
import sys
import numpy as np
from stark.platform.crop import crop_window
from stark.platform.data.stream import SampleMaker, make_batches
from stark.platform.data.decode import UnitDecoder, decode_in_order
from stark.platform.data.yuv_crop import YuvFrame, cut_crop
frame = YuvFrame.from_planes(np.load({str(tmp_path / "planes.npy")!r}), 120, 160)
crop, mask = cut_crop(frame, crop_window([60.0, 40.0, 30.0, 20.0], 5.0, 128), 128, True)
assert crop.shape == (3, 128, 128) and crop.any()
print(sorted(name for name in sys.modules if name == "torch" or name.startswith("torch.")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_padding_mask_alone_is_the_trackers_mask_for_windows_inside_on_and_beyond_the_edges():
    """`crop_padding_mask` (what the stream ships) skips the taps when a window lies inside the frame; it must
    still equal `crop_around_box`'s mask for every window: inside, flush with an edge, one pixel over, outside."""
    from stark.platform.crop import crop_padding_mask

    frame = np.full((120, 160, 3), 200, dtype=np.uint8)
    rng = np.random.default_rng(7)
    boxes = [[60.0, 40.0, 30.0, 20.0], [0.0, 0.0, 40.0, 40.0], [120.0, 80.0, 40.0, 40.0], [0.5, 0.5, 39.0, 39.0],
             [-10.0, 50.0, 30.0, 30.0], [150.0, 110.0, 20.0, 20.0]]
    boxes += [[*rng.uniform(-20, 150, 2), *rng.uniform(2, 80, 2)] for _ in range(200)]
    for box in boxes:
        for factor, size in ((1.0, 64), (2.0, 128), (5.0, 320)):
            _, expected, window = crop_around_box(frame, box, factor, size)
            np.testing.assert_array_equal(crop_padding_mask(window, size, 120, 160), expected)


def test_a_window_is_a_view_inside_the_image_and_a_padded_copy_across_its_edges():
    """`window_pixels` is the zero-padded canvas of STARK's `sample_target`, built only when needed."""
    from stark.platform.crop import window_pixels

    image = np.arange(120 * 160 * 3, dtype=np.int64).reshape(120, 160, 3).astype(np.uint8)
    inside = crop_window([60.0, 40.0, 20.0, 20.0], 2.0, 64)
    assert np.shares_memory(window_pixels(image, inside, 0), image)
    for box in ([-15.0, -10.0, 30.0, 30.0], [140.0, 100.0, 30.0, 30.0], [-300.0, 20.0, 20.0, 20.0]):
        window = crop_window(box, 2.0, 64)
        padded = np.zeros((120 + 2 * 400, 160 + 2 * 400, 3), dtype=np.uint8)
        padded[400:520, 400:560] = image
        expected = padded[400 + window.y0:400 + window.y0 + window.side, 400 + window.x0:400 + window.x0 + window.side]
        np.testing.assert_array_equal(window_pixels(image, window, 0), expected)
