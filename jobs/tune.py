"""`stark tune --model MODEL --data VAL_DATA`: find update_interval and score_threshold with Ray Tune."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

from stark.jobs.args import add_model_data_args, config_from_args, job_parser, use_tracking_uri
from stark.jobs.boundary import job_boundary


def experiment_name(cfg, model: str, data: str, split: str | None) -> str:
    """Derived from what defines the search, never from a clock: the same command resumes."""
    key = json.dumps({"model": model, "data": data, "split": split, "tune": dataclasses.asdict(cfg.tune),
                      "model_cfg": dataclasses.asdict(cfg.model)}, sort_keys=True, default=str)
    return f"{cfg.name}-tune-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


@job_boundary
def main(argv: list[str] | None = None, prog: str = "stark tune") -> int:
    parser = job_parser(prog, "Search STARK-ST's update_interval and score_threshold on validation sequences; "
                              "store the best with the model.", default_config="stark_st50")
    add_model_data_args(parser, model_help="platform checkpoint, official STARK-ST file or MLflow URI",
                        data_help="validation data: manifest or benchmark tree",
                        out_help="report folder (default: <tune.storage_path>/<experiment>-report)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    use_tracking_uri(cfg)
    from stark.platform.evaluate.runner import load_sequences, pack_model
    from stark.platform.model_loading import load_model
    from stark.platform.tune.report import write_tune_report
    from stark.platform.tune.search import compute_bases, resolve_metric, run_search

    try:
        loaded = load_model(args.model, cfg.model, cfg.storage)
        sequences = [s for s in load_sequences(args.data, cfg.storage, args.split) if s.has_groundtruth]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if loaded.model_cfg.variant != "ST":
        print("error: only STARK-ST has update settings to tune (this model is STARK-S)", file=sys.stderr)
        return 2
    if not sequences:
        print(f"error: {args.data}: no sequence with ground truth to tune on", file=sys.stderr)
        return 2
    if cfg.evaluate.max_sequences:
        sequences = sequences[:cfg.evaluate.max_sequences]
    benchmark = cfg.evaluate.benchmark or sequences[0].dataset
    metric = resolve_metric(cfg.tune.metric, benchmark)
    name = experiment_name(cfg, args.model, args.data, args.split)
    out_dir = Path(args.out or f"{cfg.tune.storage_path}/{name}-report")
    packed = pack_model(loaded.model, loaded.model_cfg)
    print(f"tuning {args.model} on {len(sequences)} {benchmark} sequence(s) ({sum(s.num_frames for s in sequences)} "
          f"frames), metric {metric}, {cfg.tune.search} search, scheduler {cfg.tune.scheduler}, "
          f"reuse {'on' if cfg.tune.reuse else 'off'}; experiment {name}", flush=True)

    from stark.platform.ray_runtime import init_ray

    init_ray()
    start = time.perf_counter()
    bases = None
    if cfg.tune.reuse:
        from stark.platform.tune.report import load_or_compute_bases

        bases = load_or_compute_bases(out_dir / "bases.pt",
                                      lambda: compute_bases(packed, sequences, cfg.evaluate, cfg.storage))
        print(f"base runs (no updates) ready for {len(bases)} sequence(s) in {time.perf_counter() - start:.1f}s",
              flush=True)
    grid = run_search(packed, sequences, cfg.tune, benchmark, name, cfg.evaluate, cfg.storage, bases)
    wall = time.perf_counter() - start
    if grid.errors:
        print(f"error: {len(grid.errors)} trial(s) failed; first: {grid.errors[0]}", file=sys.stderr)
        print("re-run the same command to retry them (finished trials are kept)", file=sys.stderr)
        return 1

    report = write_tune_report(grid, out_dir, metric=metric, loaded=loaded, cfg=cfg, model_spec=args.model,
                               data=args.data, benchmark=benchmark, log_to_mlflow=not args.no_mlflow,
                               sequences=sequences, split=args.split, bases=bases)
    best = report.best
    print(f"\nbest: update_interval={best.update_interval} score_threshold={best.score_threshold:.3f} "
          f"{metric}={best.score:.4f}  ({len(report.rows)} trials, "
          f"{sum(r.frames_tracked for r in report.rows)} frames tracked in trials, {wall:.0f}s)")
    print(f"  {'WARNING: ' if report.summary.flat else ''}{report.summary.note}")
    for role, path in report.files.items():
        print(f"  {role:<12} {path}")
    if report.run_id:
        import mlflow

        print(f"  mlflow run {report.run_id} at {mlflow.get_tracking_uri()}")
    print(f"  use it: stark evaluate --model {report.files['model']} --data ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
