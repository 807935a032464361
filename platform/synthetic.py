"""Generated tracking data: photographs that scikit-image ships, with a pasted object moving over them.

Used by the tests, the benchmark and the demo pipeline on a fresh machine (no download needed). Each
sequence pans a camera over a background photograph while a patch cut from another photograph moves,
changes scale, leaves the frame partly and disappears for a stretch (absent frames). Writers lay a set
of sequences out exactly as each benchmark ships on disk: GOT-10k, LaSOT, TrackingNet, and a user's
own footage (video files + a `frame,x,y,w,h` CSV per video).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from PIL import Image

from stark.platform.lasot_split import LASOT_TEST_SEQUENCES

# scikit-image's bundled photographs (no network needed): backgrounds, and (photo, y0, y1, x0, x1) object cut-outs
BACKGROUNDS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "brick", "gravel")
OBJECTS = (("astronaut", 30, 230, 150, 330), ("chelsea", 20, 260, 100, 340), ("coffee", 30, 300, 190, 450),
           ("rocket", 40, 420, 280, 370), ("coins", 0, 303, 0, 384))
JPEG_QUALITY = 95  # what the benchmarks ship (GOT-10k, LaSOT frames are high-quality JPEGs)


@dataclass
class SyntheticSequence:
    name: str
    frames: np.ndarray  # [N, H, W, 3] uint8
    boxes_xywh: np.ndarray  # [N, 4] float64, pixels, clipped to the frame; zeros where absent
    absent: np.ndarray  # [N] bool: the object is not in the frame at all
    cover: np.ndarray  # [N] int, 0..8: eighths of the object inside the frame (GOT-10k's cover.label)
    fps: float = 30.0

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


def make_sequence(name: str, num_frames: int, size: tuple[int, int], rng: np.random.Generator,
                  with_absence: bool = True, fps: float = 30.0) -> SyntheticSequence:
    """One sequence of `num_frames` frames of `size` = (width, height)."""
    width, height = size
    photo = _photo(BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
    # the "camera" sees a window 30% larger than the frame and pans across it; the window is cut from the
    # photograph near its native scale (as a camera of that resolution would see it), not the whole
    # photograph shrunk, which would pack unnaturally fine texture into small frames
    big_w, big_h = int(width * 1.3), int(height * 1.3)
    zoom = max(big_w / photo.shape[1], big_h / photo.shape[0], rng.uniform(0.9, 1.2))
    photo = _resize(photo, int(math.ceil(photo.shape[1] * zoom)), int(math.ceil(photo.shape[0] * zoom)))
    top = int(rng.integers(0, photo.shape[0] - big_h + 1))
    left = int(rng.integers(0, photo.shape[1] - big_w + 1))
    background = photo[top:top + big_h, left:left + big_w]
    pan_end = rng.uniform(0, [big_w - width, big_h - height])

    photo, y0, y1, x0, x1 = OBJECTS[rng.integers(len(OBJECTS))]
    patch = _photo(photo)[y0:y1, x0:x1]
    aspect = patch.shape[1] / patch.shape[0]
    base = rng.uniform(0.18, 0.32) * min(width, height)
    phase = rng.uniform(0, 2 * math.pi, size=3)
    speed = rng.uniform(0.6, 1.2, size=3)

    absent = np.zeros(num_frames, dtype=bool)
    if with_absence and num_frames >= 20:
        start = int(rng.integers(num_frames // 3, num_frames // 2))
        absent[start:start + max(2, num_frames // 8)] = True

    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    boxes = np.zeros((num_frames, 4))
    cover = np.zeros(num_frames, dtype=np.int64)
    for t in range(num_frames):
        s = t / max(num_frames - 1, 1)
        px, py = (pan_end * s).astype(int)
        frame = background[py:py + height, px:px + width].copy()
        scale = 1.0 + 0.25 * math.sin(2 * math.pi * speed[2] * s + phase[2])
        obj_h = max(4, int(round(base * scale / math.sqrt(aspect))))
        obj_w = max(4, int(round(base * scale * math.sqrt(aspect))))
        # the centre sweeps wide enough that the object sometimes leaves the frame partly
        cx = width / 2 + 0.45 * width * math.sin(2 * math.pi * speed[0] * s + phase[0])
        cy = height / 2 + 0.38 * height * math.sin(2 * math.pi * speed[1] * s + phase[1])
        bx, by = int(round(cx - obj_w / 2)), int(round(cy - obj_h / 2))
        # the part of the object inside the frame
        fx0, fy0 = max(bx, 0), max(by, 0)
        fx1, fy1 = min(bx + obj_w, width), min(by + obj_h, height)
        inside = max(fx1 - fx0, 0) * max(fy1 - fy0, 0)
        if not absent[t] and inside > 0:
            obj = _resize(patch, obj_w, obj_h)
            frame[fy0:fy1, fx0:fx1] = obj[fy0 - by:fy1 - by, fx0 - bx:fx1 - bx]
            boxes[t] = (fx0, fy0, fx1 - fx0, fy1 - fy0)
            cover[t] = int(math.ceil(8 * inside / (obj_w * obj_h)))
        else:
            absent[t] = absent[t] or inside == 0
        frames[t] = frame
    return SyntheticSequence(name, frames, boxes, absent, cover, fps)


def make_sequences(names: list[str], num_frames: int, size: tuple[int, int], seed: int,
                   fps: float = 30.0) -> list[SyntheticSequence]:
    rng = np.random.default_rng(seed)
    return [make_sequence(name, num_frames, size, rng, fps=fps) for name in names]


# --- writers, one per on-disk layout ---------------------------------------------------------------------
def _box_lines(boxes: np.ndarray, sep: str = ",") -> str:
    return "".join(sep.join(f"{v:g}" for v in box) + "\n" for box in boxes)


def _write_jpegs(folder: str, frames: np.ndarray, name_of) -> None:
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(os.path.join(folder, name_of(i)), quality=JPEG_QUALITY)


def write_got10k(root: str, splits: dict[str, list[SyntheticSequence]]) -> None:
    """root/{split}/list.txt and root/{split}/<seq>/{00000001.jpg.., groundtruth.txt, absence.label,
    cover.label, meta_info.ini}; the test split ships only the first box and no labels."""
    for split, sequences in splits.items():
        split_dir = os.path.join(root, split)
        os.makedirs(split_dir, exist_ok=True)
        with open(os.path.join(split_dir, "list.txt"), "w") as f:
            f.write("".join(f"{s.name}\n" for s in sequences))
        for seq in sequences:
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
    splits = {split: [make_sequence(n, num_frames, size, rng, fps=fps) for n in split_names]
              for split, split_names in names.items() if split_names}
    writer = {"got10k": write_got10k, "lasot": write_lasot, "trackingnet": write_trackingnet}.get(layout)
    if writer is not None:
        writer(root, splits)
    else:
        write_footage(root, splits["train"])
    return splits
