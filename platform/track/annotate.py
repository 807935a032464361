"""Draw a tracked box and its score onto frames, and write the boxes CSV of `stark track`."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

BOX_COLOR = (255, 64, 32)
TEXT_COLOR = (255, 255, 255)


def draw_box(frame: np.ndarray, box_xywh, score: float, frame_index: int, thickness: int = 3) -> np.ndarray:
    """A copy of `frame` (HWC uint8) with the box outlined and 'frame N  score S' written above it."""
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    x, y, w, h = (float(v) for v in box_xywh)
    draw.rectangle([x, y, x + w, y + h], outline=BOX_COLOR, width=thickness)
    label = f"#{frame_index}" + ("" if math.isnan(score) else f"  score {score:.2f}")
    text_y = max(0.0, y - 14)
    left, top, right, bottom = draw.textbbox((x, text_y), label)
    draw.rectangle([left - 2, top - 1, right + 2, bottom + 1], fill=BOX_COLOR)
    draw.text((x, text_y), label, fill=TEXT_COLOR)
    return np.asarray(image)


def boxes_csv(boxes_xywh: np.ndarray, scores: np.ndarray) -> bytes:
    """frame,x,y,w,h,score, one line per frame (score empty where there is none: frame 0, STARK-S)."""
    lines = ["frame,x,y,w,h,score"]
    for i, (box, score) in enumerate(zip(boxes_xywh, scores)):
        score_text = "" if math.isnan(score) else f"{score:.4f}"
        lines.append(f"{i}," + ",".join(f"{v:.2f}" for v in box) + f",{score_text}")
    return ("\n".join(lines) + "\n").encode()


def parse_box_argument(text: str) -> np.ndarray:
    """'x,y,w,h' from the command line -> float array, or ValueError naming the problem."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        box = np.array([float(p) for p in parts])
    except ValueError as exc:
        raise ValueError(f"--box {text!r}: expected four numbers x,y,w,h") from exc
    if box.shape != (4,) or not np.isfinite(box).all():
        raise ValueError(f"--box {text!r}: expected four finite numbers x,y,w,h")
    if box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"--box {text!r}: width and height must be > 0")
    return box


def check_box_in_frame(box: np.ndarray, width: int, height: int) -> None:
    x, y, w, h = box
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise ValueError(f"--box {','.join(f'{v:g}' for v in box)} lies outside the {width}x{height} frame")
