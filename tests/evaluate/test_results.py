"""Result files and submission zips have each benchmark's own layout and read back unchanged.

The GOT-10k layout is the toolkit's (ExperimentGOT10k._record / report on the test subset): one
folder per sequence with <seq>_001.txt (x,y,w,h comma-separated, one line per frame) and
<seq>_time.txt, zipped with the sequence folders at the top level. TrackingNet's server
(TrackingNet-devkit metrics.py) reads comma-separated <seq>.txt files from the zip.
"""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from stark.platform.evaluate.metrics import aggregate, sequence_metrics
from stark.platform.evaluate.results import (SubmissionError, check_got10k_results, make_got10k_submission,
                                    make_trackingnet_submission, read_result_boxes, read_got10k_results,
                                    read_lasot_results, read_trackingnet_results, write_box_file,
                                    write_got10k_results, write_lasot_results, write_metric_tables,
                                    write_trackingnet_results)

FRAMES = {"GOT-10k_Test_000001": 5, "GOT-10k_Test_000002": 3}


def boxes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(np.concatenate([rng.uniform(0, 500, (n, 2)), rng.uniform(5, 100, (n, 2))], axis=1), 3)


@pytest.fixture
def got10k_tree(tmp_path):
    root = tmp_path / "got10k_results"
    for i, (sequence, n) in enumerate(FRAMES.items()):
        write_got10k_results(root, sequence, boxes(n, seed=i), np.full(n, 0.04))
    return root


def test_got10k_results_use_the_toolkit_file_names_and_read_back(got10k_tree):
    folder = got10k_tree / "GOT-10k_Test_000001"
    assert sorted(p.name for p in folder.iterdir()) == ["GOT-10k_Test_000001_001.txt",
                                                        "GOT-10k_Test_000001_time.txt"]
    lines = (folder / "GOT-10k_Test_000001_001.txt").read_text().splitlines()
    assert len(lines) == 5 and all(len(line.split(",")) == 4 for line in lines)
    read_boxes, read_times = read_got10k_results(got10k_tree, "GOT-10k_Test_000001")
    np.testing.assert_allclose(read_boxes, boxes(5, seed=0), atol=5e-4)
    np.testing.assert_allclose(read_times, np.full(5, 0.04))


def test_got10k_submission_zip_has_one_folder_per_sequence_with_one_line_per_frame(got10k_tree, tmp_path):
    zip_path = make_got10k_submission(got10k_tree, tmp_path / "stark_got10k.zip", expected_frames=FRAMES)
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(archive.namelist())
        assert names == sorted(f"{s}/{s}_{kind}.txt" for s in FRAMES for kind in ("001", "time"))
        assert {name.split("/")[0] for name in names} == set(FRAMES)  # top level = sequence folders
        for sequence, n in FRAMES.items():
            box_lines = archive.read(f"{sequence}/{sequence}_001.txt").decode().splitlines()
            assert len(box_lines) == n
            for line in box_lines:
                values = [float(v) for v in line.split(",")]
                assert len(values) == 4 and values[2] > 0 and values[3] > 0
            time_lines = archive.read(f"{sequence}/{sequence}_time.txt").decode().splitlines()
            assert len(time_lines) == n and all(float(t) > 0 for t in time_lines)


def test_got10k_submission_is_refused_when_the_server_would_reject_it(got10k_tree, tmp_path):
    # one line short
    short = got10k_tree / "GOT-10k_Test_000002" / "GOT-10k_Test_000002_001.txt"
    short.write_text("\n".join(short.read_text().splitlines()[:-1]) + "\n")
    # a sequence of the split never tracked
    expected = {**FRAMES, "GOT-10k_Test_000003": 4}
    problems = check_got10k_results(got10k_tree, expected)
    assert any("2 lines, expected 3" in p for p in problems)
    assert any("GOT-10k_Test_000003" in p for p in problems)
    with pytest.raises(SubmissionError):
        make_got10k_submission(got10k_tree, tmp_path / "bad.zip", expected_frames=expected)
    assert not (tmp_path / "bad.zip").exists()

    (got10k_tree / "GOT-10k_Test_000001" / "GOT-10k_Test_000001_time.txt").unlink()
    assert any("no GOT-10k_Test_000001_time.txt" in p for p in check_got10k_results(got10k_tree))


def test_trackingnet_submission_zip_holds_sequence_files_at_top_level(tmp_path):
    root = tmp_path / "trackingnet"
    write_trackingnet_results(root, "-0hVHaTJQ3g_0", boxes(4))
    write_trackingnet_results(root, "0-6LB4FqxoE_0", boxes(2, seed=1))
    zip_path = make_trackingnet_submission(root, tmp_path / "trackingnet.zip",
                                           expected_frames={"-0hVHaTJQ3g_0": 4, "0-6LB4FqxoE_0": 2})
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == ["-0hVHaTJQ3g_0.txt", "0-6LB4FqxoE_0.txt"]
        assert len(archive.read("-0hVHaTJQ3g_0.txt").decode().splitlines()) == 4
    np.testing.assert_allclose(read_trackingnet_results(root, "0-6LB4FqxoE_0"), boxes(2, seed=1), atol=5e-4)
    with pytest.raises(SubmissionError, match="expected 5"):
        make_trackingnet_submission(root, tmp_path / "bad.zip", expected_frames={"-0hVHaTJQ3g_0": 5})


def test_lasot_results_round_trip_and_the_reader_takes_pytracking_tab_files(tmp_path):
    path = write_lasot_results(tmp_path, "airplane-1", boxes(6))
    assert path.name == "airplane-1.txt" and path.read_text().count(",") == 6 * 3
    np.testing.assert_allclose(read_lasot_results(tmp_path, "airplane-1"), boxes(6), atol=5e-4)
    (tmp_path / "tabbed.txt").write_text("1\t2\t3\t4\n5\t6\t7\t8\n")
    assert read_result_boxes(tmp_path / "tabbed.txt").tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_writes_are_atomic_and_refuse_non_finite_boxes(tmp_path):
    path = write_box_file(tmp_path / "seq.txt", boxes(3))
    before = path.read_text()
    bad = boxes(3)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_box_file(path, bad)
    assert path.read_text() == before  # the old file is untouched
    write_box_file(path, boxes(2, seed=5))  # overwrite replaces the whole file
    assert len(path.read_text().splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq.txt"]  # no temporary files left


def test_metric_tables_are_written_as_csv(tmp_path):
    gt = np.tile([10.0, 10.0, 20.0, 20.0], (4, 1))
    result = aggregate({"a": sequence_metrics(gt, gt, protocol="ope"),
                        "b": sequence_metrics(gt, gt, protocol="ope")},
                       attributes={"a": ["Occlusion"], "b": ["Occlusion", "Scale Variation"]})
    written = write_metric_tables(result, tmp_path)
    per_sequence = written["per_sequence"].read_text().splitlines()
    assert per_sequence[0] == "sequence,num_frames,num_evaluated,auc,precision,norm_precision,op50,op75"
    assert per_sequence[1].startswith("a,4,4,0.952381,1.000000")
    per_attribute = written["per_attribute"].read_text().splitlines()
    assert per_attribute[0].startswith("attribute,num_sequences,auc")
    assert [line.split(",")[:2] for line in per_attribute[1:]] == [["Occlusion", "2"], ["Scale Variation", "1"]]
