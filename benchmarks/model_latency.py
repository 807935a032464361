"""Per-frame tracking forward latency (templates cached, as the tracker runs), side by side per mode.

    python benchmarks/model_latency.py                 # tiny, S50 and ST50, all modes, 20 runs each
    python benchmarks/model_latency.py --quick         # a check that it runs: 3 runs, no torch.compile
    python benchmarks/model_latency.py --runs 5 --presets stark_tiny --no-compile
    python benchmarks/model_latency.py --no-onnx        # PyTorch rows only

A tracked frame = search-crop backbone + transformer over template and search tokens + heads.
Modes: fp32 under no_grad (the baseline), inference_mode, channels_last, the tracker's inference copy
(BatchNorm folded into the convolutions, channels_last), bf16 autocast, torch.compile, and the `stark export`
graphs on ONNX Runtime's CPU provider (fp32, fp16, and int8: the track graph dynamically quantised by
onnxruntime.quantization). Ratios are against fp32 measured in the same run on the same inputs; "box diff" is
the largest difference of a mode's boxes from fp32's, in units of the search crop, and "0.5% tol" says whether a
reduced-precision mode (bf16, fp16, int8) keeps it within the issue's bound, 0.5% of the target's size in the
crop (1 / search_factor of it): "MISSES" rows are printed, not dropped. Weights are random (seeded), so the
differences say how the arithmetic behaves, not how a trained model's boxes move.
"""
from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from contextlib import nullcontext

import torch
from ceiling import ceiling_line

from stark.model.inference import inference_copy
from stark.model.stark import build_stark
from stark.model.summary import cache_templates, count_flops, example_inputs
from stark.platform.experiment import load_config
from stark.platform.track.config import TrackerSettings
from stark.platform.track.export import export_tracker, quantize_track_graph
from stark.platform.track.onnx_tracker import OnnxTracker


def time_interleaved(steps: dict, runs: int, warmup: int) -> dict[str, float]:
    """Median seconds per step; modes alternate run by run so load changes hit them all alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(runs):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def modes(model, cached, search, search_mask, compile_too: bool):
    """name -> a zero-argument callable that tracks one frame and returns the network's output."""
    def plain(grad_ctx, autocast=None, net=model, x=search):
        def step():
            with grad_ctx(), (autocast or nullcontext()):
                return net.forward_search(cached, x, search_mask)
        return step

    yield "fp32 no_grad", plain(torch.no_grad)
    yield "fp32 inference_mode", plain(torch.inference_mode)
    cl_model = build_clone(model).to(memory_format=torch.channels_last)
    yield "channels_last", plain(torch.inference_mode, net=cl_model,
                                 x=search.contiguous(memory_format=torch.channels_last))
    channels_last_search = search.contiguous(memory_format=torch.channels_last)
    yield "folded BN + ch_last", plain(torch.inference_mode, net=inference_copy(model), x=channels_last_search)
    yield "bf16 autocast", plain(torch.inference_mode, autocast=torch.autocast("cpu", dtype=torch.bfloat16))
    if compile_too:
        compiled = torch.compile(model.forward_search, dynamic=False)

        def step():
            with torch.no_grad():
                return compiled(cached, search, search_mask)
        yield "torch.compile", step


def onnx_modes(model, cfg, template_crops, search, search_mask, folder: str, threads: int):
    """name -> a zero-argument callable that tracks one frame through ONNX Runtime and returns its boxes."""
    fp32 = export_tracker(model, cfg, TrackerSettings(), f"{folder}/fp32")
    exports = {"fp32": fp32, "fp16": export_tracker(model, cfg, TrackerSettings(), f"{folder}/fp16", fp16=True),
               "int8": quantize_track_graph(fp32, f"{folder}/int8")}
    search, search_mask = search.numpy(), search_mask.numpy()
    for precision, exported in exports.items():
        tracker = OnnxTracker(exported, TrackerSettings(), threads=threads)
        tokens = [tracker._forward_templates(z.numpy(), m.numpy()) for z, m in template_crops]

        def step(tracker=tracker, tokens=tokens):
            return tracker._forward_search(tokens, search, search_mask)[0]
        yield f"onnxruntime {precision}", step


def build_clone(model):
    import copy
    return copy.deepcopy(model)


def box_difference(boxes, reference: torch.Tensor) -> float:
    """Largest |boxes - reference| (cxcywh, units of the search crop); NaN when a step returns nothing."""
    if boxes is None:
        return math.nan
    if isinstance(boxes, dict):
        boxes = boxes["pred_boxes"]
    return float((torch.as_tensor(boxes).float() - reference.float()).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["stark_tiny", "stark_s50", "stark_st50"])
    parser.add_argument("--runs", type=int, default=None, help="timed runs per mode (default 20; --quick: 3)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up runs per mode (default 3; --quick: 1)")
    parser.add_argument("--quick", action="store_true",
                        help="check that every row runs and prints: 3 runs after 1 warm-up, no torch.compile "
                             "(timings mean little)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to build on CPU)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime rows")
    args = parser.parse_args()
    args.runs = args.runs or (3 if args.quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.no_compile = args.no_compile or args.quick
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(ceiling_line())  # this machine's own matmul ceiling, beside the figures
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.runs} runs after {args.warmup} warm-up")
    header = (f"{'preset':<12}{'mode':<22}{'ms/frame':>10}{'frames/s':>10}{'vs fp32':>9}{'GFLOP/frame':>13}"
              f"{'GFLOP/s':>9}{'box diff':>11}{'0.5% tol':>10}")
    print(header)
    print("-" * len(header))
    for preset in args.presets:
        cfg = load_config(preset).model
        model = build_stark(cfg).eval()
        gflop = count_flops(model, cfg).per_frame / 1e9
        templates, template_masks, search, search_mask = example_inputs(cfg)
        cached = cache_templates(model, templates, template_masks)
        steps = dict(modes(model, cached, search, search_mask, not args.no_compile))
        with tempfile.TemporaryDirectory() as folder:
            if not args.no_onnx:
                steps.update(onnx_modes(model, cfg, list(zip(templates, template_masks)), search, search_mask,
                                        folder, args.threads))
            medians = time_interleaved(steps, args.runs, args.warmup)
            with torch.no_grad():
                reference = model.forward_search(cached, search, search_mask)["pred_boxes"]
            diffs = {name: box_difference(step(), reference) for name, step in steps.items()}
        baseline = medians["fp32 no_grad"]
        bound = 0.005 / cfg.search_factor  # 0.5% of the target's size in the search crop
        for name, seconds in medians.items():
            reduced = any(p in name for p in ("bf16", "fp16", "int8"))
            verdict = "-" if not reduced else "ok" if diffs[name] <= bound else "MISSES"
            print(f"{preset:<12}{name:<22}{seconds * 1e3:>10.1f}{1 / seconds:>10.2f}{baseline / seconds:>8.2f}x"
                  f"{gflop:>13.2f}{gflop / seconds:>9.1f}{diffs[name]:>11.1e}{verdict:>10}", flush=True)


if __name__ == "__main__":
    main()
