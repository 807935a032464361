"""The installed `stark` console script lists its commands and runs model-summary; every job reads its
arguments the same way."""
from __future__ import annotations

import shutil
import subprocess

import pytest


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


# --- arguments every job shares: options, positionals and key.sub=value overrides in any order ----------------
def two_positionals():
    from stark.jobs.args import job_parser

    parser = job_parser("stark ingest", "test parser")
    parser.add_argument("src")
    parser.add_argument("dest")
    parser.add_argument("--out")
    parser.add_argument("--skip-invalid", action="store_true")
    return parser


@pytest.mark.parametrize("argv", [
    ["data/src=v1", "s3://bucket/run=2", "ingest.crf=20"],
    ["ingest.crf=20", "data/src=v1", "s3://bucket/run=2"],
    ["data/src=v1", "ingest.crf=20", "--skip-invalid", "s3://bucket/run=2"],
])
def test_paths_with_an_equals_sign_bind_as_positionals_and_only_key_sub_value_is_an_override(argv):
    args = two_positionals().parse_args(argv)
    assert (args.src, args.dest, args.overrides) == ("data/src=v1", "s3://bucket/run=2", ["ingest.crf=20"])


def test_an_existing_path_named_like_an_override_is_a_positional(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "name=v1").mkdir()
    args = two_positionals().parse_args(["name=v1", "dest", "name=run"])
    assert (args.src, args.dest, args.overrides) == ("name=v1", "dest", ["name=run"])


def test_an_option_value_with_an_equals_sign_stays_the_options_value():
    args = two_positionals().parse_args(["a", "b", "--out", "x=1", "name=run"])
    assert (args.out, args.overrides) == ("x=1", ["name=run"])


def test_a_stray_argument_is_the_one_reported_as_not_an_override(capsys):
    from stark.jobs.args import config_from_args

    args = two_positionals().parse_args(["a", "b", "extra"])
    assert (args.src, args.dest, args.overrides) == ("a", "b", ["extra"])
    with pytest.raises(SystemExit):
        config_from_args(args)
    assert "override 'extra': expected key.sub=value" in capsys.readouterr().err


def test_a_positional_before_an_override_binds_to_the_positional_not_the_overrides():
    from stark.jobs.args import job_parser

    parser = job_parser("stark track", "test parser", default_config="stark_tiny")
    parser.add_argument("video")
    parser.add_argument("--box")
    args = parser.parse_args(["clip.mp4", "--box", "1,2,3,4", "tracker.update_interval=5"])
    assert (args.video, args.overrides) == ("clip.mp4", ["tracker.update_interval=5"])


def test_overrides_follow_a_jobs_own_positional_arguments():
    from stark.jobs.args import job_parser

    parser = job_parser("stark ingest", "", default_config="stark_tiny")
    parser.add_argument("src")
    parser.add_argument("dest")
    args = parser.parse_args(["in", "out", "ingest.crf=20", "--config", "stark_tiny", "data.max_gap=5"])
    assert (args.src, args.dest, args.overrides) == ("in", "out", ["ingest.crf=20", "data.max_gap=5"])
