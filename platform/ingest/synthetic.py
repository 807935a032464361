"""Generated tracking data: photographs that scikit-image ships, with a pasted object moving over them.

Used by the tests, the benchmark and the demo pipeline on a fresh machine (no download needed). Each
sequence is footage of one object as a hand-held camera would film it (see `make_sequence`), and
photographs are split between train, val and test (`PHOTO_SPLITS`). Writers lay a set
of sequences out exactly as each benchmark ships on disk: GOT-10k, LaSOT, TrackingNet, and a user's
own footage (video files + a `frame,x,y,w,h` CSV per video).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageFilter

from .lasot_split import LASOT_TEST_SEQUENCES

# scikit-image's bundled photographs (no network needed), split by source image: a sequence takes its
# background and its object from one split's photographs only, so validation and test sequences show
# photographs that training never saw (every figure the pipeline prints is about generalisation).
PHOTO_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "coffee", "rocket", "immunohistochemistry", "brick", "grass", "camera", "coins",
              "page", "text", "cell"),
    "val": ("chelsea", "clock", "gravel"),
    "test": ("hubble_deep_field", "retina", "moon"),
}
JPEG_QUALITY = 95  # what the benchmarks ship (GOT-10k, LaSOT frames are high-quality JPEGs)
MIN_VISIBLE = 0.03  # a target with less of itself in view than this counts as absent (GOT-10k cover 0)


@dataclass
class SyntheticSequence:
    name: str
    frames: np.ndarray  # [N, H, W, 3] uint8
    boxes_xywh: np.ndarray  # [N, 4] float64, pixels, clipped to the frame; zeros where absent
    absent: np.ndarray  # [N] bool: the object is not in the frame at all
    cover: np.ndarray  # [N] int, 0..8: eighths of the object in view (GOT-10k's cover.label)
    fps: float = 30.0
    photographs: tuple[str, ...] = ()  # the source photographs: background, object

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def visible(self) -> np.ndarray:
        return ~self.absent & (self.cover > 0)


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((max(width, 1), max(height, 1)), Image.BILINEAR))


def _styled_photo(name: str, rng: np.random.Generator) -> np.ndarray:
    """A photograph as one sequence sees it: mirrored at random, grey ones tinted (so that colour
    never tells the split), a random colour balance."""
    image = _photo(name)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    gray = bool(np.all(image[..., 0] == image[..., 1]))
    tint = rng.uniform(0.55, 1.0, size=3) if gray else rng.uniform(0.85, 1.15, size=3)
    return np.clip(image * (tint / tint.max() if gray else tint), 0, 255).astype(np.uint8)


def _smooth_path(num_frames: int, rng: np.random.Generator, amplitude: float, cycles: float) -> np.ndarray:
    """[N] a smooth random curve starting at 0: two sinusoids of random phase (no jumps)."""
    s = np.linspace(0.0, 1.0, num_frames)
    path = np.zeros(num_frames)
    for k in (1.0, 2.3):
        phase = rng.uniform(0, 2 * math.pi)
        path += amplitude / k * (np.sin(2 * math.pi * cycles * k * s + phase) - math.sin(phase))
    return path


def _frame_track(num_frames: int, rng: np.random.Generator, first: np.ndarray, size: np.ndarray,
                 speed: float, leave: bool) -> np.ndarray:
    """[N, 2] centre in frame pixels: a walk with inertia, pulled back towards a home point inside the
    frame (as a camera operator keeps the object in view); when `leave`, home moves past an edge for
    a stretch, so the object leaves the frame and comes back."""
    home = np.tile(rng.uniform(0.3, 0.7, size=2) * size, (num_frames, 1))
    if leave and num_frames >= 20:
        t0 = int(rng.integers(num_frames // 3, num_frames - num_frames // 4))
        axis, side = int(rng.integers(2)), int(rng.integers(2))
        home[t0:t0 + max(8, num_frames // 6), axis] = (1.6 if side else -0.6) * size[axis]
    velocity = rng.standard_normal(2) * speed
    positions = np.empty((num_frames, 2))
    positions[0] = first
    for t in range(1, num_frames):
        pull = 0.02 * (home[t] - positions[t - 1])
        velocity = 0.9 * velocity + 0.44 * rng.standard_normal(2) * speed + pull
        positions[t] = positions[t - 1] + velocity
    return positions


def _object_shape(width: int, height: int, elliptic: bool) -> np.ndarray:
    """[height, width] float32 alpha of the object: a rectangle or an ellipse filling the box."""
    if not elliptic:
        return np.ones((height, width), dtype=np.float32)
    yy = (np.arange(height) + 0.5) / height * 2 - 1
    xx = (np.arange(width) + 0.5) / width * 2 - 1
    return ((xx[None] ** 2 + yy[:, None] ** 2) <= 1.0).astype(np.float32)


def _paste(frame: np.ndarray, image: np.ndarray, alpha: np.ndarray, x: int, y: int,
           coverage: np.ndarray | None = None, value: float = 1.0) -> None:
    """Alpha-blend `image` with top-left (x, y) into `frame` in place (the part inside the frame);
    `coverage`, if given, is set to `value` where the pasted alpha is opaque."""
    h, w = alpha.shape
    fx0, fy0 = max(x, 0), max(y, 0)
    fx1, fy1 = min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
    if fx1 <= fx0 or fy1 <= fy0:
        return
    a = alpha[fy0 - y:fy1 - y, fx0 - x:fx1 - x, None]
    region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
    src = image[fy0 - y:fy1 - y, fx0 - x:fx1 - x].astype(np.float32)
    frame[fy0:fy1, fx0:fx1] = (region * (1 - a) + src * a).astype(np.uint8)
    if coverage is not None:
        coverage[fy0:fy1, fx0:fx1][a[..., 0] > 0.5] = value


def make_sequence(name: str, num_frames: int, size: tuple[int, int], rng: np.random.Generator,
                  with_absence: bool = True, fps: float = 30.0, photos: str = "train") -> SyntheticSequence:
    """One sequence of `num_frames` frames of `size` = (width, height), drawn from the photographs of
    split `photos` (see PHOTO_SPLITS).

    Like hand-held footage of one object: the camera pans and zooms over a background photograph; the
    object (a region of another photograph, rectangular or elliptic, 1-20% of the frame area) moves on
    its own, changes scale, may leave the frame; an occluder passes over it (fully, once, when
    `with_absence` and the sequence has 20+ frames); half the sequences hold a look-alike distractor
    (the same object, recoloured slightly); light changes, stretches of blur and sensor noise.
    """
    if photos not in PHOTO_SPLITS:
        raise ValueError(f"photos {photos!r} is not one of {sorted(PHOTO_SPLITS)}")
    width, height = size
    pool = PHOTO_SPLITS[photos]
    bg_name, obj_name = (pool[i] for i in rng.choice(len(pool), 2, replace=False))

    # --- camera: a view of scale s (photo pixels per frame pixel) centred at c, panning and zooming
    photo = _styled_photo(bg_name, rng)
    grow = max(1.6 * width / photo.shape[1], 1.6 * height / photo.shape[0], 1.0)
    photo = _resize(photo, int(math.ceil(photo.shape[1] * grow)), int(math.ceil(photo.shape[0] * grow)))
    fit = min(photo.shape[1] / width, photo.shape[0] / height)  # the widest view that fits the photograph
    zoom = np.exp(_smooth_path(num_frames, rng, rng.uniform(0.0, 0.25), rng.uniform(0.2, 0.8)))
    scale = np.minimum(rng.uniform(0.55, 0.85) * fit * zoom / zoom.max(), fit)  # [N]
    half = np.stack([scale * width / 2, scale * height / 2], 1)  # [N, 2] half the view, photo pixels
    lo, hi = half, np.array([photo.shape[1], photo.shape[0]]) - half
    start = rng.uniform(lo[0], hi[0])
    pan = np.stack([_smooth_path(num_frames, rng, rng.uniform(0.0, 0.5) * width * scale[0], 0.5),
                    _smooth_path(num_frames, rng, rng.uniform(0.0, 0.3) * height * scale[0], 0.5)], 1)
    shake = rng.standard_normal((num_frames, 2)) * rng.uniform(0.0, 1.5) * scale[:, None]
    camera = np.clip(start + pan + shake, lo, hi)  # [N, 2]

    # --- the object: a region of another photograph, in world (photo) units
    source = _styled_photo(obj_name, rng)
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))  # width / height
    area = math.exp(rng.uniform(math.log(0.01), math.log(0.2))) * width * height  # frame pixels at t = 0
    obj_w0, obj_h0 = math.sqrt(area * aspect), math.sqrt(area / aspect)
    side = rng.uniform(0.3, 0.7) * min(source.shape[:2])
    cut_w = int(min(side * math.sqrt(aspect), source.shape[1]))
    cut_h = int(min(side / math.sqrt(aspect), source.shape[0]))
    cx0, cy0 = rng.integers(0, source.shape[1] - cut_w + 1), rng.integers(0, source.shape[0] - cut_h + 1)
    patch = source[cy0:cy0 + cut_h, cx0:cx0 + cut_w]
    elliptic = bool(rng.random() < 0.5)
    growth = np.exp(_smooth_path(num_frames, rng, rng.uniform(0.05, 0.35), rng.uniform(0.3, 1.0)))  # [N]

    frame_size = np.array([width, height], dtype=np.float64)
    margin = np.array([obj_w0, obj_h0]) / 2 + 2
    speed = rng.uniform(0.3, 1.5) * math.sqrt(obj_w0 * obj_h0) * 0.05  # pixels per frame
    target_track = _frame_track(num_frames, rng, rng.uniform(margin, frame_size - margin), frame_size, speed,
                                leave=with_absence and rng.random() < 0.3)
    distractor_track = None
    if rng.random() < 0.5 and num_frames > 1:
        distractor_track = _frame_track(num_frames, rng, rng.uniform([0, 0], frame_size), frame_size, speed, False)
        distractor_tint = rng.uniform(0.8, 1.2, size=3)

    # --- an occluder (a region of the background photograph) crossing the object once
    occlusion = None
    if with_absence and num_frames >= 20:
        t0 = int(rng.integers(num_frames // 4, num_frames // 2))
        duration = max(4, int(num_frames * rng.uniform(0.1, 0.2)))
        occ_side = int(1.3 * max(obj_w0, obj_h0) * growth.max() * scale[0] / scale.min()) + 4
        oy = int(rng.integers(0, max(photo.shape[0] - occ_side, 0) + 1))
        ox = int(rng.integers(0, max(photo.shape[1] - occ_side, 0) + 1))
        occluder = _resize(photo[oy:oy + occ_side, ox:ox + occ_side], occ_side, occ_side)
        direction = rng.standard_normal(2)
        occlusion = (t0, duration, occluder, direction / np.linalg.norm(direction))

    gain = np.exp(_smooth_path(num_frames, rng, rng.uniform(0.0, 0.3), rng.uniform(0.3, 1.0)))
    blur = np.zeros(num_frames)
    if rng.random() < 0.5 and num_frames >= 10:
        b0 = int(rng.integers(0, num_frames - 5))
        blur[b0:b0 + int(rng.integers(3, max(4, num_frames // 6)))] = rng.uniform(0.8, 2.0)
    noise = rng.uniform(0.0, 2.0)  # sensor noise, grey levels (more would not survive crf 16 encoding)

    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    boxes = np.zeros((num_frames, 4))
    cover = np.zeros(num_frames, dtype=np.int64)
    absent = np.zeros(num_frames, dtype=bool)
    background = Image.fromarray(photo)
    coverage = np.zeros((height, width), dtype=np.float32)
    for t in range(num_frames):
        s = scale[t]
        view = (s, 0.0, camera[t, 0] - s * width / 2, 0.0, s, camera[t, 1] - s * height / 2)
        frame = np.array(background.transform((width, height), Image.AFFINE, view, resample=Image.BILINEAR))

        obj_w = max(2, int(round(obj_w0 * growth[t] * scale[0] / s)))
        obj_h = max(2, int(round(obj_h0 * growth[t] * scale[0] / s)))
        image = _resize(patch, obj_w, obj_h)
        alpha = _object_shape(obj_w, obj_h, elliptic)
        if distractor_track is not None:
            dx, dy = np.round(distractor_track[t] - [obj_w / 2, obj_h / 2]).astype(int)
            _paste(frame, np.clip(image * distractor_tint, 0, 255).astype(np.uint8), alpha, dx, dy)
        bx, by = (int(v) for v in np.round(target_track[t] - [obj_w / 2, obj_h / 2]))
        coverage[:] = 0
        _paste(frame, image, alpha, bx, by, coverage)
        total = float(alpha.sum())
        if occlusion is not None and occlusion[0] <= t < occlusion[0] + occlusion[1]:
            t0, duration, occluder, direction = occlusion
            # the occluder's centre sweeps through the object's centre, mid-way through the stretch
            progress = (t - t0 + 0.5) / duration - 0.5  # -0.5 .. 0.5
            centre = np.array([bx + obj_w / 2, by + obj_h / 2]) + direction * progress * 0.8 * occluder.shape[0]
            ox, oy = np.round(centre - occluder.shape[0] / 2).astype(int)
            _paste(frame, occluder, np.ones(occluder.shape[:2], dtype=np.float32), ox, oy, coverage, 0.0)
        in_view = float(coverage.sum()) / total
        if in_view >= MIN_VISIBLE:
            fx0, fy0 = max(bx, 0), max(by, 0)
            fx1, fy1 = min(bx + obj_w, width), min(by + obj_h, height)
            boxes[t] = (fx0, fy0, fx1 - fx0, fy1 - fy0)
            cover[t] = max(1, int(math.ceil(8 * min(in_view, 1.0))))
        else:
            absent[t] = True
        frame = frame.astype(np.float32) * np.float32(gain[t])
        if noise > 0:
            frame += rng.standard_normal(frame.shape[:2] + (1,), dtype=np.float32) * np.float32(noise)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        if blur[t] > 0:
            frame = np.asarray(Image.fromarray(frame).filter(ImageFilter.GaussianBlur(float(blur[t]))))
        frames[t] = frame
    return SyntheticSequence(name, frames, boxes, absent, cover, fps, (bg_name, obj_name))


def photo_split(split: str) -> str:
    """The photographs a benchmark split is drawn from: train splits from "train", the rest from their
    own ("val", or "test" for test splits and anything else)."""
    split = split.lower()
    if split.startswith("train"):
        return "train"
    return "val" if split.startswith("val") else "test"


def iter_sequences(names: list[str], num_frames: int, size: tuple[int, int], seed: int,
                   fps: float = 30.0, photos: str = "train") -> Iterator[SyntheticSequence]:
    """The sequences of `make_sequences`, one at a time (a large set need not fit in memory)."""
    rng = np.random.default_rng(seed)
    for name in names:
        yield make_sequence(name, num_frames, size, rng, fps=fps, photos=photos)


def make_sequences(names: list[str], num_frames: int, size: tuple[int, int], seed: int,
                   fps: float = 30.0, photos: str = "train") -> list[SyntheticSequence]:
    return list(iter_sequences(names, num_frames, size, seed, fps, photos))


# --- writers, one per on-disk layout ---------------------------------------------------------------------
def _box_lines(boxes: np.ndarray, sep: str = ",") -> str:
    return "".join(sep.join(f"{v:g}" for v in box) + "\n" for box in boxes)


def _write_jpegs(folder: str, frames: np.ndarray, name_of) -> None:
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(os.path.join(folder, name_of(i)), quality=JPEG_QUALITY)


def write_got10k(root: str, splits: dict[str, Iterable[SyntheticSequence]]) -> None:
    """root/{split}/list.txt and root/{split}/<seq>/{00000001.jpg.., groundtruth.txt, absence.label,
    cover.label, meta_info.ini}; the test split ships only the first box and no labels. Sequences may
    come from a generator: each is written and dropped, and list.txt is written last."""
    for split, sequences in splits.items():
        split_dir = os.path.join(root, split)
        os.makedirs(split_dir, exist_ok=True)
        names = []
        for seq in sequences:
            names.append(seq.name)
            folder = os.path.join(split_dir, seq.name)
            _write_jpegs(folder, seq.frames, lambda i: f"{i + 1:08d}.jpg")
            boxes = seq.boxes_xywh[:1] if split == "test" else seq.boxes_xywh
            with open(os.path.join(folder, "groundtruth.txt"), "w") as f:
                f.write(_box_lines(boxes))
            if split != "test":
                with open(os.path.join(folder, "absence.label"), "w") as f:
                    f.write("".join(f"{int(a)}\n" for a in seq.absent))
                with open(os.path.join(folder, "cover.label"), "w") as f:
                    f.write("".join(f"{int(c)}\n" for c in seq.cover))
            with open(os.path.join(folder, "meta_info.ini"), "w") as f:
                f.write(f"[METAINFO]\nurl: synthetic\nobject_class: pasted photograph\nmotion_class: sweep\n"
                        f"major_class: synthetic\nroot_class: object\nmotion_adverb: smoothly\n"
                        f"resolution: ({seq.frames.shape[2]}, {seq.frames.shape[1]})\n")
        with open(os.path.join(split_dir, "list.txt"), "w") as f:
            f.write("".join(f"{name}\n" for name in names))


def lasot_names(count: int, split: str) -> list[str]:
    """LaSOT-style names `<class>-<n>` that the official split puts in `split` ('train' or 'test')."""
    classes = sorted({name.rsplit("-", 1)[0] for name in LASOT_TEST_SEQUENCES})
    names = []
    for i in range(count):
        cls = classes[i % len(classes)]
        test_numbers = sorted(int(n.rsplit("-", 1)[1]) for n in LASOT_TEST_SEQUENCES if n.startswith(cls + "-"))
        numbers = test_numbers if split == "test" else [n for n in range(1, 21) if n not in test_numbers]
        names.append(f"{cls}-{numbers[i // len(classes)]}")
    return names


def write_lasot(root: str, splits: dict[str, list[SyntheticSequence]], write_lists: bool = True) -> None:
    """root/<class>/<class>-N/{img/%08d.jpg, groundtruth.txt, full_occlusion.txt, out_of_view.txt, nlp.txt},
    plus training_set.txt / testing_set.txt (one sequence name per line) when `write_lists`."""
    for split, sequences in splits.items():
        for seq in sequences:
            folder = os.path.join(root, seq.name.rsplit("-", 1)[0], seq.name)
            _write_jpegs(os.path.join(folder, "img"), seq.frames, lambda i: f"{i + 1:08d}.jpg")
            with open(os.path.join(folder, "groundtruth.txt"), "w") as f:
                f.write(_box_lines(seq.boxes_xywh))
            with open(os.path.join(folder, "full_occlusion.txt"), "w") as f:
                f.write(",".join(str(int(a)) for a in seq.absent) + "\n")
            with open(os.path.join(folder, "out_of_view.txt"), "w") as f:
                f.write(",".join("0" for _ in seq.absent) + "\n")
            with open(os.path.join(folder, "nlp.txt"), "w") as f:
                f.write("a pasted photograph moving over a panned background\n")
    if write_lists:
        for split, list_name in (("train", "training_set.txt"), ("test", "testing_set.txt")):
            with open(os.path.join(root, list_name), "w") as f:
                f.write("".join(f"{s.name}\n" for s in splits.get(split, [])))


def trackingnet_names(count: int, rng: np.random.Generator) -> list[str]:
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
    return [f"{''.join(rng.choice(alphabet, 11))}_{int(rng.integers(0, 4))}" for _ in range(count)]


def write_trackingnet(root: str, chunks: dict[str, list[SyntheticSequence]]) -> None:
    """root/{TRAIN_0..11,TEST}/{anno/<vid>.txt, frames/<vid>/<i>.jpg} (frames from 0, no padding);
    TEST annotations hold only the first box."""
    for chunk, sequences in chunks.items():
        os.makedirs(os.path.join(root, chunk, "anno"), exist_ok=True)
        for seq in sequences:
            _write_jpegs(os.path.join(root, chunk, "frames", seq.name), seq.frames, lambda i: f"{i}.jpg")
            boxes = seq.boxes_xywh[:1] if chunk == "TEST" else seq.boxes_xywh
            with open(os.path.join(root, chunk, "anno", f"{seq.name}.txt"), "w") as f:
                f.write(_box_lines(boxes))


def encode_video_file(path: str, frames: np.ndarray, fps: float, crf: int = 10) -> None:
    """A near-lossless H.264 file (what a user's camera footage stands in for)."""
    import av

    fmt = {".avi": "avi", ".mkv": "matroska"}.get(os.path.splitext(path)[1], "mp4")
    with av.open(path, "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                      options={"crf": str(crf), "bf": "0", "threads": "1"})
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_footage(root: str, sequences: list[SyntheticSequence], ext: str = ".mp4") -> None:
    """root/<name><ext> and root/<name>.csv with `frame,x,y,w,h` (0-based frames; absent frames omitted)."""
    os.makedirs(root, exist_ok=True)
    for seq in sequences:
        encode_video_file(os.path.join(root, seq.name + ext), seq.frames, seq.fps)
        with open(os.path.join(root, f"{seq.name}.csv"), "w") as f:
            f.write("frame,x,y,w,h\n")
            for i, box in enumerate(seq.boxes_xywh):
                if seq.visible[i]:
                    f.write(f"{i}," + ",".join(f"{v:g}" for v in box) + "\n")


LAYOUTS = ("got10k", "lasot", "trackingnet", "footage")


def write_demo_dataset(root: str, layout: str, num_sequences: int = 5, num_frames: int = 40,
                       size: tuple[int, int] = (320, 240), seed: int = 0,
                       num_test: int = 1) -> dict[str, list[SyntheticSequence]]:
    """Generate `num_sequences` training sequences (+ `num_test` test ones where the layout has a test
    split) and write them in `layout`. Returns the sequences by split, for comparison in tests."""
    rng = np.random.default_rng(seed)
    if layout == "got10k":
        names = {"train": [f"GOT-10k_Train_{i + 1:06d}" for i in range(num_sequences)],
                 "test": [f"GOT-10k_Test_{i + 1:06d}" for i in range(num_test)]}
        fps = 10.0
    elif layout == "lasot":
        names = {"train": lasot_names(num_sequences, "train"), "test": lasot_names(num_test, "test")}
        fps = 30.0
    elif layout == "trackingnet":
        ids = trackingnet_names(num_sequences + num_test, rng)
        names = {"TRAIN_0": ids[:num_sequences], "TEST": ids[num_sequences:]}
        fps = 30.0
    elif layout == "footage":
        names = {"train": [f"clip_{i:02d}" for i in range(num_sequences)]}
        fps = 25.0
    else:
        raise ValueError(f"layout {layout!r} is not one of {LAYOUTS}")
    splits = {split: [make_sequence(n, num_frames, size, rng, fps=fps, photos=photo_split(split)) for n in split_names]
              for split, split_names in names.items() if split_names}
    writer = {"got10k": write_got10k, "lasot": write_lasot, "trackingnet": write_trackingnet}.get(layout)
    if writer is not None:
        writer(root, splits)
    else:
        write_footage(root, splits["train"])
    return splits
