"""The one error boundary every job runs inside (`@job_boundary` on its `main`).

An expected failure ends the job with one line on stderr, `error: <what>, <where>, <what to do>`, and an
exit code that says whose move it is:

  2  bad input or config: a file, path, argument or value is wrong (`BadInputError`, a missing file)
  1  runtime failure: a service (object storage, MLflow) unreachable after its retries, a registry refusal

Anything else is a bug: its traceback goes to a log file in the home's logs folder (`<home>/logs`, beside
the job's `<command>.log`; `$STARK_LOG_DIR` instead when set) and the terminal gets one line naming that
file; the exit code is 1.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
import time
import traceback

from stark.platform.console import job_log
from stark.platform.errors import BadInputError, ServiceError
from stark.platform.home import Home

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
LOG_DIR_ENV = "STARK_LOG_DIR"


def job_boundary(main):
    """Wrap a job's `main(argv, prog) -> int` so that no exception reaches the terminal as a traceback."""
    default_prog = inspect.signature(main).parameters["prog"].default

    @functools.wraps(main)
    def guarded(argv: list[str] | None = None, prog: str = default_prog) -> int:
        try:
            return main(argv, prog)
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - the boundary: every failure becomes one line
            expected = classify(exc)
            if expected is not None:
                code, line = expected
                print(f"error: {line}", file=sys.stderr)
                return code
            log = write_traceback_log(prog, argv, exc)
            print(f"error: unexpected {type(exc).__name__}: {first_line(exc)}, in {prog}; "
                  f"the traceback is in {log}: please report it with that file", file=sys.stderr)
            return EXIT_FAILED

    return guarded


def classify(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, message) for an expected failure anywhere among the exception's causes (Ray wraps a
    worker's exception, Ray Train wraps it again), else None."""
    seen, todo = set(), [exc]
    while todo:
        exc = todo.pop(0)
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        found = _classify_one(exc)
        if found is not None:
            return found
        todo += _wrapped(exc)
    return None


def _wrapped(exc: BaseException) -> list:
    """The exceptions inside a wrapper: a Ray task's `cause`, a chained `__cause__`, and Ray Train's
    (`TrainingFailedError`: the exception of each failed worker, or of its controller)."""
    inner = [getattr(exc, "cause", None), exc.__cause__, getattr(exc, "controller_failure", None),
             getattr(exc, "_base_exc", None)]  # a worker's exception, as Ray Train carries it back
    failures = getattr(exc, "worker_failures", None)
    return inner + (list(failures.values()) if isinstance(failures, dict) else [])


def _classify_one(exc: BaseException) -> tuple[int, str] | None:
    if isinstance(exc, BadInputError):
        return EXIT_BAD_INPUT, str(exc)
    if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError)) and exc.filename:
        what = {FileNotFoundError: "no such file or folder", NotADirectoryError: "not a folder",
                IsADirectoryError: "a folder, not a file"}.get(type(exc), exc.strerror or type(exc).__name__)
        return EXIT_BAD_INPUT, f"{what}, {exc.filename}, check the path"
    if isinstance(exc, ServiceError):
        return EXIT_FAILED, str(exc)
    if type(exc).__name__ == "RegistryError":  # a registry refusal (no champion to roll back to, ...)
        return EXIT_FAILED, str(exc)
    if type(exc).__name__ in ("MlflowException", "RestException") or \
            type(exc).__module__.split(".")[0] in ("requests", "urllib3"):
        import mlflow

        from stark.platform.registry.versions import explain_mlflow_error

        return EXIT_FAILED, str(explain_mlflow_error(exc, mlflow.get_tracking_uri()))
    return None


@contextlib.contextmanager
def user_input():
    """Inside: a plain ValueError is about the user's input (the loaders of models, data and boxes raise one
    naming the file and the rule), so it is a BadInputError (exit 2). Outside, a ValueError is a bug."""
    try:
        yield
    except BadInputError:
        raise
    except ValueError as exc:
        raise BadInputError(str(exc)) from exc


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def log_dir() -> str:
    """$STARK_LOG_DIR, else the folder of the job's log file (its config's home), else the home's logs
    folder ($STARK_HOME, else ~/.stark) for a job that failed before its config was loaded."""
    if os.environ.get(LOG_DIR_ENV):
        return os.environ[LOG_DIR_ENV]
    return str(job_log().parent) if job_log() is not None else Home.resolve().logs


def write_traceback_log(prog: str, argv, exc: BaseException) -> str:
    folder = log_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{prog.replace(' ', '-').replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}-"
                                f"{os.getpid()}.log")
    with open(path, "w") as f:
        f.write(f"{prog} {' '.join(sys.argv[1:] if argv is None else map(str, argv))}\n\n")
        f.write("".join(traceback.format_exception(exc)))
    return path
