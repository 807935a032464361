"""`stark tune --model MODEL --data VAL_DATA`: find update_interval and score_threshold with Ray Tune."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

from stark.jobs.args import add_model_data_args, config_from_args, job_parser, load_model_and_sequences, job_tracking_uri
from stark.jobs.boundary import job_boundary
from stark.platform.console import library_stdout


def experiment_name(cfg, model: str, data: str, split: str | None, settings) -> str:
    """Derived from what defines the search (the tracker settings trials keep included), never from a
    clock: the same command resumes."""
    # present_threshold changes no trial (it is chosen after the search, on the best one's run)
    kept = {k: v for k, v in dataclasses.asdict(settings).items()
            if k not in ("update_interval", "score_threshold", "present_threshold")}
    key = json.dumps({"model": model, "data": data, "split": split, "tune": dataclasses.asdict(cfg.tune),
                      "model_cfg": dataclasses.asdict(cfg.model), "tracker": kept}, sort_keys=True, default=str)
    return f"{cfg.name}-tune-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


@job_boundary
def main(argv: list[str] | None = None, prog: str = "stark tune") -> int:
    parser = job_parser(prog, "Search STARK-ST's update_interval and score_threshold on validation sequences, "
                              "then choose present_threshold on the best setting's scores; store them with the "
                              "model.", default_config="stark_st50")
    add_model_data_args(parser, model_help="platform checkpoint, official STARK-ST file or MLflow URI",
                        data_help="validation data: manifest or benchmark tree",
                        out_help="report folder (default: <tune.storage_path>/<experiment>-report)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    tracking_uri = job_tracking_uri(cfg)
    from stark.platform.evaluate.report import resolve_metric
    from stark.platform.evaluate.runner import pack_model
    from stark.platform.tune.report import write_tune_report
    from stark.platform.tune.presence import PresenceChoice, choose_present_threshold
    from stark.platform.tune.search import best_setting, compute_bases, run_search, trial_settings, trial_table, tuned_run

    found = load_model_and_sequences(args, cfg, tracking_uri)
    if found is None:
        return 2
    loaded, sequences = found[0], [s for s in found[1] if s.has_groundtruth]
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
    settings = cfg.tracker_choice.for_model(loaded.tracker)  # trials replace only the searched pair
    name = experiment_name(cfg, args.model, args.data, args.split, settings)
    out_dir = Path(args.out or f"{cfg.tune.storage_path}/{name}-report")
    packed = pack_model(loaded.model, loaded.model_cfg)
    print(f"tuning {args.model} on {len(sequences)} {benchmark} sequence(s) ({sum(s.num_frames for s in sequences)} "
          f"frames), metric {metric}, {cfg.tune.search} search, scheduler {cfg.tune.scheduler}, "
          f"reuse {'on' if cfg.tune.reuse else 'off'}, crop rule {settings.crop_rule}; experiment {name}", flush=True)

    from stark.platform.ray_runtime import init_ray

    init_ray()
    start = time.perf_counter()
    bases = None
    if cfg.tune.reuse:
        from stark.platform.tune.report import load_or_compute_bases

        bases = load_or_compute_bases(out_dir / "bases.pt",
                                      lambda: compute_bases(packed, settings, sequences, cfg.evaluate, cfg.storage))
        print(f"base runs (no updates) ready for {len(bases)} sequence(s) in {time.perf_counter() - start:.1f}s",
              flush=True)
    with library_stdout():  # Ray Tune's experiment table and results-folder lines: into the job's log
        grid = run_search(packed, settings, sequences, cfg.tune, benchmark, name, cfg.evaluate, cfg.storage, bases)
    wall = time.perf_counter() - start
    if grid.errors:
        print(f"error: {len(grid.errors)} trial(s) failed; first: {grid.errors[0]}", file=sys.stderr)
        print("re-run the same command to retry them (finished trials are kept)", file=sys.stderr)
        return 1

    best = best_setting(trial_table(grid))
    if "present_threshold" in cfg.tracker_choice.command_line:
        presence = PresenceChoice(settings.present_threshold, False,
                                  f"kept present_threshold={settings.present_threshold:g}: set on the command line")
    else:
        started = time.perf_counter()
        run = tuned_run(packed, trial_settings(settings, best.update_interval, best.score_threshold), sequences,
                        cfg.evaluate, cfg.storage, bases)
        presence = choose_present_threshold(run, sequences, settings.present_threshold)
        print(f"present_threshold from the best setting's run in {time.perf_counter() - started:.1f}s", flush=True)
    report = write_tune_report(grid, out_dir, metric=metric, loaded=loaded, cfg=cfg, settings=settings,
                               model_spec=args.model,
                               data=args.data, benchmark=benchmark, tracking_uri=None if args.no_mlflow else tracking_uri,
                               sequences=sequences, split=args.split, bases=bases, presence=presence)
    print(f"\nbest: update_interval={best.update_interval} score_threshold={best.score_threshold:.3f} "
          f"{metric}={best.score:.4f}  ({len(report.rows)} trials, "
          f"{sum(r.frames_tracked for r in report.rows)} frames tracked in trials, {wall:.0f}s)")
    print(f"  {'WARNING: ' if report.summary.flat else ''}{report.summary.note}")
    print(f"  {presence.reason}")
    for role, path in report.files.items():
        print(f"  {role:<12} {path}")
    if report.run_id:
        print(f"  mlflow run {report.run_id} at {tracking_uri}")
    print(f"  use it: stark evaluate --model {report.files['model']} --data ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
