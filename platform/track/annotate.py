"""Draw a tracked box and its score onto frames, and write the boxes CSV of `stark track`."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

BOX_COLOR = (255, 64, 32)
ABSENT_COLOR = (160, 160, 160)  # the box where the score says the target is not in view
TEXT_COLOR = (255, 255, 255)


def draw_box(frame: np.ndarray, box_xywh, score: float, frame_index: int, thickness: int = 3,
             present: bool = True) -> np.ndarray:
    """A copy of `frame` (HWC uint8) with the box outlined and 'frame N  score S' written above it; a frame
    whose score says the target is absent gets a dashed grey box labelled 'absent'."""
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    x, y, w, h = (float(v) for v in box_xywh)
    color = BOX_COLOR if present else ABSENT_COLOR
    if present:
        draw.rectangle([x, y, x + w, y + h], outline=color, width=thickness)
    else:
        _dashed_rectangle(draw, x, y, x + w, y + h, color, thickness)
    label = f"#{frame_index}" + ("" if math.isnan(score) else f"  score {score:.2f}") + ("" if present else "  absent")
    text_y = max(0.0, y - 14)
    left, top, right, bottom = draw.textbbox((x, text_y), label)
    draw.rectangle([left - 2, top - 1, right + 2, bottom + 1], fill=color)
    draw.text((x, text_y), label, fill=TEXT_COLOR)
    return np.asarray(image)


def _dashed_rectangle(draw: ImageDraw.ImageDraw, x1: float, y1: float, x2: float, y2: float, color, width: int,
                      dash: float = 8.0) -> None:
    """Outline of [x1, x2] x [y1, y2] in dashes of `dash` pixels with gaps as long."""
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = math.hypot(bx - ax, by - ay)
        steps = max(1, int(length // (2 * dash)) + 1)
        for k in range(steps):
            t0, t1 = 2 * k * dash / max(length, 1e-9), min((2 * k + 1) * dash / max(length, 1e-9), 1.0)
            if t0 >= 1.0:
                break
            draw.line([ax + (bx - ax) * t0, ay + (by - ay) * t0, ax + (bx - ax) * t1, ay + (by - ay) * t1],
                      fill=color, width=width)


def boxes_csv(boxes_xywh: np.ndarray, scores: np.ndarray, present: np.ndarray | None = None) -> bytes:
    """frame,x,y,w,h,score,present, one line per frame (score empty where there is none: frame 0, STARK-S;
    present 1 where the score reaches tracker.present_threshold or there is no score, else 0)."""
    if present is None:
        present = np.ones(len(boxes_xywh), dtype=bool)
    lines = ["frame,x,y,w,h,score,present"]
    for i, (box, score, here) in enumerate(zip(boxes_xywh, scores, present)):
        score_text = "" if math.isnan(score) else f"{score:.4f}"
        lines.append(f"{i}," + ",".join(f"{v:.2f}" for v in box) + f",{score_text},{int(bool(here))}")
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
