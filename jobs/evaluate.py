"""`stark evaluate --model MODEL --data DATA`: track a split, write result files, metrics and plots."""
from __future__ import annotations

import dataclasses
import sys
import time

from stark.jobs.args import add_model_data_args, config_from_args, job_parser, use_tracking_uri


def main(argv: list[str] | None = None, prog: str = "stark evaluate") -> int:
    parser = job_parser(prog, "Track every sequence of DATA with MODEL; write benchmark result files, "
                              "metrics, tables and plots.", default_config="stark_st50")
    add_model_data_args(
        parser, model_help="platform checkpoint, official STARK release file, or MLflow URI (models:/stark@champion)",
        data_help="manifest (file or ingest folder, local or s3://) or a GOT-10k/LaSOT/TrackingNet tree",
        out_help="output folder (default: evaluate.output from the config)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    use_tracking_uri(cfg)
    from stark.platform.evaluate.report import write_report
    from stark.platform.evaluate.runner import load_sequences, pack_model, track_sequences
    from stark.platform.model_loading import load_model
    from stark.platform.track.config import resolve_tracker_settings

    try:
        loaded = load_model(args.model, cfg.model, cfg.storage)
        sequences = load_sequences(args.data, cfg.storage, args.split)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if cfg.evaluate.max_sequences:
        sequences = sequences[:cfg.evaluate.max_sequences]
    benchmarks = {s.dataset for s in sequences}
    benchmark = cfg.evaluate.benchmark or (benchmarks.pop() if len(benchmarks) == 1 else None)
    if benchmark is None:
        print(f"error: {args.data} mixes datasets {sorted(benchmarks)}; choose one with evaluate.benchmark=... "
              f"or --split", file=sys.stderr)
        return 2
    settings = resolve_tracker_settings(cfg.tracker, loaded.tracker, args.overrides)
    out_dir = args.out or cfg.evaluate.output
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
        eta = (total_frames - done["frames"]) / rate if rate > 0 else float("nan")
        print(f"[{done['sequences']}/{len(sequences)}] {seq.name}: {len(result.boxes)} frames | "
              f"{rate:.1f} frames/s overall | ETA {eta:.0f}s", flush=True)

    exported = None
    if cfg.evaluate.engine == "onnx" and loaded.artifacts is not None:  # a registered version's own graphs
        from stark.platform.track.export import find_exported, read_exported

        if (found := find_exported(loaded.artifacts)) is not None:
            exported = read_exported(found)
            print(f"ONNX graphs of the registered version: {found}", flush=True)
    results = track_sequences(pack_model(loaded.model, loaded.model_cfg, exported), settings, sequences,
                              cfg.evaluate, cfg.storage, on_result=progress)
    wall = time.perf_counter() - start

    run_id = None
    if args.no_mlflow:
        report = write_report(benchmark, results, sequences, out_dir, absent_as_failure=cfg.evaluate.absent_as_failure,
                              log_to_mlflow=False)
    else:
        import mlflow

        from stark.platform.experiment import flatten, to_dict

        mlflow.set_experiment("stark-evaluate")
        with mlflow.start_run(run_name=f"evaluate-{benchmark}") as run:
            run_id = run.info.run_id
            mlflow.log_params({"model": args.model, "data": args.data, "benchmark": benchmark,
                               **{f"tracker.{k}": v for k, v in dataclasses.asdict(settings).items()},
                               **{k: v for k, v in flatten(to_dict(cfg.evaluate), "evaluate.").items()}})
            mlflow.log_metric("frames_per_second", total_frames / wall)
            report = write_report(benchmark, results, sequences, out_dir,
                                  absent_as_failure=cfg.evaluate.absent_as_failure)

    print(f"\ndone: {report.num_sequences} sequences, {report.num_frames} frames in {wall:.1f}s "
          f"({report.num_frames / wall:.1f} frames/s)")
    if report.scores:
        print("  " + "  ".join(f"{k}={v:.4f}" for k, v in report.scores.items()))
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
              f"{settings.present_threshold})")
    for role, path in report.files.items():
        print(f"  {role:<22} {path}")
    if run_id:
        import mlflow

        print(f"  mlflow run {run_id} at {mlflow.get_tracking_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
