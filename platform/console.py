"""What reaches the terminal: the job's own lines (progress with rate and ETA, summaries) and nothing else.

By default (no `--verbose`) everything the libraries print goes to the job's log file instead:

- Ray Data's progress bars are switched off (`RAY_DATA_DISABLE_PROGRESS_BARS`, set before Ray starts so
  that every Ray process inherits it, and the driver's DataContext), as is MLflow's artifact bar;
- the "ray", "mlflow" and "alembic" loggers and Python warnings (TensorBoard hints, the pyfunc
  `input_example` warning, Ray's error lines such as another Ray instance's placement-group cleaner)
  are written to the log file; MLflow is told not to put its own terminal handler back when it is
  imported (`MLFLOW_CONFIGURE_LOGGING`), and ray_runtime.init_ray routes the "ray" logger again after
  `import ray` (which adds one) and before `ray.init` (whose start-up lines would otherwise show);
- what a library prints with `print` inside `library_stdout()` (Ray Tune's experiment table and
  "View detailed results" lines, around `Tuner.fit`) goes to the log file;
- lines Ray forwards from its worker processes go to the log file too, except the platform's own
  progress lines, which the workers mark with PROGRESS_MARK (platform/train/progress.py `say`) and which
  are printed on the terminal without Ray's `(pid=...)` prefix. This replaces Ray's driver-side printer
  (`ray._private.worker.print_worker_logs`), the one place every forwarded line passes.

`--verbose` leaves all of it as the libraries do it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from pathlib import Path

PROGRESS_MARK = "[stark] "  # a worker line starting with this is the platform's own, for the terminal
LIBRARY_LOGGERS = ("ray", "mlflow", "alembic", "py.warnings")
# Off a terminal (a log, CI, the pipeline's steps) a progress line is printed at most this often, each a
# tenth of the work further than the one before, plus the last one: a job's progress stays a dozen lines at
# most however many items it counts and however slow the machine is (ProgressPacer).
PROGRESS_EVERY_S = 10.0
PROGRESS_STEP_FRACTION = 0.1

_log_file: Path | None = None  # where library output goes, once routed (None: the terminal, as usual)
_handler: logging.Handler | None = None  # the one handler writing to it
_terminal = None  # inside library_stdout(): the stream the platform's own lines still go to
_job_log: Path | None = None  # the job's log file, <home>/logs/<command>.log, once its config is loaded


class ProgressPacer:
    """Says when a progress line is due off a terminal: the last one always; before it, at most one every
    `every` seconds, each at least `fraction` of `total` further than the one before."""

    def __init__(self, total: int, every: float = PROGRESS_EVERY_S, fraction: float = PROGRESS_STEP_FRACTION):
        self.total, self.every = total, every
        self.step = max(1, math.ceil(total * fraction))
        self.last_time, self.last_done = time.monotonic(), 0

    def due(self, done: int, force: bool = False) -> bool:
        now = time.monotonic()
        if force or done >= self.total or (now - self.last_time >= self.every and done - self.last_done >= self.step):
            self.last_time, self.last_done = now, done
            return True
        return False


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
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # `import mlflow` keeps the routing below
    logging.captureWarnings(True)
    apply_routing()
    return log_file


def routed_to() -> Path | None:
    return _log_file


def apply_routing() -> None:
    """(Re)attach the log file to the library loggers (`import ray` adds its own terminal handler, so
    ray_runtime.init_ray calls this before ray.init) and, once Ray has started, its worker-line printer."""
    global _handler
    if _log_file is None:
        return
    if _handler is None:
        _handler = logging.FileHandler(_log_file)
        _handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if old is not _handler:
                logger.removeHandler(old)
        if _handler not in logger.handlers:
            logger.addHandler(_handler)
        logger.propagate = False
        if logger.level == logging.NOTSET:  # MLflow's own setup, now skipped, would have set INFO
            logger.setLevel(logging.INFO)
    if "ray" in sys.modules:
        _quiet_ray()


@contextlib.contextmanager
def library_stdout():
    """Inside: what is printed with `print` goes to the log file once output is routed (Ray Tune prints its
    experiment table and "View detailed results here" whatever its verbosity); the platform's own lines
    forwarded from Ray workers still reach the terminal. Without routing (`--verbose`) it changes nothing."""
    global _terminal
    if _log_file is None or _terminal is not None:
        yield
        return
    with open(_log_file, "a") as log:
        _terminal = sys.stdout
        try:
            with contextlib.redirect_stdout(log):
                yield
        finally:
            _terminal = None


def _quiet_ray() -> None:
    import ray._private.worker as ray_worker

    if getattr(ray_worker.print_worker_logs, "stark_routed", False):
        return
    original = ray_worker.print_worker_logs

    def print_worker_logs(data, print_file, ignore_prefix: bool = False):
        ours = [line[len(PROGRESS_MARK):] for line in data.get("lines", []) if line.startswith(PROGRESS_MARK)]
        for line in ours:
            print(line, file=_terminal or sys.stdout, flush=True)
        with open(_log_file, "a") as log:
            original(data, log, ignore_prefix)

    print_worker_logs.stark_routed = True
    ray_worker.print_worker_logs = print_worker_logs
    try:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
    except ImportError:  # ray without its data extra
        pass
