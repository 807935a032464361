"""Training-loop overhead: the Ray Train loop (1 worker) vs a bare PyTorch loop on the same batches.

    python benchmarks/train_step.py                        # ~3 min on 2 cores (tiny preset)
    python benchmarks/train_step.py --steps 60 --batch-size 16 --threads 2
    python benchmarks/train_step.py --quick                 # smoke run: 12 steps, 1 repeat

Three loops train stage 1 of the same model (same seed, same initial weights, same `train_step`):
- bare PyTorch: a `for` loop over batches already in memory;
- Ray Train, pre-built batches: `stark train`'s worker function (`train.worker.train_loop_per_worker`,
  via `train.trainer.fit_stage`) on 1 worker, fed the same batches from a materialised Ray Dataset
  through `get_dataset_shard` / `iter_torch_batches` - the overhead of Ray Train + Ray Data iteration;
- Ray Train, Ray Data stream: the same worker fed by the real training stream (clips decoded and
  cropped by `data.decode_actors` decode workers while it trains) - its data-wait fraction says whether the
  stream keeps up (target: < 5% of the step). The stream ships uint8 crops; every loop runs the same
  `train_step`, which applies the photometric augmentation and normalisation on the batch first.
steps/s runs from the first batch to the end of the loop (Ray start-up, worker start and stream
start-up excluded for all three; they are printed separately). Every loop runs --repeats times and the
best run counts (other jobs on a shared machine only ever slow a run down). The training worker gets
--threads CPUs and so --threads torch threads, as the bare loop does.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import sys
import tempfile
import time

import torch

from ceiling import ceiling_line
from stark.model.losses import build_loss
from stark.model.stark import build_stark
from stark.platform.experiment import load_config
from stark.platform.data.frame_index import load_frame_index
from stark.platform.train.run_layout import RunPaths
from stark.platform.train.stream import StageStream
from stark.platform.train.step import build_optimizer, make_grad_scaler, train_step

SEED, STAGE = 0, 1


def make_data(work: str, cfg) -> str:
    """Synthetic GOT-10k sequences, ingested into clips + manifest; returns the ingest folder."""
    from stark.platform.ingest.run import ingest
    from stark.platform.ingest.synthetic import write_demo_dataset

    write_demo_dataset(f"{work}/src", "got10k", num_sequences=6, num_frames=60, size=(320, 240), seed=SEED)
    ingest(f"{work}/src", f"{work}/data", cfg.ingest, out=io.StringIO())
    return f"{work}/data"


def prebuilt_batches(manifest: str, cfg, steps: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    from stark.platform.data.stream import build_training_stream

    ds = build_training_stream([manifest], cfg.data, cfg.model, STAGE, 0, SEED)
    columns = ("template", "template_mask", "search", "search_mask", "search_box", "label", "brightness", "grayscale")
    batches = [{k: b[k] for k in columns} for b in ds.iter_torch_batches(batch_size=batch_size, drop_last=True)]
    assert len(batches) >= steps
    return batches[:steps]


def bare_loop(cfg, batches, threads: int) -> float:
    """steps/s of a plain PyTorch loop over batches in memory."""
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.train.seed)
    model = build_stark(cfg.model)
    model.train_stage(STAGE)
    optimizer = build_optimizer(model, STAGE, cfg.train)
    scaler, loss_fn = make_grad_scaler(cfg.train.amp, torch.device("cpu")), build_loss(STAGE)
    start = time.perf_counter()
    for batch in batches:
        terms = train_step(model, loss_fn, STAGE, batch, optimizer, scaler, cfg.train.amp, cfg.train.grad_clip)
    float(terms["loss"])  # the last step has finished
    return len(batches) / (time.perf_counter() - start)


def ray_loop(cfg, work: str, name: str, dataset, end_sample: int) -> dict:
    """Run `stark train`'s worker function for one stage on 1 Ray Train worker; its final metrics."""
    from stark.platform.train.trainer import fit_stage
    from stark.platform.train.run_layout import RunPaths

    cfg.name = name
    paths = RunPaths.for_config(f"{work}/runs", name)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = fit_stage(cfg, STAGE, paths, dataset,
                           {"end_sample": end_sample, "init_from": None, "storage": None, "mlflow": None})
    metrics = dict(result.metrics)
    metrics["wall_s"] = time.perf_counter() - started
    return metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="stark_tiny", help="preset (model sizes, optimiser settings)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads = CPUs of the training worker")
    parser.add_argument("--decode-actors", type=int, default=1, help="decode actors feeding the Ray Data stream")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: 12 steps, 1 repeat")
    parser.add_argument("--samples-per-window", type=int, default=16, help="data.samples_per_window (4 windows a unit)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 12, 1

    import logging

    import ray

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-dataset progress lines
    steps, batch_size = args.steps, args.batch_size
    samples = steps * batch_size
    cfg = load_config(args.config, [
        f"data.samples_per_epoch={samples}", f"data.decode_actors={args.decode_actors}",
        f"train.batch_size={batch_size}", "train.num_workers=1", f"train.cpus_per_worker={args.threads}",
        "train.stages=[1]", "train.stage1.epochs=1", f"train.checkpoint_every_steps={steps + 1}",
        f"train.log_every_steps={steps + 1}", "train.max_failures=0", "ingest.preset=ultrafast",
        # units of 4 windows x 16 samples: a short run crosses several units, so the data wait includes
        # the stream keeping pace, not only one unit decoded before the first batch
        f"data.samples_per_window={args.samples_per_window}", "data.windows_in_flight=4"])
    ray.init(num_cpus=args.threads + args.decode_actors + 1, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    work = tempfile.mkdtemp(prefix="stark-train-bench-")
    print(ceiling_line(), flush=True)
    print(f"train_step benchmark: {args.config}, stage {STAGE}, batch {batch_size}, {steps} steps, "
          f"{args.threads} torch thread(s), best of {args.repeats}", flush=True)
    manifest = make_data(work, cfg)
    cfg.data.manifests = [manifest]
    batches = prebuilt_batches(manifest, cfg, steps, batch_size)

    index_ref = ray.put(load_frame_index([manifest], cfg.data, cfg.model.num_templates))
    rows = {"bare": [], "prebuilt": [], "stream": []}
    extras = {"prebuilt": [], "stream": []}
    rows_ds = [{k: v[i].numpy() for k, v in b.items()} for b in batches for i in range(batch_size)]
    prebuilt = ray.data.from_items(rows_ds).materialize()  # in the object store before the clock starts
    for repeat in range(args.repeats):
        rows["bare"].append(bare_loop(cfg, batches, args.threads))
        m = ray_loop(cfg, work, f"prebuilt-{repeat}", prebuilt, samples)
        rows["prebuilt"].append(m["run_steps_per_s"])
        extras["prebuilt"].append(m)
        stage_dir = RunPaths.for_config(f"{work}/runs", f"stream-{repeat}").stage_dir(STAGE)
        stream = StageStream(index_ref, cfg.data, cfg.model, STAGE, SEED, samples, stage_dir)
        m = ray_loop(cfg, work, f"stream-{repeat}", stream, samples)
        rows["stream"].append(m["run_steps_per_s"])
        extras["stream"].append(m)
        print(f"  repeat {repeat + 1}: bare {rows['bare'][-1]:.2f}, Ray Train pre-built {rows['prebuilt'][-1]:.2f}, "
              f"Ray Train stream {rows['stream'][-1]:.2f} steps/s", flush=True)

    best = {k: max(v) for k, v in rows.items()}
    best_of = {k: max(extras[k], key=lambda m: m["run_steps_per_s"]) for k in extras}
    threads = best_of["prebuilt"].get("torch_threads")
    print()
    print(f"| loop (stage {STAGE}, {args.config}, batch {batch_size}) | steps/s (best) | steps/s (median) "
          f"| time/step vs bare | data wait | first batch after | fit() wall |")
    print("|---|---|---|---|---|---|---|")
    print(f"| bare PyTorch, pre-built batches | {best['bare']:.2f} | {statistics.median(rows['bare']):.2f} | 1.00x "
          f"| - | - | - |")
    for key, label in (("prebuilt", "Ray Train, 1 worker, pre-built batches"),
                       ("stream", "Ray Train, 1 worker, Ray Data stream")):
        m = best_of[key]
        print(f"| {label} | {best[key]:.2f} | {statistics.median(rows[key]):.2f} | {best['bare'] / best[key]:.2f}x "
              f"| {m['run_data_wait_fraction']:.0%} | {m['startup_s']:.1f} s | {m['wall_s']:.0f} s |")
    wait = best_of["stream"]["run_data_wait_fraction"]
    print(f"\ndata wait with the stream: {wait:.1%} of the step (target < 5%): {'OK' if wait < 0.05 else 'ABOVE TARGET'}")
    overhead = best["bare"] / best["prebuilt"]
    print(f"Ray Train overhead on the same batches: {overhead:.2f}x time per step (target <= 1.10x): "
          f"{'OK' if overhead <= 1.10 else 'ABOVE TARGET'}; worker torch threads {threads}")
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
