"""`python -m stark.jobs.make_starter`: the one command that makes a shipped starter checkpoint.

Runs the recipe (`stark pipeline --config starter_tiny`: generated footage from the "train" photographs,
both stages from random weights; resumes if interrupted), then writes the stage-2 weights in fp16 to
configs/starters/NAME.pt and NAME.json beside them: sha256, this command, the MLflow runs that tracked
training, the recipe config and its scores on the recipe's holdout sequences (unseen photographs).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import shlex
import sys
from pathlib import Path

from stark.jobs.args import config_from_args, job_parser
from stark.jobs.boundary import job_boundary


@job_boundary
def main(argv: list[str] | None = None, prog: str = "python -m stark.jobs.make_starter") -> int:
    parser = job_parser(prog, "Pretrain a starter checkpoint by its recipe and write it with its record.",
                        default_config="starter_tiny")
    parser.add_argument("--name", default="stark_tiny", help="starter name (configs/starters/NAME.pt)")
    parser.add_argument("--out", default=None, help="folder to write into (default: the package's starters)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    from stark.jobs.pipeline import main as pipeline_main

    code = pipeline_main(["--config", args.config, *args.overrides])
    if code != 0:
        return code

    import torch
    from mlflow import MlflowClient

    from stark.platform.checkpoint import make_checkpoint
    from stark.platform.experiment import to_dict
    from stark.platform.mlflow_runs import resolve_tracking_uri
    from stark.platform.model_loading import load_model
    from stark.platform.starter import starter_folder
    from stark.platform.train.run_layout import RunPaths

    work = Path(cfg.pipeline.workdir).resolve()
    effective = config_from_args(parser.parse_args(["--config", str(work / "pipeline-config.yaml")]))
    final = RunPaths.for_config(effective.train.storage_path, effective.name).final(max(effective.train.stages))
    loaded = load_model(final, effective.model, effective.storage)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in loaded.model.state_dict().items()}
    from stark.platform.experiment import load_config

    recipe = to_dict(load_config(args.config, args.overrides, in_home=False))  # no paths of this machine's home
    content = make_checkpoint(loaded.model, recipe)
    content["model"] = half  # fp16 on disk: half the size; loading copies into the fp32 network

    out = Path(args.out) if args.out else starter_folder()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.name}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save(content, tmp)
    tmp.replace(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    tracking_uri = resolve_tracking_uri(effective.mlflow, effective.home)
    client = MlflowClient(tracking_uri=tracking_uri)
    runs = [r for e in client.search_experiments() for r in
            client.search_runs([e.experiment_id], filter_string=f"tags.`stark.checkpoint` = '{final}'")]
    summary_file = work / "summary.json"
    record = {
        "file": path.name,
        "sha256": digest,
        "command": shlex.join(["python", "-m", "stark.jobs.make_starter", "--config", args.config,
                               "--name", args.name, *args.overrides]),
        "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mlflow": {"tracking_uri": tracking_uri,
                   "runs": {r.info.run_id: r.info.run_name for r in runs}},
        "holdout": json.loads(summary_file.read_text()).get("rows") if summary_file.exists() else None,
        "recipe": recipe,
    }
    record_path = out / f"{args.name}.json"
    record_path.with_suffix(".json.tmp").write_text(json.dumps(record, indent=2) + "\n")
    record_path.with_suffix(".json.tmp").replace(record_path)  # the record last: it vouches for the file
    print(f"\nstarter '{args.name}': {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 {digest[:16]}...), "
          f"record {record_path}; use it as train.init_from=starter:{args.name} or --model starter:{args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
