"""Evaluation frames/s: one-at-a-time vs batched vs batched over 2 Ray workers, one run, same inputs.

    python benchmarks/eval_throughput.py                      # tiny preset, 16 sequences x 60 frames
    python benchmarks/eval_throughput.py --preset stark_st50 --sequences 8 --frames 20

All three modes go through the real evaluation path (`track_sequences`) on the same generated
GOT-10k tree (JPEG frames read from disk) and the same model; boxes are checked to agree.

A second table times the network alone (the tracker's inference copy, one search forward with cached
templates) at batch 1 and at the batch size, with 1 and 2 torch threads: how far batching can take
this model on this CPU, whatever the tracking loop around it does.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from stark.model.inference import inference_copy
from stark.model.stark import build_stark
from stark.model.summary import count_flops
from stark.platform.experiment import load_config
from stark.platform.evaluate.runner import load_sequences, pack_model, track_sequences
from stark.platform.evaluate.config import EvalConfig
from stark.platform.ingest.synthetic import make_sequences, write_got10k
from stark.platform.track.config import TrackerSettings


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

    network = network_ceiling(cfg.model, packed, args.batch)
    print(f"{args.preset}: {args.sequences} sequences x {args.frames} frames (320x240 JPEG), "
          f"torch {torch.__version__}")
    header = f"{'mode':<36}{'seconds':>9}{'frames/s':>10}{'vs one-at-a-time':>18}{'max box diff px':>17}"
    print(header)
    print("-" * len(header))
    base = rows[0][2]
    for name, seconds, fps, worst in rows:
        print(f"{name:<36}{seconds:>9.1f}{fps:>10.1f}{fps / base:>17.2f}x{worst:>17.2e}")

    gflop = count_flops(build_stark(cfg.model).eval(), cfg.model).per_frame / 1e9
    print(f"\nnetwork alone (search forward, cached templates, {gflop:.2f} GFLOP/frame): ms per frame (GFLOP/s)")
    print(f"{'batch':<8}{'1 thread':>18}{'2 threads':>18}")
    for batch, (one, two) in network.items():
        print(f"{batch:<8}{one:>9.2f} ({gflop / one * 1000:>5.0f}){two:>10.2f} ({gflop / two * 1000:>5.0f})")
    (b1_one, b1_two), (bn_one, bn_two) = network[1], network[args.batch]
    print(f"ceiling of batched vs one-at-a-time on 2 threads: {b1_two / bn_two:.2f}x "
          f"(a second thread speeds batch 1 by {b1_one / b1_two:.2f}x, batch {args.batch} by {bn_one / bn_two:.2f}x)")


def network_ceiling(model_cfg, packed: dict, batch: int) -> dict[int, tuple[float, float]]:
    """{batch size: (ms/frame with 1 torch thread, with 2)} for the tracker's inference copy."""
    model = build_stark(model_cfg)
    model.load_state_dict(packed["state"])
    model = inference_copy(model)
    z, x = model_cfg.template_size, model_cfg.search_size
    timings = {}
    for size in sorted({1, batch}):
        def crops(side):
            return (torch.rand(size, 3, side, side).contiguous(memory_format=torch.channels_last),
                    torch.zeros(size, side, side, dtype=torch.bool))

        row = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                templates = [model.forward_backbone(*crops(z))] * model_cfg.num_templates
                search = crops(x)
                for _ in range(2):
                    model.forward_search(templates, *search)
                runs = max(4, 96 // size)
                start = time.perf_counter()
                for _ in range(runs):
                    model.forward_search(templates, *search)
                row.append((time.perf_counter() - start) / runs / size * 1000)
        timings[size] = tuple(row)
    torch.set_num_threads(2)
    return timings


if __name__ == "__main__":
    main()
