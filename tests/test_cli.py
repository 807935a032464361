"""The installed `stark` console script lists its commands and runs model-summary."""
from __future__ import annotations

import shutil
import subprocess


def stark(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("stark")
    assert exe, "the console script 'stark' is installed with the project"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300)


def test_help_lists_the_commands():
    result = stark("--help")
    assert result.returncode == 0 and "model-summary" in result.stdout


def test_model_summary_prints_parameters_per_part_and_flops():
    result = stark("model-summary", "--config", "stark_tiny")
    assert result.returncode == 0, result.stderr
    for part in ("backbone", "transformer.encoder", "transformer.decoder", "box_head", "score_head", "all"):
        assert part in result.stdout
    assert "FLOPs per tracked frame" in result.stdout


def test_a_bad_override_fails_before_work_with_the_key():
    result = stark("model-summary", "--config", "stark_tiny", "model.transformer.bogus=1")
    assert result.returncode == 2 and "model.transformer.bogus" in result.stderr


def test_overrides_follow_a_jobs_own_positional_arguments():
    from stark.jobs.args import job_parser

    parser = job_parser("stark ingest", "", default_config="stark_tiny")
    parser.add_argument("src")
    parser.add_argument("dest")
    args = parser.parse_args(["in", "out", "ingest.crf=20", "--config", "stark_tiny", "data.max_gap=5"])
    assert (args.src, args.dest, args.overrides) == ("in", "out", ["ingest.crf=20", "data.max_gap=5"])
