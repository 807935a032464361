"""The argument convention every job shares: --config FILE_OR_PRESET plus key.sub=value overrides."""
from __future__ import annotations

import argparse
import sys

from stark.platform.experiment import ConfigError, load_config


class JobArgumentParser(argparse.ArgumentParser):
    """Options and key.sub=value overrides may come in any order (`--no-mlflow` after an override)."""

    def parse_args(self, args=None, namespace=None):
        # overrides take the positionals left after the job's own (VIDEO; SRC DEST), which a job adds after
        # job_parser added the overrides: without this, `stark track VIDEO a.b=1` read VIDEO as an override
        for action in [a for a in self._actions if a.dest == "overrides"]:
            self._actions.remove(action)
            self._actions.append(action)
        return self.parse_intermixed_args(args, namespace)


def job_parser(prog: str, description: str, default_config: str | None = None) -> argparse.ArgumentParser:
    parser = JobArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", default=default_config,
                        help=f"YAML file or preset name (default: {default_config})")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
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
        return load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def use_tracking_uri(cfg) -> str:
    """Point this process's MLflow at the configured tracking URI (config, then $MLFLOW_TRACKING_URI,
    then the embedded sqlite file) and return it; model URIs like models:/stark@champion resolve there."""
    import mlflow

    from stark.platform.mlflow_runs import resolve_tracking_uri

    uri = resolve_tracking_uri(cfg.mlflow)
    mlflow.set_tracking_uri(uri)
    return uri


def registry_tracking_uri(cfg) -> str:
    """The tracking URI a registry command talks to; a server that is down fails it in seconds, not minutes."""
    import os

    from stark.platform.mlflow_runs import resolve_tracking_uri

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    return resolve_tracking_uri(cfg.mlflow)


def run_registry_call(call, tracking_uri: str):
    """(call(), 0), or (None, exit code) after one 'error:' line: 2 for bad input (ValueError),
    1 for a registry refusal or any MLflow/network failure (nothing half-changed is left by the callers)."""
    from stark.platform.registry.versions import RegistryError, explain_mlflow_error

    try:
        return call(), 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None, 2
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None, 1
    except Exception as exc:  # noqa: BLE001 - MLflow/network failures: one clear line
        print(f"error: {explain_mlflow_error(exc, tracking_uri)}", file=sys.stderr)
        return None, 1
