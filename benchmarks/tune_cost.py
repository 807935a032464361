"""Cost of tuning K settings: plain grid evaluation vs early stopping + reuse, side by side, one run.

    python benchmarks/tune_cost.py                                   # K = 16 and 64, a random tiny model
    python benchmarks/tune_cost.py --model stark-pipeline/runs/pipeline_demo/stage2/final.pt

Both paths run the real Ray Tune search (`run_search`) over the same generated validation sequences.
"plain" evaluates every setting on every sequence from frame 0; "fast" shares the settings-independent
base run (counted in its cost) and lets ASHA stop settings after sequence chunks. Costs are given in
frames tracked and in units of one full evaluation (K single evaluations = K).
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import numpy as np
import torch

from stark.model.stark import build_stark
from stark.platform.experiment import load_config
from stark.platform.mlflow_runs import MlflowConfig, resolve_tracking_uri
from stark.platform.evaluate.runner import load_sequences, pack_model, track_sequences
from stark.platform.evaluate.config import EvalConfig
from stark.platform.ingest.synthetic import make_sequences, write_got10k
from stark.platform.track.config import TrackerChoice, TrackerSettings
from stark.platform.tune.search import best_setting, compute_bases, run_search, trial_table
from stark.platform.tune.config import TuneConfig


def grid(k: int) -> tuple[list[int], list[float]]:
    side = int(round(k ** 0.5))
    intervals = sorted({int(v) for v in np.geomspace(2, 60, side).round()})
    while len(intervals) < side:
        intervals.append(intervals[-1] + 1)
    return intervals, [round(float(t), 3) for t in np.linspace(0.2, 0.8, side)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint to tune (default: a random tiny STARK-ST)")
    parser.add_argument("--k", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()

    import ray

    if args.model:
        from stark.platform.model_loading import load_model

        loaded = load_model(args.model, tracking_uri=resolve_tracking_uri(MlflowConfig()))
        packed = pack_model(loaded.model, loaded.model_cfg)
        settings = TrackerChoice().for_model(loaded.tracker)  # what trials keep but for the searched pair
    else:
        cfg = load_config("stark_tiny").model
        torch.manual_seed(0)
        packed = pack_model(build_stark(cfg), cfg)
        settings = TrackerSettings()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        names = [f"GOT-10k_Val_{i:06d}" for i in range(1, args.sequences + 1)]
        write_got10k(root, {"val": make_sequences(names, args.frames, (160, 120), seed=11)})
        sequences = load_sequences(root, split="val")
        eval_frames = sum(s.num_frames - 1 for s in sequences)
        eval_cfg = EvalConfig(num_workers=0, batch_size=8)
        start = time.perf_counter()
        track_sequences(packed, TrackerSettings(10, 0.5), sequences, eval_cfg)
        one_eval_s = time.perf_counter() - start
        for k in args.k:
            intervals, thresholds = grid(k)
            base = TuneConfig(update_intervals=intervals, score_thresholds=thresholds, chunk_sequences=2,
                              batch_size=8, storage_path=f"{root}/tune", max_concurrent_trials=2)
            for label, cfg in (("plain grid", dataclasses.replace(base, scheduler="none", reuse=False)),
                               ("early stop + reuse", dataclasses.replace(base, scheduler="asha", reuse=True,
                                                                          reduction_factor=3))):
                start = time.perf_counter()
                bases = compute_bases(packed, settings, sequences, eval_cfg) if cfg.reuse else None
                frames = eval_frames if cfg.reuse else 0  # the base run is one evaluation's worth of frames
                trials = trial_table(run_search(packed, settings, sequences, cfg, "got10k", f"{label[:5]}-{k}", EvalConfig(),
                                                None, bases))
                seconds = time.perf_counter() - start
                frames += sum(t.frames_tracked for t in trials)
                best = best_setting(trials)
                rows.append((k, label, len(intervals) * len(thresholds), seconds, frames, best))
    ray.shutdown()

    print(f"{args.sequences} sequences x {args.frames} frames; one evaluation = {eval_frames} frames, "
          f"{one_eval_s:.1f}s (in process)")
    header = (f"{'K':>4}  {'path':<20}{'wall s':>8}{'frames':>9}{'cost in evals':>15}{'cost / K':>10}"
              f"   best (interval, threshold, AO)")
    print(header)
    print("-" * len(header))
    for k, label, n, seconds, frames, best in rows:
        evals = frames / eval_frames
        print(f"{n:>4}  {label:<20}{seconds:>8.1f}{frames:>9}{evals:>15.2f}{evals / n:>10.2f}"
              f"   ({best.update_interval}, {best.score_threshold:g}, {best.score:.4f})")


if __name__ == "__main__":
    main()
