"""The argument convention every job shares: --config FILE_OR_PRESET plus key.sub=value overrides."""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from stark.jobs.boundary import user_input
from stark.platform.console import route_library_output, set_job_log
from stark.platform.errors import ServiceError
from stark.platform.experiment import ConfigError, load_config
from stark.platform.home import Home

_OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*=")  # key.sub= : dotted identifiers, then '='


def is_override(arg: str) -> bool:
    """`key.sub=value` is a config override. An argument with an '=' elsewhere (`data/src=v1`, `s3://b/v=2`),
    or one naming an existing file or folder whatever its form, is a path."""
    return bool(_OVERRIDE.match(arg)) and not os.path.exists(arg)


class JobArgumentParser(argparse.ArgumentParser):
    """Options, positional arguments and key.sub=value overrides may come in any order (`--no-mlflow` after an
    override, SRC before or after one). Overrides are told apart by their form (`is_override`), not by their
    position, so positional arguments bind in order and a path with an '=' in it stays a path."""

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        # the overrides stay the last positional: SRC, DEST, VIDEO bind first, and a stray extra argument is
        # the one reported as not being key.sub=value
        self._actions.sort(key=lambda a: a.dest == "overrides")
        return action

    def parse_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        overrides, rest = [], []
        value_of_option = False
        for arg in args:
            if value_of_option or arg.startswith("-") or not is_override(arg):
                rest.append(arg)
            else:
                overrides.append(arg)
            action = self._option_string_actions.get(arg) if not value_of_option else None
            value_of_option = action is not None and action.nargs != 0  # `--out x=1`: x=1 is the option's value
        parsed = self.parse_intermixed_args(rest, namespace)
        parsed.overrides = overrides + list(getattr(parsed, "overrides", None) or [])
        return parsed


def job_parser(prog: str, description: str, default_config: str | None = None) -> argparse.ArgumentParser:
    parser = JobArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", default=default_config,
                        help=f"YAML file or preset name (default: {default_config})")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    parser.add_argument("--verbose", action="store_true",
                        help="Ray's and MLflow's own progress bars and logs on the terminal too (default: in "
                             "the job's log file, <home>/logs/<command>.log)")
    parser.set_defaults(command=prog.split()[-1])
    return parser


def add_model_data_args(parser: argparse.ArgumentParser, model_help: str, data_help: str, out_help: str) -> None:
    """--model, --data, --split, --out and --no-mlflow: the arguments of the jobs that track a data set."""
    parser.add_argument("--model", required=True, help=model_help)
    parser.add_argument("--data", required=True, help=data_help)
    parser.add_argument("--split", default=None, help="only this split (train/val/test)")
    parser.add_argument("--out", default=None, help=out_help)
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")


def config_from_args(args: argparse.Namespace):
    """Load and validate the config, or exit 2 with the error (file, key) before any work starts."""
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    log_file = Path(Home.resolve(cfg.home).logs) / f"{args.command}.log"
    set_job_log(log_file)
    if not getattr(args, "verbose", True):
        route_library_output(log_file)
    return cfg


def load_model_and_sequences(args: argparse.Namespace, cfg, tracking_uri: str):
    """--model and --data (with --split) of a job that tracks a data set: (LoadedModel, sequences), or None
    after one 'error:' line (the job then exits 2). models:/ URIs resolve in `tracking_uri`."""
    from stark.platform.evaluate.runner import load_sequences
    from stark.platform.model_loading import load_model

    try:
        return (load_model(args.model, cfg.model, cfg.storage, tracking_uri),
                load_sequences(args.data, cfg.storage, args.split))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def job_tracking_uri(cfg) -> str:
    """The tracking URI a job passes to everything it does with MLflow (config, then $MLFLOW_TRACKING_URI,
    then the sqlite store in the home); MLflow's process-wide URI is never set."""
    from stark.platform.mlflow_runs import resolve_tracking_uri

    return resolve_tracking_uri(cfg.mlflow, cfg.home)


def registry_tracking_uri(cfg) -> str:
    """The tracking URI a registry command talks to; a server that is down fails it in seconds, not minutes."""
    import os

    from stark.platform.mlflow_runs import resolve_tracking_uri

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    return resolve_tracking_uri(cfg.mlflow, cfg.home)


def run_registry_call(call, tracking_uri: str):
    """call(), under the registry's rules: a ValueError is bad input (exit 2), a registry refusal or any
    MLflow/network failure is a ServiceError (exit 1; nothing half-changed is left by the callers). The job's
    boundary prints the one line."""
    from stark.platform.registry.versions import RegistryError, explain_mlflow_error

    with user_input():
        try:
            return call()
        except (ValueError, ServiceError, RegistryError):
            raise
        except Exception as exc:  # noqa: BLE001 - MLflow/network failures: one clear line
            raise ServiceError(str(explain_mlflow_error(exc, tracking_uri))) from exc
