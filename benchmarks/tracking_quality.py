"""Tracking quality on footage the models never saw, beside the answer that needs no model.

Generates N sequences (default 12 x 150 frames at 480x270) from the "test" photographs
(synthetic.PHOTO_SPLITS: neither the starter's recipe nor the demo pipeline trains or tunes on them),
tracks them with each model, and prints, side by side with the static box (the first frame's box on
every frame): AO, SR50, SR75, the share of sequences where the model beats the static box, the share of
visible frames at IoU 0, and the ROC AUC of the score for "IoU > 0.5" (the score head's job).

    python benchmarks/tracking_quality.py                                   # the shipped starter
    python benchmarks/tracking_quality.py --models starter:stark_tiny stark-pipeline/tune/model_tuned.pt
    python benchmarks/tracking_quality.py --seed 7 --sequences 24           # other draws
Targets (issue 13): AO >= static + 0.25, SR50 >= 0.40, score AUC >= 0.85.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np

from ceiling import ceiling_line
from stark.platform.evaluate import metrics as M
from stark.platform.experiment import load_config
from stark.platform.evaluate.report import score_auc
from stark.platform.evaluate.runner import load_sequences, track_model
from stark.platform.evaluate.config import EvalConfig
from stark.platform.model_loading import load_model
from stark.platform.ingest.synthetic import iter_sequences, write_got10k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["starter:stark_tiny"])
    parser.add_argument("--config", default="pipeline_demo", help="preset for crop sizes and tracker defaults")
    parser.add_argument("--sequences", type=int, default=12)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="480x270")
    parser.add_argument("--photos", default="test", choices=["train", "val", "test"])
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    cfg = load_config(args.config)

    print(ceiling_line())
    started = time.perf_counter()
    names = [f"GOT-10k_Val_{i:06d}" for i in range(1, args.sequences + 1)]
    root = tempfile.mkdtemp(prefix="tracking-quality-")
    write_got10k(root, {"val": iter_sequences(names, args.frames, (width, height), args.seed, photos=args.photos)})
    sequences = load_sequences(root, split="val")
    print(f"{len(sequences)} sequences x {args.frames} frames at {width}x{height} from the {args.photos!r} "
          f"photographs, seed {args.seed} (generated in {time.perf_counter() - started:.0f} s)\n")

    def row(boxes_of) -> tuple[dict[str, float], dict[str, float]]:
        per = {s.name: M.sequence_metrics(boxes_of(s), s.boxes_xywh, s.visible, protocol="got10k") for s in sequences}
        ious = np.concatenate([M.box_iou_xywh(boxes_of(s), s.boxes_xywh)[s.visible] for s in sequences])
        return M.aggregate(per).scores, {"per_ao": {k: v.mean_iou for k, v in per.items()},
                                         "iou0": float((ious <= 0).mean())}

    static, static_extra = row(lambda s: np.repeat(s.boxes_xywh[:1], s.num_frames, axis=0))
    header = f"{'model':<34}{'AO':>7}{'SR50':>7}{'SR75':>7}{'AO-static':>10}{'beats static':>13}{'IoU=0':>7}{'score AUC':>10}{'fps':>7}"
    lines = [f"{'static box (first frame)':<34}{static['ao']:>7.3f}{static['sr50']:>7.3f}{static['sr75']:>7.3f}"
             f"{0:>10.3f}{'-':>13}{static_extra['iou0']:>7.2f}{'-':>10}{'-':>7}"]
    for spec in args.models:
        loaded = load_model(spec, cfg.model)
        settings = cfg.tracker_choice.for_model(loaded.tracker)
        tick = time.perf_counter()
        results = track_model(loaded, settings, sequences, EvalConfig(num_workers=0, batch_size=6))
        fps = sum(s.num_frames for s in sequences) / (time.perf_counter() - tick)
        scores, extra = row(lambda s: results[s.name].boxes)
        beats = np.mean([extra["per_ao"][n] > static_extra["per_ao"][n] for n in extra["per_ao"]])
        auc = score_auc(results, sequences)
        lines.append(f"{spec[-34:]:<34}{scores['ao']:>7.3f}{scores['sr50']:>7.3f}{scores['sr75']:>7.3f}"
                     f"{scores['ao'] - static['ao']:>10.3f}{beats:>13.0%}{extra['iou0']:>7.2f}{auc:>10.3f}{fps:>7.1f}")
    print(header)
    print("\n".join(lines))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
