"""`stark register --checkpoint CKPT`: create a registered-model version carrying weights, config,
tuned tracker settings, provenance and (optionally) evaluation metrics."""
from __future__ import annotations

import os
import sys
import tempfile

from stark.jobs.args import config_from_args, job_parser, registry_tracking_uri, run_registry_call
from stark.jobs.boundary import job_boundary


def register(cfg, checkpoint: str, eval_data: str | None = None, split: str | None = None,
             description: str = "", log=print):
    """Register `checkpoint` (platform checkpoint, official file or MLflow URI); returns the ModelVersion."""
    import dataclasses

    from stark.platform.checkpoint import make_checkpoint, save_checkpoint
    from stark.platform.model_loading import load_model
    from stark.platform.registry.versions import register_checkpoint, version_tags
    from stark.platform.mlflow_runs import resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(cfg.mlflow, cfg.home)
    loaded = load_model(checkpoint, cfg.model, cfg.storage, tracking_uri)  # an MLflow URI resolves there
    # an official file becomes a platform checkpoint here; it keeps what it stands for (crop_rule official)
    content = loaded.checkpoint or make_checkpoint(loaded.model, {"model": dataclasses.asdict(loaded.model_cfg)},
                                                   tracker=loaded.tracker, source=checkpoint)
    settings = cfg.tracker_choice.for_model(loaded.tracker)
    scores, benchmark, hash_ = None, None, None
    if eval_data:
        from stark.platform.evaluate.report import score_results
        from stark.platform.evaluate.runner import load_sequences, track_model
        from stark.platform.registry.promotion import data_hash

        sequences = load_sequences(eval_data, cfg.storage, split)
        benchmark = cfg.evaluate.benchmark or sequences[0].dataset
        log(f"evaluating on {len(sequences)} {benchmark} sequence(s) before registering")
        results = track_model(loaded, settings, sequences, cfg.evaluate, cfg.storage)
        metrics = score_results(benchmark, results, sequences, cfg.evaluate.absent_as_failure)
        scores = dict(metrics.scores) if metrics else None
        hash_ = data_hash(sequences)
    tags = version_tags(content, scores, benchmark, split, hash_, cfg.storage)
    tags["stark.source"] = checkpoint
    if os.path.isfile(checkpoint):
        import hashlib

        with open(checkpoint, "rb") as f:
            tags["stark.checkpoint_sha256"] = hashlib.sha256(f.read()).hexdigest()
    from stark.platform.track.export import export_tracker

    with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, "checkpoint.pt")
        save_checkpoint(local, content)
        # the version carries its ONNX graphs (`stark export`), with the settings stored with the weights
        log("exporting the ONNX graphs the version carries")
        exported = export_tracker(loaded.model, loaded.model_cfg, settings, os.path.join(folder, "onnx"),
                                  source=checkpoint)
        for graph_name, graph in exported.manifest["graphs"].items():
            tags[f"stark.onnx.{graph_name}_sha256"] = graph["sha256"]
        return register_checkpoint(local, content, cfg.registry.model_name, tracking_uri, tags, description,
                                   onnx_folder=str(exported.folder))


@job_boundary
def main(argv: list[str] | None = None, prog: str = "stark register") -> int:
    parser = job_parser(prog, "Register a model version in MLflow (weights, config, tuned settings, "
                              "provenance, metrics).", default_config="stark_st50")
    parser.add_argument("--checkpoint", required=True,
                        help="platform checkpoint (local or s3://), official STARK file, or MLflow URI")
    parser.add_argument("--eval-data", default=None, help="evaluate on this data first and store the metrics")
    parser.add_argument("--split", default=None, help="split of --eval-data")
    parser.add_argument("--description", default="", help="version description")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    tracking_uri = registry_tracking_uri(cfg)
    version = run_registry_call(
        lambda: register(cfg, args.checkpoint, args.eval_data, args.split, args.description), tracking_uri)
    print(f"registered models:/{version.name}/{version.version} (run {version.run_id}) at {tracking_uri}")
    for key in sorted(version.tags):
        if key.startswith(("stark.tracker.", "stark.eval.", "stark.variant", "stark.train_run_id")):
            print(f"  {key} = {version.tags[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
