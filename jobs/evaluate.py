"""`stark evaluate --model MODEL --data DATA`: track a split, write result files, metrics and plots.

Output goes to `--out`, else to `<evaluate.output>/<model>/<data>` (one folder per model and data set, so
evaluations never overwrite each other). Progress is a line per sequence as it finishes; the one speed
figure is THROUGHPUT: frames tracked / wall-clock seconds of tracking (all workers together, frame decoding
included, model loading not).
"""
from __future__ import annotations

import dataclasses
import sys
import time

from stark.jobs.args import add_model_data_args, config_from_args, job_parser, load_model_and_sequences, job_tracking_uri
from stark.jobs.boundary import job_boundary
from stark.platform.home import output_folder

THROUGHPUT = "frames tracked / wall-clock seconds of tracking, all workers together"


@job_boundary
def main(argv: list[str] | None = None, prog: str = "stark evaluate") -> int:
    parser = job_parser(prog, "Track every sequence of DATA with MODEL; write benchmark result files, "
                              "metrics, tables and plots.", default_config="stark_st50")
    add_model_data_args(
        parser, model_help="platform checkpoint, official STARK release file, or MLflow URI (models:/stark@champion)",
        data_help="manifest (file or ingest folder, local or s3://) or a GOT-10k/LaSOT/TrackingNet tree",
        out_help="output folder (default: <evaluate.output>/<model>/<data>, one per model and data set)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    tracking_uri = job_tracking_uri(cfg)
    from stark.platform.evaluate.report import log_report, write_report
    from stark.platform.evaluate.runner import track_model

    found = load_model_and_sequences(args, cfg, tracking_uri)
    if found is None:
        return 2
    loaded, sequences = found
    if cfg.evaluate.max_sequences:
        sequences = sequences[:cfg.evaluate.max_sequences]
    benchmarks = {s.dataset for s in sequences}
    benchmark = cfg.evaluate.benchmark or (benchmarks.pop() if len(benchmarks) == 1 else None)
    if benchmark is None:
        print(f"error: {args.data} mixes datasets {sorted(benchmarks)}; choose one with evaluate.benchmark=... "
              f"or --split", file=sys.stderr)
        return 2
    settings = cfg.tracker_choice.for_model(loaded.tracker)
    out_dir = args.out or str(output_folder(cfg.evaluate.output, args.model, args.data, args.split))
    total_frames = sum(s.num_frames for s in sequences)
    print(f"evaluating {loaded.kind} model {args.model} (STARK-{loaded.model_cfg.variant}) on {len(sequences)} "
          f"{benchmark} sequence(s), {total_frames} frames; update_interval={settings.update_interval}, "
          f"score_threshold={settings.score_threshold}; {cfg.evaluate.num_workers or 'no'} Ray worker(s), "
          f"batch {cfg.evaluate.batch_size}, engine {cfg.evaluate.engine}", flush=True)

    start = time.perf_counter()
    done = {"sequences": 0, "frames": 0}

    def progress(seq, result):
        done["sequences"] += 1
        done["frames"] += len(result.boxes)
        elapsed = time.perf_counter() - start
        rate = done["frames"] / elapsed if elapsed > 0 else 0.0
        left = total_frames - done["frames"]
        eta = f"ETA {left / rate:.0f}s" if rate > 0 and left else "done"
        print(f"[{done['sequences']}/{len(sequences)}] {seq.name}: {len(result.boxes)} frames | "
              f"{done['frames']}/{total_frames} frames in {elapsed:.0f}s, {rate:.1f} frames/s | {eta}", flush=True)

    exported = None
    if cfg.evaluate.engine == "onnx" and loaded.artifacts is not None:  # a registered version's own graphs
        from stark.platform.track.export import find_exported, read_exported

        if (graphs := find_exported(loaded.artifacts)) is not None:
            exported = read_exported(graphs)
            print(f"ONNX graphs of the registered version: {graphs}", flush=True)
    results = track_model(loaded, settings, sequences, cfg.evaluate, cfg.storage, on_result=progress,
                          exported=exported)
    wall = time.perf_counter() - start

    run_id = None
    if args.no_mlflow:
        report = write_report(benchmark, results, sequences, out_dir, absent_as_failure=cfg.evaluate.absent_as_failure)
    else:
        from stark.platform.experiment import flatten, to_dict
        from stark.platform.mlflow_runs import job_run, log_metrics, log_params

        with job_run(tracking_uri, "evaluate", f"evaluate-{benchmark}") as (client, run_id):
            log_params(client, run_id, {"model": args.model, "data": args.data, "benchmark": benchmark,
                                        **{f"tracker.{k}": v for k, v in dataclasses.asdict(settings).items()},
                                        **flatten(to_dict(cfg.evaluate), "evaluate.")})
            log_metrics(client, run_id, {"throughput_frames_per_second": total_frames / wall}, step=0)
            report = write_report(benchmark, results, sequences, out_dir,
                                  absent_as_failure=cfg.evaluate.absent_as_failure)
            log_report(client, run_id, report)

    print(f"\ndone: {report.num_sequences} sequences, {report.num_frames} frames in {wall:.1f}s; "
          f"throughput {report.num_frames / wall:.1f} frames/s ({THROUGHPUT})")
    if report.scores:
        print("  " + "  ".join(f"{k}={v:.4f}" for k, v in report.scores.items() if k != "fps"))
    else:
        print("  no ground truth beyond the first frame: result files only (submit them to the server)")
    if report.score_auc is not None:
        print(f"  score_auc={report.score_auc:.4f} (ROC AUC of sigmoid(score) for IoU > 0.5 over scored frames)"
              if report.score_auc == report.score_auc else
              "  score_auc=n/a (every scored frame is on the same side of IoU 0.5)")
    if report.absence is not None:
        a = report.absence
        print(f"  absent: precision={a['precision']:.4f} recall={a['recall']:.4f} over {a['frames']} scored frames "
              f"({a['absent']} absent, {a['predicted_absent']} called absent at score < "
              f"{settings.present_threshold:.3g})")
    for role, path in report.files.items():
        print(f"  {role:<22} {path}")
    if run_id:
        print(f"  mlflow run {run_id} at {tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
