"""The promotion gate knows the trivial answer: a candidate must beat the static box (the first frame's box
on every frame) under the same paired test as a champion, the record shows that baseline, and it says
whether the promotion sequences are the ones the candidate was tuned on.

The rule is checked on per-sequence scores here; tests/registry/test_registry.py drives it through a server, and
the last test below through a real registry on an sqlite store in tmp_path."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from stark.platform.evaluate.runner import EvalSequence, FramesRef
from stark.platform.registry.promotion import (OVERLAP_NONE, OVERLAP_NOT_TUNED, OVERLAP_SAME, OVERLAP_UNKNOWN,
                                      comparison_table, decide, static_box_scores, tune_overlap)
from stark.platform.registry.config import RegistryConfig
from stark.platform.tune.search import tuning_record

CFG = RegistryConfig(margin=0.02)


def scores(values) -> dict[str, float]:
    return {f"s{i}": float(v) for i, v in enumerate(values)}


STATIC = scores(0.30 + 0.01 * i for i in range(10))  # the static box: 0.30 .. 0.39, mean 0.345


def shifted(baseline: dict[str, float], by: float) -> dict[str, float]:
    return {k: v + by for k, v in baseline.items()}


def sequence(name: str, boxes, visible=None) -> EvalSequence:
    boxes = np.asarray(boxes, dtype=np.float64)
    return EvalSequence(name, "got10k", "val", FramesRef("images", ()), boxes,
                        np.ones(len(boxes), dtype=bool) if visible is None else np.asarray(visible), True)


# --- the static box as a baseline ------------------------------------------------------------------------
def test_a_first_model_worse_than_the_static_box_is_refused_naming_the_baseline_and_both_scores():
    decision = decide(shifted(STATIC, -0.1), None, CFG, "ao", None, static=STATIC)
    assert not decision.promote
    assert "static box" in decision.reason and "0.2450" in decision.reason and "0.3450" in decision.reason
    assert decision.static_mean == pytest.approx(0.345) and decision.static_diff == pytest.approx(-0.1)


def test_a_first_model_that_beats_the_static_box_by_the_margin_is_promoted():
    decision = decide(shifted(STATIC, 0.05), None, CFG, "ao", None, static=STATIC)
    assert decision.promote and decision.static_p_value == 0.0 and decision.static_ci_low > 0
    assert decision.reason.startswith("first model") and "static box" in decision.reason


def test_beating_the_static_box_by_less_than_the_margin_is_not_enough():
    decision = decide(shifted(STATIC, 0.01), None, CFG, "ao", None, static=STATIC)
    assert not decision.promote and "below the margin" in decision.reason and "static box" in decision.reason


def test_an_inconsistent_lead_over_the_static_box_is_not_significant():
    candidate = {**STATIC, "s0": STATIC["s0"] + 0.6, "s1": STATIC["s1"] - 0.2}  # mean +0.04, from one sequence
    decision = decide(candidate, None, CFG, "ao", None, static=STATIC)
    assert not decision.promote and "not a significant win" in decision.reason


def test_beating_the_champion_is_not_enough_when_the_static_box_is_better_still():
    champion = shifted(STATIC, -0.2)
    decision = decide(shifted(STATIC, -0.1), champion, CFG, "ao", "3", static=STATIC)
    assert not decision.promote and "static box" in decision.reason
    assert decision.mean_diff == pytest.approx(0.1)  # the win over the champion is still on record


def test_with_a_champion_the_candidate_must_beat_both():
    champion = shifted(STATIC, 0.05)
    promoted = decide(shifted(STATIC, 0.10), champion, CFG, "ao", "3", static=STATIC)
    assert promoted.promote and promoted.reason.startswith("wins")
    assert promoted.mean_diff == pytest.approx(0.05) and promoted.static_diff == pytest.approx(0.10)
    tie = decide(champion, champion, CFG, "ao", "3", static=STATIC)
    assert not tie.promote and "below the margin" in tie.reason


def test_min_first_metric_is_an_extra_floor_on_top_of_the_static_box():
    floor = RegistryConfig(margin=0.02, min_first_metric=0.5)
    decision = decide(shifted(STATIC, 0.05), None, floor, "ao", None, static=STATIC)  # beats static, mean 0.395
    assert not decision.promote and "min_first_metric" in decision.reason


def test_the_static_box_is_scored_with_the_benchmark_metric():
    # the box never moves from frame 0; the target moves 5 px right in frame 1 and comes back in frame 2:
    # IoU 50 / 150 = 1/3 then 1; GOT-10k's AO skips frame 0 -> (1/3 + 1) / 2
    seq = sequence("a", [[0, 0, 10, 10], [5, 0, 10, 10], [0, 0, 10, 10]])
    assert static_box_scores("ao", "got10k", [seq]) == {"a": pytest.approx(2 / 3)}


def test_the_comparison_table_shows_the_static_box_beside_candidate_and_champion():
    rows = list(csv.DictReader(io.StringIO(comparison_table(shifted(STATIC, 0.1), shifted(STATIC, 0.05), STATIC))))
    assert [r["sequence"] for r in rows] == sorted(STATIC) + ["mean"]
    assert float(rows[-1]["static_box"]) == pytest.approx(0.345)
    assert float(rows[-1]["difference"]) == pytest.approx(0.05)
    assert float(rows[-1]["difference_to_static"]) == pytest.approx(0.1)
    first = list(csv.DictReader(io.StringIO(comparison_table(STATIC, None, STATIC))))
    assert first[0]["champion"] == "" and first[0]["difference"] == ""


# --- tuning and promotion sequences -------------------------------------------------------------------------
def test_the_record_says_whether_promotion_runs_on_the_tuning_sequences():
    tune = [sequence(f"t{i}", [[0, 0, 10, 10], [i, 0, 10, 10]]) for i in range(3)]
    other = [sequence(f"p{i}", [[0, 0, 10, 10], [i, 1, 10, 10]]) for i in range(3)]
    assert tune_overlap(tuning_record(tune), tune) == OVERLAP_SAME
    assert tune_overlap(tuning_record(tune), other) == OVERLAP_NONE
    assert tune_overlap(tuning_record(tune), other[:2] + tune[:1]) == "partial (1 of 3 sequences)"
    assert tune_overlap(None, other) == OVERLAP_NOT_TUNED
    assert tune_overlap({"metric": "ao", "value": 0.5}, other) == OVERLAP_UNKNOWN  # tuned before records existed


def test_the_tuning_record_survives_a_change_of_storage_and_a_trip_through_a_tag():
    seq = sequence("a", [[0, 0, 10, 10], [1.0000001, 0, 10, 10]])
    ingested = sequence("a", np.float32([[0, 0, 10, 10], [1, 0, 10, 10]]))  # clips keep float32 boxes
    ingested.frames = FramesRef("clips", ("s3://bucket/a/0.mp4",), (10, 10))
    record = json.loads(json.dumps(tuning_record([seq])))
    assert tune_overlap(record, [ingested]) == OVERLAP_SAME


# --- through a real registry (sqlite store in tmp_path) -----------------------------------------------------
@pytest.mark.slow
def test_a_model_is_refused_where_the_static_box_is_better_and_promoted_where_it_beats_it(
        tmp_path, monkeypatch, val_tree, random_checkpoint, own_track_tree):
    import mlflow

    from stark.jobs.register import register
    from stark.platform.experiment import load_config
    from stark.platform.evaluate.runner import load_sequences
    from stark.platform.registry.promotion import promote
    from stark.platform.mlflow_runs import mlflow_client
    from stark.platform.registry.versions import alias_version

    monkeypatch.chdir(tmp_path)  # nothing MLflow writes may land in the repository
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = load_config("stark_tiny", [f"mlflow.tracking_uri={uri}", "evaluate.num_workers=0"])
    client = mlflow_client(uri)
    lines: list[str] = []

    def promote_on(version: str, tree, **kwargs):
        sequences = load_sequences(str(tree), split="val")
        return promote(uri, f"models:/stark/{version}", sequences, "got10k", cfg.registry, cfg.tracker_choice, cfg.evaluate,
                       log=lines.append, **kwargs)

    saved_uri = mlflow.get_tracking_uri()
    try:
        untrained = str(register(cfg, str(random_checkpoint), log=lines.append).version)

        # generated footage: an untrained model loses to a box that never moves
        refused = promote_on(untrained, val_tree)
        d = refused.decision
        assert not d.promote and refused.champion_after is None and alias_version(client, "stark", "champion") is None
        assert d.static_mean > d.candidate_mean + cfg.registry.margin
        assert "static box" in d.reason and f"{d.candidate_mean:.4f}" in d.reason and f"{d.static_mean:.4f}" in d.reason
        tags = client.get_model_version("stark", untrained).tags
        assert tags["stark.promotion.decision"] == "rejected" and tags["stark.promotion.baseline"] == "static-box"
        assert float(tags["stark.promotion.static_mean"]) == pytest.approx(d.static_mean, abs=1e-6)
        assert tags["stark.promotion.tune_overlap"] == OVERLAP_NOT_TUNED
        run = client.get_run(refused.run_id)
        assert run.data.metrics["static_mean"] == pytest.approx(d.static_mean)
        table = list(csv.DictReader(io.StringIO(
            Path(client.download_artifacts(refused.run_id, "comparison.csv", str(tmp_path))).read_text())))
        assert float(table[-1]["static_box"]) == pytest.approx(d.static_mean, abs=1e-6)
        assert float(table[-1]["difference_to_static"]) < 0

        # the same model where the truth is its own track: it beats the static box by far, and is promoted
        promoted = promote_on(untrained, own_track_tree(random_checkpoint))
        d = promoted.decision
        assert d.promote and promoted.champion_after == untrained, d.reason
        assert d.candidate_mean > 0.99 and d.static_diff >= cfg.registry.margin and d.static_p_value == 0.0
        assert d.reason.startswith("first model") and "static box" in d.reason

        # a candidate tuned on the promotion sequences: the record says so, and a warning is logged
        again = str(register(cfg, str(random_checkpoint), log=lines.append).version)
        lines.clear()
        outcome = promote_on(again, val_tree, tuned_on=load_sequences(str(val_tree), split="val"))
        assert not outcome.decision.promote and outcome.decision.tune_overlap == OVERLAP_SAME
        assert client.get_model_version("stark", again).tags["stark.promotion.tune_overlap"] == OVERLAP_SAME
        assert any("warning" in line and "tuned on" in line for line in lines), lines
    finally:
        mlflow.set_tracking_uri(saved_uri)
