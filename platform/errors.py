"""The two kinds of failure a job expects, told apart by what the user should do about them.

Every job's error boundary (`stark.jobs.boundary`) prints one line for these and exits 2 or 1; any other
exception is a bug, and its traceback goes to a log file. Raise them where the fault is first known,
with a message that says what is wrong, where (file:line, URI, key) and what to do.
"""
from __future__ import annotations


class BadInputError(ValueError):
    """The user's input is wrong: a file, a path, an argument or a config value (exit code 2).
    A ValueError, so the callers that already catch ValueError around their inputs keep working."""


class ServiceError(RuntimeError):
    """A service the job needs (object storage, MLflow) could not be reached or refused the job after its
    retries (exit code 1): the input may be fine, try again once the service is back."""
