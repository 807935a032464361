"""`stark evaluate`: an official-format checkpoint tracks a generated GOT-10k tree end to end,
writing the benchmark's result files, a valid test-server submission, metrics, tables and plots."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from tests.support.model_fixtures import official_model_config, preset_model_config
from stark.jobs.evaluate import main as evaluate_main
from stark.model.stark import build_stark
from stark.platform.evaluate.report import score_auc, score_auc_interval, score_labels
from stark.platform.evaluate.runner import (EvalSequence, FramesRef, load_sequences, pack_model, track_sequences,
                                            worker_chunks)
from stark.platform.evaluate.config import EvalConfig
from stark.platform.evaluate.results import check_got10k_results, read_got10k_results
from stark.platform.ingest.synthetic import make_sequences, write_got10k
from stark.platform.track.tracker import TrackResult
from stark.platform.track.config import TrackerChoice, TrackerSettings
from tests.model.test_official_checkpoint import official_state_dict, write_release_file


@pytest.fixture(scope="module")
def got10k_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("got10k")
    write_got10k(str(root), {"val": make_sequences(["GOT-10k_Val_000001", "GOT-10k_Val_000002",
                                                    "GOT-10k_Val_000003"], 24, (160, 120), seed=0),
                             "test": make_sequences(["GOT-10k_Test_000001", "GOT-10k_Test_000002"], 12,
                                                    (160, 120), seed=1)})
    return root


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "STARKST_ep0050.pth.tar"
    write_release_file(path, official_state_dict(build_stark(official_model_config("stark_tiny"))))
    return path


def run_evaluate(*args: str) -> int:
    return evaluate_main(["--config", "stark_tiny", "evaluate.num_workers=0", "--no-mlflow", *args])


def test_an_official_checkpoint_is_evaluated_end_to_end_on_a_val_split(tmp_path, got10k_tree, official_checkpoint,
                                                                       capsys):
    out = tmp_path / "eval"
    assert run_evaluate("--model", str(official_checkpoint), "--data", str(got10k_tree), "--split", "val",
                        "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "[3/3]" in printed and "ao=" in printed

    summary = json.loads((out / "summary.json").read_text())
    assert summary["sequences"] == 3 and summary["frames"] == 72
    assert set(summary["scores"]) >= {"ao", "sr50", "sr75"}
    assert all(0.0 <= summary["scores"][k] <= 1.0 for k in ("ao", "sr50", "sr75"))
    for name in ("GOT-10k_Val_000001", "GOT-10k_Val_000002", "GOT-10k_Val_000003"):
        boxes, times = read_got10k_results(out / "got10k", name)
        assert boxes.shape == (24, 4) and times.shape == (24,)
    assert (out / "per_sequence.csv").exists()
    assert any(p.suffix == ".png" and p.stat().st_size > 5000 for p in out.iterdir())
    # STARK-ST has a score on every frame but the first: its ROC AUC is reported (null if one class only)
    assert 0 < summary["score_auc"]["frames"] <= 3 * 23 and "score_auc=" in printed


def test_a_test_split_without_ground_truth_still_gives_a_server_ready_submission(tmp_path, got10k_tree,
                                                                                 official_checkpoint):
    out = tmp_path / "eval"
    assert run_evaluate("--model", str(official_checkpoint), "--data", str(got10k_tree), "--split", "test",
                        "--out", str(out)) == 0
    assert check_got10k_results(out / "got10k", {"GOT-10k_Test_000001": 12, "GOT-10k_Test_000002": 12}) == []
    with zipfile.ZipFile(out / "got10k_submission.zip") as archive:
        names = sorted(archive.namelist())
    assert "GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt" in names
    assert "GOT-10k_Test_000002/GOT-10k_Test_000002_time.txt" in names
    assert json.loads((out / "summary.json").read_text())["scores"] == {}


def test_a_missing_model_or_data_fails_with_its_name(tmp_path, got10k_tree, official_checkpoint, capsys):
    assert run_evaluate("--model", str(tmp_path / "absent.pt"), "--data", str(got10k_tree)) == 2
    assert "absent.pt" in capsys.readouterr().err
    assert run_evaluate("--model", str(official_checkpoint), "--data", str(tmp_path / "nowhere")) == 2
    assert "nowhere" in capsys.readouterr().err


def scored_sequence(name: str, iou_by_frame: list[float], scores: list[float], visible=None):
    """A sequence whose ground truth is a 10 x 10 box at the origin, and a result whose box in each frame
    is that box shifted right so that it overlaps the truth by the given IoU."""
    n = len(iou_by_frame)
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (n, 1))
    # shift d: overlap (10 - d) * 10, union 200 - overlap -> d = 10 - 200 * iou / (1 + iou) / 10
    shift = [10.0 - 20.0 * iou / (1.0 + iou) for iou in iou_by_frame]
    boxes = np.array([[d, 0.0, 10.0, 10.0] for d in shift])
    seq = EvalSequence(name, "got10k", "val", FramesRef("images", ()), gt,
                       np.ones(n, dtype=bool) if visible is None else np.asarray(visible), True)
    return seq, TrackResult(boxes, np.asarray(scores, dtype=np.float64), np.zeros(n), [])


def test_score_auc_pools_scored_visible_frames_labelled_by_iou_above_one_half():
    # frame 0 has no score; frame 3 of "b" is absent: both are left out
    a, ra = scored_sequence("a", [1.0, 0.9, 0.2, 0.6], [np.nan, 0.8, 0.3, 0.35])
    b, rb = scored_sequence("b", [1.0, 0.1, 0.7, 0.9], [np.nan, 0.4, 0.9, 0.99], visible=[1, 1, 1, 0])
    scores, labels = score_labels({"a": ra, "b": rb}, [a, b])
    assert scores.tolist() == [0.8, 0.3, 0.35, 0.4, 0.9] and labels.tolist() == [True, False, True, False, True]
    # positives 0.8, 0.35, 0.9 vs negatives 0.3, 0.4: 0.35 loses to 0.4, the other five pairs are won
    assert score_auc({"a": ra, "b": rb}, [a, b]) == pytest.approx(5 / 6)


def test_score_auc_interval_resamples_whole_sequences():
    # each sequence alone ranks its frames right, but "b" scores its misses above "a"'s hits: pooled,
    # the AUC depends on which sequences are drawn, and a draw of "a" alone (or "b" alone) is perfect
    a, ra = scored_sequence("a", [1.0, 0.9, 0.9, 0.1], [np.nan, 0.5, 0.5, 0.2])
    b, rb = scored_sequence("b", [1.0, 0.9, 0.1, 0.1], [np.nan, 0.95, 0.8, 0.8])
    results, sequences = {"a": ra, "b": rb}, [a, b]
    # positives 0.5, 0.5, 0.95 vs negatives 0.2, 0.8, 0.8: 0.95 wins all 3, each 0.5 wins 1 of 3 -> 5/9
    assert score_auc(results, sequences) == pytest.approx(5 / 9)
    lo, hi = score_auc_interval(results, sequences)
    assert lo == pytest.approx(5 / 9) and hi == 1.0
    assert np.isnan(score_auc_interval({}, sequences)).all()


def test_score_auc_is_nan_without_scores_or_with_one_class():
    stark_s, result = scored_sequence("s", [1.0, 0.9, 0.1], [np.nan] * 3)
    assert np.isnan(score_auc({"s": result}, [stark_s]))
    lost, result = scored_sequence("l", [1.0, 0.1, 0.2], [np.nan, 0.9, 0.1])
    assert np.isnan(score_auc({"l": result}, [lost]))


def test_tuned_settings_stored_with_the_model_are_the_default_and_overrides_still_win():
    stored = {"update_interval": 37, "score_threshold": 0.8}
    assert TrackerChoice(TrackerSettings()).for_model(stored) == TrackerSettings(37, 0.8)
    assert TrackerChoice(TrackerSettings(update_interval=5), frozenset({"update_interval"})).for_model(stored) \
        == TrackerSettings(5, 0.8)


def test_the_config_remembers_which_tracker_keys_the_command_line_set():
    from stark.platform.experiment import dump_yaml, load_config, to_dict

    cfg = load_config("stark_tiny", ["tracker.update_interval=5", "evaluate.batch_size=3"])
    assert cfg.tracker_choice == TrackerChoice(cfg.tracker, frozenset({"update_interval"}))
    assert load_config("stark_tiny").tracker_choice.command_line == frozenset()
    # the record is no config key: it is neither stored nor dumped
    assert "command_line" not in to_dict(cfg) and "command_line" not in dump_yaml(cfg)


@pytest.mark.slow
def test_two_ray_workers_give_the_boxes_of_in_process_evaluation(got10k_tree):
    import ray

    torch.manual_seed(0)
    cfg = preset_model_config("stark_tiny")
    packed = pack_model(build_stark(cfg), cfg)
    sequences = load_sequences(str(got10k_tree), split="val")
    settings = TrackerSettings(update_interval=5, score_threshold=0.2)
    local = track_sequences(packed, settings, sequences, EvalConfig(num_workers=0, batch_size=2))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        seen = []
        remote = track_sequences(packed, settings, sequences, EvalConfig(num_workers=2, batch_size=1),
                                 on_result=lambda seq, _: seen.append(seq.name))
    finally:
        ray.shutdown()
    assert sorted(seen) == sorted(s.name for s in sequences)
    for name, result in local.items():
        np.testing.assert_allclose(remote[name].boxes, result.boxes, atol=1e-3)


def test_sequences_are_chunked_so_that_every_ray_worker_gets_work(got10k_tree):
    sequences = load_sequences(str(got10k_tree), split="val") * 6  # 18 sequences
    chunks = worker_chunks(sequences, batch_size=16, num_workers=2)
    assert len(chunks) >= 2 and sum(len(c) for c in chunks) == 18
    assert max(len(c) for c in worker_chunks(sequences, batch_size=2, num_workers=2)) == 4  # two batches
    frames = [sum(s.num_frames for s in c) for c in worker_chunks(sequences[:5], batch_size=1, num_workers=4)]
    assert frames == sorted(frames, reverse=True)  # longest first


def test_without_out_each_model_and_data_set_gets_its_own_folder_in_the_home(tmp_path, got10k_tree,
                                                                             official_checkpoint, capsys):
    root = tmp_path / "evals"
    assert run_evaluate("--model", str(official_checkpoint), "--data", str(got10k_tree), "--split", "val",
                        f"evaluate.output={root}") == 0
    assert run_evaluate("--model", str(official_checkpoint), "--data", str(got10k_tree), "--split", "test",
                        f"evaluate.output={root}") == 0
    printed = capsys.readouterr().out
    summaries = sorted(root.glob("*/*/summary.json"))
    assert len(summaries) == 2 and summaries[0].parent != summaries[1].parent  # val kept beside test
    assert all(p.parent.parent.name.startswith("STARKST_ep0050.pth.tar-") for p in summaries)
    # one speed figure, defined where it is printed
    assert printed.count("throughput") == 2 and "frames tracked / wall-clock seconds" in printed
    assert "fps=" not in printed


def test_progress_lines_arrive_as_sequences_finish_not_all_at_the_end(got10k_tree):
    import time

    torch.manual_seed(0)
    cfg = preset_model_config("stark_tiny")
    sequences = load_sequences(str(got10k_tree), split="val")
    arrivals = []
    track_sequences(pack_model(build_stark(cfg), cfg), TrackerSettings(), sequences,
                    EvalConfig(num_workers=0, batch_size=1), on_result=lambda seq, _: arrivals.append(time.perf_counter()))
    assert len(arrivals) == 3 and arrivals[1] - arrivals[0] > 0.01 and arrivals[2] - arrivals[1] > 0.01


def test_the_report_draws_the_static_box_beside_the_model_in_its_plots(tmp_path, monkeypatch):
    from stark.platform.evaluate import report as report_module

    drawn = {}
    monkeypatch.setattr(report_module, "plot_benchmark", lambda results, out, benchmark: drawn.update(results) or {})
    seq, result = scored_sequence("s", [1.0, 0.8, 0.6], [float("nan"), 2.0, 1.0])
    report_module.write_report("got10k", {"s": result}, [seq], tmp_path)
    assert list(drawn) == ["STARK", report_module.STATIC_BOX]
    static = report_module.static_box_metrics("got10k", [seq])
    assert drawn[report_module.STATIC_BOX].scores["ao"] == static.scores["ao"] == 1.0  # the truth never moves here
