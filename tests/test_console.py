"""What reaches the terminal (platform/console.py): the job's own lines; once a job routes library output
(its default, without --verbose) MLflow's logging and what a library prints inside `library_stdout()` go to
the job's log file. Progress off a terminal is a line every few seconds, a tenth of the work apart, and the
last one, rate and ETA kept."""
from __future__ import annotations

import io
import subprocess
import sys


def test_routed_mlflow_logging_and_library_prints_go_to_the_log_file_not_the_terminal(tmp_path):
    log = tmp_path / "logs" / "demo.log"
    script = f"""
from pathlib import Path
from stark.platform.console import library_stdout, route_library_output
route_library_output(Path({str(log)!r}))
from mlflow import MlflowClient  # imported after routing, as every job does: it must not re-attach its handler
MlflowClient("sqlite:///{tmp_path}/mlflow.db").search_experiments()  # a new store logs its table creation
with library_stdout():
    print("Configuration for experiment (a library's table)")
print("the job's own line")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["the job's own line"], done.stdout + done.stderr
    assert "mlflow" not in done.stderr.lower(), done.stderr
    text = log.read_text()
    assert "Configuration for experiment" in text and "Creating initial MLflow database tables" in text


def test_library_stdout_changes_nothing_when_output_is_not_routed(capsys):
    from stark.platform import console

    if console.routed_to() is not None:  # another test in this process routed it: the rule is the one above
        return
    with console.library_stdout():
        print("shown")
    assert capsys.readouterr().out == "shown\n"


def test_progress_lines_come_every_few_seconds_a_tenth_of_the_work_apart_so_a_slow_machine_prints_no_more():
    from stark.platform.console import ProgressPacer

    pacer = ProgressPacer(total=1000, every=0.0)  # a machine so slow that every item takes longer than `every`
    due = [done for done in range(1, 1001) if pacer.due(done)]
    assert due == list(range(100, 1001, 100))  # ten lines, the last one included
    assert not ProgressPacer(total=1000, every=3600).due(999) and ProgressPacer(total=1000, every=3600).due(1000)


def test_ingest_progress_off_a_terminal_is_one_line_every_few_seconds_and_the_last_one():
    from stark.platform.ingest.run import Progress

    out = io.StringIO()
    progress = Progress(300, out, every=3600)
    for done in range(1, 301):
        progress.update(done, force=done == 300)
    (line,) = out.getvalue().splitlines()
    assert line.startswith("ingest: 300/300 sequences") and "seq/s" in line and "ETA" in line
