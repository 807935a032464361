"""What reaches the terminal: the job's own lines (progress with rate and ETA, summaries) and nothing else.

By default (no `--verbose`) everything the libraries print goes to the job's log file instead:

- Ray Data's progress bars are switched off (`RAY_DATA_DISABLE_PROGRESS_BARS`, set before Ray starts so
  that every Ray process inherits it, and the driver's DataContext), as is MLflow's artifact bar;
- the "ray", "mlflow" and "alembic" loggers and Python warnings (TensorBoard hints, the pyfunc
  `input_example` warning, Ray's error lines such as another Ray instance's placement-group cleaner)
  are written to the log file;
- lines Ray forwards from its worker processes go to the log file too, except the platform's own
  progress lines, which the workers mark with PROGRESS_MARK (platform/train/progress.py `say`) and which
  are printed on the terminal without Ray's `(pid=...)` prefix. This replaces Ray's driver-side printer
  (`ray._private.worker.print_worker_logs`), the one place every forwarded line passes.

`--verbose` leaves all of it as the libraries do it.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

PROGRESS_MARK = "[stark] "  # a worker line starting with this is the platform's own, for the terminal
LIBRARY_LOGGERS = ("ray", "mlflow", "alembic", "py.warnings")

_log_file: Path | None = None  # where library output goes, once routed (None: the terminal, as usual)
_job_log: Path | None = None  # the job's log file, <home>/logs/<command>.log, once its config is loaded


def set_job_log(log_file: Path) -> None:
    """Name the running job's log file, routed into or not (`--verbose`); its folder also takes the
    tracebacks of bugs (jobs/boundary.py). The latest job's wins (a pipeline's steps share one home)."""
    global _job_log
    _job_log = log_file


def job_log() -> Path | None:
    return _job_log


def route_library_output(log_file: Path) -> Path:
    """Send the libraries' output to `log_file` (appended) from now on; the first call in a process wins,
    so a pipeline's steps all write into the pipeline's log. Returns the file in use."""
    global _log_file
    if _log_file is not None:
        return _log_file
    log_file.parent.mkdir(parents=True, exist_ok=True)
    _log_file = log_file
    os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no TensorBoard hint from Ray Tune
    logging.captureWarnings(True)
    apply_routing()
    return log_file


def routed_to() -> Path | None:
    return _log_file


def apply_routing() -> None:
    """(Re)attach the log file to the library loggers; ray.init adds its own terminal handler, so
    ray_runtime.init_ray calls this again after starting Ray."""
    if _log_file is None:
        return
    handler = logging.FileHandler(_log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
    if "ray" in sys.modules:
        _quiet_ray()


def _quiet_ray() -> None:
    import ray._private.worker as ray_worker

    if getattr(ray_worker.print_worker_logs, "stark_routed", False):
        return
    original = ray_worker.print_worker_logs

    def print_worker_logs(data, print_file, ignore_prefix: bool = False):
        ours = [line[len(PROGRESS_MARK):] for line in data.get("lines", []) if line.startswith(PROGRESS_MARK)]
        for line in ours:
            print(line, file=sys.stdout, flush=True)
        with open(_log_file, "a") as log:
            original(data, log, ignore_prefix)

    print_worker_logs.stark_routed = True
    ray_worker.print_worker_logs = print_worker_logs
    try:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
    except ImportError:  # ray without its data extra
        pass
