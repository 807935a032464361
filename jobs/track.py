"""`stark track VIDEO --box x,y,w,h`: track one object through a video (or a JPEG folder).

Output goes to `--out DIR`, else to `<home>/track/<model>/<video>/` (platform/home.py: one folder per model
and video, the same from any working folder; nothing is written to the current folder unless asked)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from stark.jobs.args import config_from_args, job_parser, job_tracking_uri
from stark.jobs.boundary import job_boundary
from stark.platform.console import PROGRESS_EVERY_S, ProgressPacer
from stark.platform.home import Home, output_folder

DEFAULT_MODEL = "models:/stark@champion"


class ProgressBar:
    """One line that redraws itself on a terminal, or elsewhere (logs, CI, the pipeline's steps) a line every
    `every` seconds at most, each a tenth of the frames further, and the last one (console.ProgressPacer)."""

    def __init__(self, total: int, stream=None, every: float = PROGRESS_EVERY_S):
        self.total, self.stream = total, stream or sys.stderr
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.pacer = ProgressPacer(total, every)
        self.tty = self.stream.isatty()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        rate = done / (now - self.start) if now > self.start else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        filled = int(30 * done / max(self.total, 1))
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} frames  {rate:.1f} frames/s  ETA {eta:.0f}s"
        if self.tty:
            if now - self.last_draw > 0.2 or done == self.total:
                self.stream.write("\r" + line + ("\n" if done == self.total else ""))
                self.stream.flush()
                self.last_draw = now
        elif self.pacer.due(done):
            print(line, file=self.stream, flush=True)


@job_boundary
def main(argv: list[str] | None = None, prog: str = "stark track") -> int:
    parser = job_parser(prog, "Track one object through a video file or a folder of frames; writes the "
                              "boxes (CSV) and an annotated video.", default_config="stark_st50")
    parser.add_argument("video", help="video file (mp4/avi/mkv/...) or a folder of JPEG/PNG frames")
    parser.add_argument("--box", required=True, help="the object in the first frame: x,y,w,h in pixels")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"checkpoint, official STARK file or MLflow URI (default: {DEFAULT_MODEL})")
    parser.add_argument("--out", default=None,
                        help="output folder (default: <home>/track/<model>/<video>, one per model and video)")
    parser.add_argument("--engine", choices=["torch", "onnx"], default=None,
                        help="run the network on PyTorch or ONNX Runtime (default: evaluate.engine from the config)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    tracking_uri = job_tracking_uri(cfg)
    from stark.platform.track.annotate import boxes_csv, check_box_in_frame, draw_box, parse_box_argument
    from stark.platform.ingest.clips import ClipEncoder, EncodeSettings
    from stark.platform.precision import AMP_DTYPES
    from stark.platform.track.frames import VideoFrames, open_frames
    from stark.platform.model_loading import load_model
    from stark.platform.storage import write_file_atomic
    from stark.platform.track.tracker import StarkTracker, target_present

    video = Path(args.video)
    out_dir = Path(args.out) if args.out else output_folder(Home.resolve(cfg.home).track, args.model, args.video)
    try:
        box = parse_box_argument(args.box)
        frames = open_frames(video)
        iterator = iter(frames)  # one pass over the video: each frame is decoded once
        first = next(iterator, None)
        if first is None:
            raise ValueError(f"{video}: no frames")
        check_box_in_frame(box, first.shape[1], first.shape[0])
        loaded = load_model(args.model, cfg.model, cfg.storage, tracking_uri)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = cfg.tracker_choice.for_model(loaded.tracker)
    fps = float(frames.reader.get_avg_fps()) if isinstance(frames, VideoFrames) else 30.0
    total = len(frames)
    engine = args.engine or cfg.evaluate.engine
    print(f"tracking {video} ({total} frames, {first.shape[1]}x{first.shape[0]}) with {loaded.kind} model "
          f"{args.model}, STARK-{loaded.model_cfg.variant}, update_interval={settings.update_interval}, "
          f"score_threshold={settings.score_threshold}, present_threshold={settings.present_threshold:.3g}, "
          f"engine {engine}", flush=True)

    if engine == "onnx":
        from stark.platform.track.export import exported_for
        from stark.platform.track.onnx_tracker import OnnxTracker

        try:
            exported = exported_for(loaded.model, loaded.model_cfg, settings, loaded.artifacts, out_dir / "onnx")
            tracker = OnnxTracker(exported, settings, device=cfg.evaluate.device)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        tracker = StarkTracker(loaded.model, loaded.model_cfg, settings, device=cfg.evaluate.device,
                               amp_dtype=AMP_DTYPES[cfg.evaluate.amp], channels_last=cfg.evaluate.channels_last)
    encoder = ClipEncoder(first.shape[1], first.shape[0], fps, EncodeSettings(crf=23, keyframe_interval=60))
    bar = ProgressBar(total)
    start = time.perf_counter()
    written = 0
    # frame by frame: each frame is drawn and encoded as soon as its box is known
    state = tracker.start(first, box)
    boxes, scores = [state.box.copy()], [float("nan")]
    encoder.add(draw_box(first, state.box, float("nan"), 0))
    written += 1
    bar.update(written)
    for frame in iterator:
        (score,) = tracker.step([state], [frame])
        boxes.append(state.box.copy())
        scores.append(score)
        present = bool(target_present(np.array([score]), settings)[0])
        encoder.add(draw_box(frame, state.box, score, written, present=present))
        written += 1
        bar.update(written)
    wall = time.perf_counter() - start
    present = target_present(np.array(scores), settings)
    csv_path = write_file_atomic(out_dir / "boxes.csv", boxes_csv(np.array(boxes), np.array(scores), present))
    video_path = write_file_atomic(out_dir / "tracked.mp4", encoder.finish())
    print(f"\ndone: {written} frames in {wall:.1f}s ({written / wall:.1f} frames/s); "
          f"dynamic template updated at {state.updates or 'no frame'}; target absent in "
          f"{int((~present).sum())} frame(s) (score < {settings.present_threshold:.3g})")
    print(f"  boxes          {csv_path}\n  annotated      {video_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
