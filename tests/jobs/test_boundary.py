"""Every job runs inside one error boundary: an expected failure is one `error:` line and exit 2 (bad input)
or 1 (a service down); anything else is a bug whose traceback goes to a log file named on the terminal."""
from __future__ import annotations

import pytest

from stark.jobs.boundary import EXIT_BAD_INPUT, EXIT_FAILED, job_boundary, user_input
from stark.platform.errors import BadInputError, ServiceError


def job_raising(exc: BaseException):
    @job_boundary
    def main(argv=None, prog="stark demo") -> int:
        raise exc

    return main


@pytest.mark.parametrize("exc, code, line", [
    (BadInputError("data.txt:3: not a box"), EXIT_BAD_INPUT, "error: data.txt:3: not a box"),
    (FileNotFoundError(2, "No such file or directory", "/no/such"), EXIT_BAD_INPUT,
     "error: no such file or folder, /no/such, check the path"),
    (ServiceError("object storage at http://x: not answering"), EXIT_FAILED,
     "error: object storage at http://x: not answering"),
], ids=["bad-input", "missing-file", "service-down"])
def test_an_expected_failure_is_one_error_line_and_its_exit_code(capsys, exc, code, line):
    assert job_raising(exc)([]) == code
    err = capsys.readouterr().err
    assert err.splitlines() == [line]


def test_an_expected_failure_wrapped_by_another_exception_is_still_recognised(capsys):
    try:
        raise BadInputError("clip.mp4: not a readable video")
    except BadInputError as cause:
        wrapped = RuntimeError("worker died")
        wrapped.__cause__ = cause
    assert job_raising(wrapped)([]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == "error: clip.mp4: not a readable video"


def test_an_expected_failure_inside_a_ray_train_worker_or_controller_is_still_recognised(capsys):
    """Ray Train carries a worker's exception back inside WorkerGroupError (per rank, wrapped with its
    traceback text) and the controller's inside ControllerError: the one line is the inner exception's."""
    from ray.train import ControllerError, WorkerGroupError
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback

    outage = ServiceError("object storage at http://127.0.0.1:9 (bucket 'runs') did not answer: writing ...")
    worker = WorkerGroupError("rank 0 failed", {0: UserExceptionWithTraceback(outage, "Traceback ...")})
    assert job_raising(worker)([]) == EXIT_FAILED
    assert capsys.readouterr().err.splitlines() == [f"error: {outage}"]
    assert job_raising(ControllerError(BadInputError("clip.mp4: not a readable video")))([]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.splitlines() == ["error: clip.mp4: not a readable video"]


def test_a_bug_writes_its_traceback_to_a_log_file_and_names_it_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("STARK_LOG_DIR", str(tmp_path))  # the documented override of <home>/logs
    assert job_raising(ZeroDivisionError("division by zero"))(["--x", "1"]) == EXIT_FAILED
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: unexpected ZeroDivisionError: division by zero, in stark demo")
    (log,) = tmp_path.iterdir()
    assert str(log) in err[0]
    text = log.read_text()
    assert text.startswith("stark demo --x 1") and "Traceback (most recent call last)" in text


def test_a_bugs_traceback_goes_to_the_logs_folder_of_the_home_the_jobs_config_names(capsys, tmp_path, monkeypatch):
    from stark.jobs.args import config_from_args, job_parser

    monkeypatch.delenv("STARK_LOG_DIR", raising=False)
    monkeypatch.chdir(tmp_path)

    @job_boundary
    def main(argv=None, prog="stark demo") -> int:
        config_from_args(job_parser(prog, "a job with a bug", default_config="stark_tiny").parse_args(argv))
        raise ZeroDivisionError("division by zero")

    assert main([f"home={tmp_path / 'home'}", "--verbose"]) == EXIT_FAILED
    (log,) = (tmp_path / "home" / "logs").iterdir()  # beside the job's demo.log (none: --verbose routes nothing)
    assert str(log) in capsys.readouterr().err and "Traceback" in log.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["home"]  # nothing in the working folder


def test_a_job_that_fails_before_loading_its_config_logs_into_the_home_of_the_environment(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "STARK_LOG_DIR"}
    env["STARK_HOME"] = str(tmp_path / "home")
    script = ("import sys\nfrom stark.jobs.boundary import job_boundary\n"
              "@job_boundary\ndef main(argv=None, prog='stark demo'):\n    return 1 // 0\n"
              "sys.exit(main([]))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == EXIT_FAILED
    (log,) = (tmp_path / "home" / "logs").iterdir()
    assert done.stderr.strip().endswith(f"the traceback is in {log}: please report it with that file")


def test_a_plain_value_error_is_bad_input_only_where_the_job_reads_its_inputs(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("STARK_LOG_DIR", str(tmp_path))

    @job_boundary
    def main(argv=None, prog="stark demo") -> int:
        with user_input():
            raise ValueError("model.pt: no such file")

    assert main([]) == EXIT_BAD_INPUT and capsys.readouterr().err.strip() == "error: model.pt: no such file"
    assert job_raising(ValueError("operands could not be broadcast"))([]) == EXIT_FAILED  # a bug, outside
    assert "the traceback is in" in capsys.readouterr().err


def test_argparse_exits_and_keyboard_interrupts_are_not_turned_into_errors(capsys):
    with pytest.raises(SystemExit):
        job_raising(SystemExit(2))([])
    assert job_raising(KeyboardInterrupt())([]) == 130


def test_every_job_main_runs_inside_the_boundary():
    import importlib

    from stark.jobs.cli import COMMANDS

    for module, _ in COMMANDS.values():
        main = importlib.import_module(module).main
        assert getattr(main, "__wrapped__", None) is not None, f"{module}.main is not wrapped by @job_boundary"
