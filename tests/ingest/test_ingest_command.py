"""`stark ingest` answers bad arguments with one line naming what is wrong, before any work: a DEST that
cannot be the output folder, a --config that is not YAML text, and a SRC whose path holds an '='."""
from __future__ import annotations

import os

import pytest

from stark.jobs.ingest import main as ingest_main
from stark.platform.ingest.synthetic import write_demo_dataset


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("src") / "got10k"
    write_demo_dataset(str(root), "got10k", num_sequences=1, num_frames=4, size=(64, 48), num_test=0, seed=31)
    return str(root)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def a_file(tmp_path) -> str:
    (tmp_path / "taken").write_text("mine\n")
    return str(tmp_path / "taken")


@pytest.mark.parametrize("make_dest, fragment", [
    (a_file, "DEST is an existing file, not a folder"),
    (lambda tmp_path: os.path.join(a_file(tmp_path), "sub", "dest"), "taken is a file, not a folder"),
    (lambda tmp_path: str(tmp_path / "out" / "manifest.parquet"), "not a manifest file: give a folder"),
], ids=["an-existing-file", "a-path-under-a-file", "a-parquet-file-name"])
def test_a_dest_that_cannot_be_the_output_folder_is_one_line_and_nothing_is_written(src, tmp_path, capsys,
                                                                                     make_dest, fragment):
    dest = make_dest(tmp_path)
    before = sorted(os.listdir(tmp_path))
    assert ingest_main([src, dest]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: {dest}: ") and fragment in err and err.rstrip().endswith("nothing was imported")
    assert sorted(os.listdir(tmp_path)) == before
    if os.path.exists(tmp_path / "taken"):
        assert (tmp_path / "taken").read_text() == "mine\n"  # the file is left as it was


@pytest.mark.parametrize("content, fragment", [
    (bytes(range(256)) * 4, "not a YAML text file (byte 128 is not UTF-8 text)"),
    (b"ingest: [crf: 3\n", "not valid YAML: "),
    (b"ingest:\n  crf\x00: 3\n", "not valid YAML: unacceptable character #x0000"),
], ids=["binary", "broken-yaml", "nul-byte"])
def test_a_config_file_that_is_not_yaml_text_is_one_line_naming_it(src, tmp_path, capsys, content, fragment):
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        ingest_main(["--config", str(config), src, str(tmp_path / "dest")])
    assert exit_info.value.code == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: {config}: ") and fragment in err
    assert not (tmp_path / "dest").exists()


def test_a_source_path_with_an_equals_sign_is_the_source_not_an_override(tmp_path, capsys):
    src = tmp_path / "data" / "src=v1"
    src.mkdir(parents=True)  # an empty folder: the ingest stops at reading it, naming it as SRC
    assert ingest_main([str(src), str(tmp_path / "dest"), "ingest.crf=20"]) == 2
    err = one_error_line(capsys)
    assert f"{src}: not a known layout" in err


def test_a_relative_source_named_like_an_override_is_the_source_when_it_exists(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkdir("src=v1")
    assert ingest_main(["src=v1", "dest"]) == 2
    assert f"{tmp_path / 'src=v1'}: not a known layout" in one_error_line(capsys)
