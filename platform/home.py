"""Where the platform keeps its state: one home folder, the same for every command wherever it runs.

The home is, first set wins: `home` in the config, `$STARK_HOME`, then `~/.stark` (one per user).
On the embedded defaults everything lives under it:

    <home>/
        mlflow.db              the MLflow backend store (runs, experiments, the model registry)
        mlruns/<experiment>/   the MLflow artifact root (registered models, reports, plots)
        runs/<name>/           training runs (train.storage_path)
        tune/                  Ray Tune's trial state and the tuning reports (tune.storage_path)
        eval/<model>/<data>/   evaluation outputs, one folder per model and data set (evaluate.output)
        track/<model>/<video>/ `stark track` outputs, one folder per model and video (`--out DIR` instead)
        logs/                  the libraries' output (<command>.log) and the tracebacks of bugs
        pipelines/<name>/      what `stark pipeline` writes (pipeline.workdir)

Each of these is overridden by its own key (`mlflow.tracking_uri` or `$MLFLOW_TRACKING_URI` for the
store, `train.storage_path`, ...); a relative path given there is taken from the current folder, as
the user wrote it. Nothing is ever put in the current folder unless a key or argument says so.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "STARK_HOME"
DEFAULT_HOME = "~/.stark"
MODEL_URI_SCHEMES = ("models:/", "runs:/", "starter:")  # model arguments that are not paths


def resolve_home(configured: str | None = None) -> Path:
    """The home folder (absolute): `configured`, else $STARK_HOME, else ~/.stark."""
    return Path(os.path.expanduser(configured or os.environ.get(HOME_ENV) or DEFAULT_HOME)).resolve()


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, configured: str | None = None) -> "Home":
        return cls(resolve_home(configured))

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"  # its artifacts go beside it, in mlruns/

    @property
    def runs(self) -> str:
        return str(self.root / "runs")

    @property
    def tune(self) -> str:
        return str(self.root / "tune")

    @property
    def eval(self) -> str:
        return str(self.root / "eval")

    @property
    def track(self) -> str:
        return str(self.root / "track")

    @property
    def logs(self) -> str:
        return str(self.root / "logs")

    def pipeline(self, name: str) -> str:
        return str(self.root / "pipelines" / name)


def output_folder(root: str, model: str, source: str, split: str | None = None) -> Path:
    """<root>/<model>/<source>[-<split>]: one folder per model and input (a data set, a video), so that
    outputs never overwrite each other. A local path counts by its absolute form, so the same files give
    the same folder from any working folder."""
    model_key = model if "://" in model or model.startswith(MODEL_URI_SCHEMES) else str(Path(model).resolve())
    source_key = source if "://" in source else str(Path(source).resolve())
    return Path(root) / _folder_name(model_key) / (_folder_name(source_key) + (f"-{split}" if split else ""))


def _folder_name(text: str) -> str:
    """The argument's readable tail and a short hash of the whole."""
    tail = re.sub(r"[^A-Za-z0-9@._-]+", "_", text.rstrip("/").split("://")[-1].split("/")[-1]) or "x"
    return f"{tail[:40]}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"
