"""Evaluation frames/s: one-at-a-time vs batched vs batched over 2 Ray workers, one run, same inputs.

    python benchmarks/eval_throughput.py                      # tiny preset, 16 sequences x 60 frames
    python benchmarks/eval_throughput.py --preset stark_st50 --sequences 8 --frames 20

All three modes go through the real evaluation path (`track_sequences`) on the same generated
GOT-10k tree (JPEG frames read from disk) and the same model; boxes are checked to agree.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from stark.model.stark import build_stark
from stark.platform.config import load_config
from stark.platform.evaluation import EvalConfig, load_sequences, pack_model, track_sequences
from stark.platform.synthetic import make_sequences, write_got10k
from stark.platform.tracker import TrackerSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="stark_tiny")
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16, help="batch size of the batched modes")
    args = parser.parse_args()

    cfg = load_config(args.preset)
    torch.manual_seed(0)
    packed = pack_model(build_stark(cfg.model), cfg.model)
    settings = TrackerSettings(update_interval=25, score_threshold=0.5)
    with tempfile.TemporaryDirectory() as root:
        names = [f"GOT-10k_Val_{i + 1:06d}" for i in range(args.sequences)]
        write_got10k(root, {"val": make_sequences(names, args.frames, (320, 240), seed=0)})
        sequences = load_sequences(root, split="val")
        frames = sum(s.num_frames for s in sequences)
        modes = [
            ("one-at-a-time", EvalConfig(num_workers=0, batch_size=1)),
            (f"batched (batch {args.batch})", EvalConfig(num_workers=0, batch_size=args.batch)),
            (f"batched, 2 Ray workers (batch {args.batch // 2})",
             EvalConfig(num_workers=2, batch_size=max(1, args.batch // 2))),
        ]
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        rows, reference = [], None
        try:
            for name, eval_cfg in modes:
                # in-process modes use both cores; each Ray worker gets one
                torch.set_num_threads(2)
                start = time.perf_counter()
                results = track_sequences(packed, settings, sequences, eval_cfg)
                seconds = time.perf_counter() - start
                if reference is None:
                    reference = results
                worst = max(float(np.abs(results[k].boxes - reference[k].boxes).max()) for k in reference)
                rows.append((name, seconds, frames / seconds, worst))
        finally:
            ray.shutdown()

    print(f"{args.preset}: {args.sequences} sequences x {args.frames} frames (320x240 JPEG), "
          f"torch {torch.__version__}")
    header = f"{'mode':<36}{'seconds':>9}{'frames/s':>10}{'vs one-at-a-time':>18}{'max box diff px':>17}"
    print(header)
    print("-" * len(header))
    base = rows[0][2]
    for name, seconds, fps, worst in rows:
        print(f"{name:<36}{seconds:>9.1f}{fps:>10.1f}{fps / base:>17.2f}x{worst:>17.2e}")


if __name__ == "__main__":
    main()
