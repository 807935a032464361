"""`stark SUBCOMMAND ...`: dispatches to one module per job (each also runs as `python -m stark.jobs.X`)."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module with main(argv) -> int, one-line help). Modules load lazily so that
# `stark --help` answers without importing torch or Ray.
COMMANDS: dict[str, tuple[str, str]] = {
    "model-summary": ("stark.jobs.model_summary", "parameter count per part and FLOPs per tracked frame"),
    "ingest": ("stark.jobs.ingest", "import benchmark folders or videos+box files into H.264 clips + a manifest"),
    "train": ("stark.jobs.train", "stage 1 and/or stage 2 on Ray Train; resumes from the latest checkpoint"),
    "evaluate": ("stark.jobs.evaluate", "track a split; benchmark result files, metrics, tables and plots"),
    "submit": ("stark.jobs.submit", "submit any stark job to a Ray cluster (--address http://HEAD:8265 -- stark ...)"),
    "tune": ("stark.jobs.tune", "search update_interval and score_threshold with Ray Tune"),
    "track": ("stark.jobs.track", "track one object through a video: boxes CSV + annotated video"),
    "export": ("stark.jobs.export", "export a model to ONNX (template and track graphs + a JSON) for ONNX Runtime"),
    "register": ("stark.jobs.register", "register a model version in MLflow with its settings and metrics"),
    "promote": ("stark.jobs.promote", "move the champion alias only when the candidate wins"),
    "rollback": ("stark.jobs.rollback", "move the champion alias back to the previous champion"),
    "pipeline": ("stark.jobs.pipeline", "the main job: data, ingest, train, tune, register, promote, track"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stark", description="Train, tune, evaluate and ship the STARK tracker.",
        epilog="Every command takes --config FILE_OR_PRESET and key.sub=value overrides; "
               "`stark COMMAND --help` for its options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    return module.main(rest, prog=f"stark {args.command}")


if __name__ == "__main__":
    sys.exit(main())
