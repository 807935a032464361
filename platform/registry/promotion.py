"""Gated promotion: move the champion alias only when a candidate beats both the trivial answer and the
champion, on the same sequences.

The trivial answer is the static box: the first frame's box repeated on every frame, scored with the
same metric functions. A tracker that cannot beat it has learnt nothing worth serving, so every
candidate, the first one included, must beat it; when a champion exists the candidate must beat that
too. Each win is the same test: the mean per-sequence metric is higher by at least `margin`, and a
paired bootstrap over sequences puts P(mean difference > 0) at `confidence` or more (p-value = 1 -
that). `min_first_metric` is an optional absolute floor a first model must also reach (0 = none).
Evaluations are stored as MLflow runs tagged with the model version and the data hash, and reused when
the same version meets the same data again. The record says whether the promotion sequences are the
ones the candidate's settings were tuned on (`stark.promotion.tune_overlap`). Promotions are
serialised by the registry lock (versions.PromotionLock, broken when its holder's heartbeat stops), the
two aliases move together or not at all (move_aliases), and the champion is read back after it is set.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..evaluate import metrics as M
from ..evaluate.config import EvalConfig
from ..evaluate.report import metric_protocol, resolve_metric
from ..evaluate.runner import EvalSequence, sequence_fingerprint, track_model
from ..mlflow_runs import EXPERIMENTS, experiment_id, mlflow_client
from ..model_loading import load_model
from ..track.config import TrackerChoice
from ..tune.search import sequence_set_hash, tuning_record
from .config import RegistryConfig
from .versions import PromotionLock, RegistryError, alias_version, explain_mlflow_error, resolve_version

STATIC_BASELINE = "static box (the first frame's box on every frame)"

# stark.promotion.tune_overlap: are the promotion sequences the ones the candidate was tuned on?
OVERLAP_NONE = "none"  # the tuning record lists other sequences only
OVERLAP_SAME = "same sequences"  # every promotion sequence was tuned on
OVERLAP_NOT_TUNED = "not tuned"  # the version carries no tuning record (settings not searched by stark tune)
OVERLAP_UNKNOWN = "unknown"  # tuned, but the record does not say on which sequences


@dataclass
class Decision:
    promote: bool
    reason: str
    metric: str
    candidate_mean: float
    champion_mean: float | None
    mean_diff: float | None  # candidate - champion
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    compared_to: str | None  # champion version, or None for a first model
    static_mean: float | None = None  # the static-box baseline on the same sequences
    static_diff: float | None = None  # candidate - static
    static_p_value: float | None = None
    static_ci_low: float | None = None
    static_ci_high: float | None = None
    tune_overlap: str = OVERLAP_UNKNOWN


@dataclass(frozen=True)
class Comparison:
    """The paired test of a candidate against one baseline on the same sequences."""

    baseline_mean: float
    mean_diff: float  # candidate - baseline
    p_value: float
    ci_low: float
    ci_high: float
    big_enough: bool  # mean_diff >= margin
    significant: bool  # p_value <= 1 - confidence

    @property
    def wins(self) -> bool:
        return self.big_enough and self.significant


def data_hash(sequences: list[EvalSequence]) -> str:
    """Identity of an evaluation set: names, frame sources and ground truth of every sequence."""
    digest = hashlib.sha256()
    for seq in sorted(sequences, key=lambda s: s.name):
        digest.update(seq.name.encode())
        digest.update(json.dumps([seq.frames.kind, list(seq.frames.paths)]).encode())
        digest.update(np.ascontiguousarray(seq.boxes_xywh, dtype=np.float64).tobytes())
        digest.update(np.ascontiguousarray(seq.visible, dtype=bool).tobytes())
    return digest.hexdigest()[:16]


def paired_bootstrap(diffs: np.ndarray, samples: int, seed: int) -> tuple[float, float, float]:
    """(p_value, ci_low, ci_high) of the mean of paired differences: p = P*(resampled mean <= 0)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diffs), size=(samples, len(diffs)))
    means = diffs[idx].mean(axis=1)
    return float((means <= 0).mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def compare(candidate: dict[str, float], baseline: dict[str, float], cfg: RegistryConfig, against: str
            ) -> Comparison:
    """Paired test of per-sequence scores {sequence: metric}; both must cover the same sequences."""
    names = sorted(set(candidate) & set(baseline))
    if len(names) != len(candidate) or len(names) != len(baseline):
        raise ValueError(f"candidate and {against} were not evaluated on the same sequences")
    diffs = np.array([candidate[n] - baseline[n] for n in names])
    mean_diff = float(diffs.mean())
    p_value, lo, hi = paired_bootstrap(diffs, cfg.bootstrap_samples, cfg.seed)
    return Comparison(float(np.mean([baseline[n] for n in names])), mean_diff, p_value, lo, hi,
                      big_enough=mean_diff >= cfg.margin, significant=p_value <= 1.0 - cfg.confidence)


def _test_text(c: Comparison, cfg: RegistryConfig) -> str:
    return (f"{c.mean_diff:+.4f} {'>=' if c.big_enough else '<'} margin {cfg.margin:.4f}, "
            f"p={c.p_value:.4f} {'<=' if c.significant else '>'} {1 - cfg.confidence:.4f}")


def decide(candidate: dict[str, float], champion: dict[str, float] | None, cfg: RegistryConfig, metric: str,
           compared_to: str | None, static: dict[str, float] | None = None) -> Decision:
    """The promotion rule on per-sequence scores {sequence: metric}.

    static: the static-box baseline's scores on the same sequences; the candidate must beat it under
    the same test as a champion. promote() always passes it; None leaves it out (to study the champion
    rule alone).
    """
    cand_mean = float(np.mean(list(candidate.values())))
    decision = Decision(False, "", metric, cand_mean, None, None, None, None, None, compared_to)
    s = c = None  # the two comparisons, both recorded whatever the outcome
    if static is not None:
        s = compare(candidate, static, cfg, "the static box")
        decision = dataclasses.replace(decision, static_mean=s.baseline_mean, static_diff=s.mean_diff,
                                       static_p_value=s.p_value, static_ci_low=s.ci_low, static_ci_high=s.ci_high)
    if champion is not None:
        c = compare(candidate, champion, cfg, "champion")
        decision = dataclasses.replace(decision, champion_mean=c.baseline_mean, mean_diff=c.mean_diff,
                                       p_value=c.p_value, ci_low=c.ci_low, ci_high=c.ci_high)

    if s is not None and not s.wins:
        why = "below the margin" if not s.big_enough else "not a significant win"
        return dataclasses.replace(decision, reason=(
            f"no promotion: does not beat the {STATIC_BASELINE}: mean {metric} {cand_mean:.4f} vs static "
            f"{s.baseline_mean:.4f} ({why}: {_test_text(s, cfg)})"))
    static_text = "" if s is None else f"; beats the static box {s.baseline_mean:.4f} by {s.mean_diff:+.4f}"
    if c is None:
        if cand_mean < cfg.min_first_metric:
            return dataclasses.replace(decision, reason=(
                f"no promotion: first model: mean {metric} {cand_mean:.4f} is below the minimum "
                f"registry.min_first_metric {cfg.min_first_metric:.4f}{static_text}"))
        test = "" if s is None else f" ({_test_text(s, cfg)})"
        floor = f", reaches the minimum {cfg.min_first_metric:.4f}" if cfg.min_first_metric > 0 else ""
        return dataclasses.replace(decision, promote=True,
                                   reason=f"first model: mean {metric} {cand_mean:.4f}{static_text}{test}{floor}")
    if c.wins:
        reason = (f"wins: mean {metric} +{c.mean_diff:.4f} >= margin {cfg.margin:.4f}, "
                  f"p={c.p_value:.4f} <= {1 - cfg.confidence:.4f}{static_text}")
    elif not c.big_enough:
        reason = (f"no promotion: mean {metric} difference {c.mean_diff:+.4f} to the champion is below the margin "
                  f"{cfg.margin:.4f}{static_text}")
    else:
        reason = (f"no promotion: the win of {c.mean_diff:+.4f} over the champion is not significant "
                  f"(p={c.p_value:.4f} > {1 - cfg.confidence:.4f}){static_text}")
    return dataclasses.replace(decision, promote=c.wins, reason=reason)


def boxes_scores(metric: str, benchmark: str, boxes_by_name: Mapping[str, np.ndarray],
                 sequences: list[EvalSequence]) -> dict[str, float]:
    """Per-sequence metric {sequence: value} of predicted boxes [N, 4] (NaN scores count as 0)."""
    protocol = metric_protocol(metric, benchmark)
    scores = {}
    for seq in sequences:
        m = M.sequence_metrics(boxes_by_name[seq.name], seq.boxes_xywh, seq.visible, **protocol)
        value = m.scores()[metric]
        scores[seq.name] = 0.0 if math.isnan(value) else float(value)
    return scores


def per_sequence_scores(metric: str, benchmark: str, results, sequences: list[EvalSequence]) -> dict[str, float]:
    """Per-sequence metric of tracking results {sequence: TrackResult}."""
    return boxes_scores(metric, benchmark, {s.name: results[s.name].boxes for s in sequences}, sequences)


def static_box_scores(metric: str, benchmark: str, sequences: list[EvalSequence]) -> dict[str, float]:
    """The trivial tracker's per-sequence metric: the first frame's box on every frame."""
    boxes = {s.name: np.tile(np.asarray(s.init_box, dtype=np.float64), (s.num_frames, 1)) for s in sequences}
    return boxes_scores(metric, benchmark, boxes, sequences)


def tune_overlap(tuned: dict | None, sequences: list[EvalSequence]) -> str:
    """Whether `sequences` are those a version's settings were tuned on, from its tuning record
    (`stark.tuned`: `sequence_fingerprints`, or `sequence_set` for very large sets)."""
    if not tuned:
        return OVERLAP_NOT_TUNED
    mine = [sequence_fingerprint(s) for s in sequences]
    listed = tuned.get("sequence_fingerprints")
    if listed is not None:
        shared = len(set(mine) & set(listed))
        if shared == 0:
            return OVERLAP_NONE
        return OVERLAP_SAME if shared == len(set(mine)) else f"partial ({shared} of {len(mine)} sequences)"
    if tuned.get("sequence_set") and tuned["sequence_set"] == sequence_set_hash(mine):
        return OVERLAP_SAME
    return OVERLAP_UNKNOWN


def evaluate_version(client, tracking_uri: str, name: str, version: str, sequences: list[EvalSequence],
                     hash_: str, metric: str, benchmark: str, tracker: TrackerChoice, eval_cfg: EvalConfig,
                     storage_cfg=None, log=print) -> dict[str, float]:
    """Per-sequence scores of a model version on a data set, reusing a stored evaluation if any."""
    from mlflow.entities import ViewType

    experiment = client.get_experiment_by_name(EXPERIMENTS["version_evaluation"])
    if experiment is not None:
        found = client.search_runs(
            [experiment.experiment_id],
            f"tags.`stark.eval.model` = '{name}/{version}' and tags.`stark.eval.data_hash` = '{hash_}' "
            f"and tags.`stark.eval.metric` = '{metric}' and attributes.status = 'FINISHED'",
            run_view_type=ViewType.ACTIVE_ONLY, max_results=1)
        if found:
            with tempfile.TemporaryDirectory() as folder:
                local = client.download_artifacts(found[0].info.run_id, "per_sequence.json", folder)
                stored = json.loads(Path(local).read_text())
            log(f"  {name}/{version}: reusing evaluation run {found[0].info.run_id} (same data hash {hash_})")
            return {k: float(v) for k, v in stored.items()}


    log(f"  {name}/{version}: evaluating on {len(sequences)} sequence(s)")
    loaded = load_model(f"models:/{name}/{version}", tracking_uri=tracking_uri)
    settings = tracker.for_model(loaded.tracker)
    results = track_model(loaded, settings, sequences, eval_cfg, storage_cfg)
    scores = per_sequence_scores(metric, benchmark, results, sequences)
    run = client.create_run(experiment_id(client, EXPERIMENTS["version_evaluation"], tracking_uri),
                            run_name=f"eval-{name}-{version}",
                            tags={"stark.eval.model": f"{name}/{version}", "stark.eval.data_hash": hash_,
                                  "stark.eval.metric": metric, "stark.eval.benchmark": benchmark})
    client.log_metric(run.info.run_id, f"mean_{metric}", float(np.mean(list(scores.values()))))
    client.log_text(run.info.run_id, json.dumps(scores, indent=1), "per_sequence.json")
    client.set_terminated(run.info.run_id)
    return scores


@dataclass
class PromotionOutcome:
    decision: Decision
    candidate: str
    champion_before: str | None
    champion_after: str | None
    run_id: str | None


def promote(tracking_uri: str, candidate_uri: str, sequences: list[EvalSequence], benchmark: str,
            cfg: RegistryConfig, tracker: TrackerChoice, eval_cfg: EvalConfig, storage_cfg=None, log=print,
            tuned_on: list[EvalSequence] | None = None) -> PromotionOutcome:
    """Evaluate the candidate (and the champion, if any) on the same sequences, score the static box on
    them, decide, and move the alias on a win. Everything happens under the promotion lock; the
    champion is re-read inside it.

    tuned_on: the sequences the candidate's tracker settings were tuned on, when the caller knows them;
        None reads them from the version's tuning record (tag `stark.tuned`, written by `stark tune`).
        Either way the record says whether they overlap `sequences`, and a warning is logged if they do.
    """
    client = mlflow_client(tracking_uri)
    name = cfg.model_name
    metric = resolve_metric(cfg.metric, benchmark)
    hash_ = data_hash(sequences)
    try:
        candidate = resolve_version(client, candidate_uri)
        with PromotionLock(client, name, cfg.lock_lease_s, cfg.lock_wait_s, log=log) as lock:
            undo_interrupted_move(client, name, cfg, log)
            champion = alias_version(client, name, cfg.champion_alias)
            log(f"candidate {name}/{candidate}, champion {f'{name}/{champion}' if champion else 'none'}, "
                f"{len(sequences)} sequence(s), data hash {hash_}, metric {metric}")
            if champion == candidate:
                raise RegistryError(f"{name}/{candidate} already is the {cfg.champion_alias}")
            overlap = candidate_tune_overlap(client, name, candidate, sequences, tuned_on)
            if overlap not in (OVERLAP_NONE, OVERLAP_NOT_TUNED):
                log(f"  warning: tune overlap {overlap!r}: "
                    + ("the promotion sequences are the ones its settings were tuned on, so its score here "
                       "is optimistic; promote on a split tuning did not see"
                       if overlap != OVERLAP_UNKNOWN else "its tuning record does not say which sequences "
                       "it was tuned on"))
            cand_scores = evaluate_version(client, tracking_uri, name, candidate, sequences, hash_, metric, benchmark,
                                           tracker, eval_cfg, storage_cfg, log)
            static_scores = static_box_scores(metric, benchmark, sequences)
            log(f"  {STATIC_BASELINE}: mean {metric} {np.mean(list(static_scores.values())):.4f}")
            champ_scores = None
            if champion is not None:
                champ_scores = evaluate_version(client, tracking_uri, name, champion, sequences, hash_, metric,
                                                benchmark, tracker, eval_cfg, storage_cfg, log)
            decision = decide(cand_scores, champ_scores, cfg, metric, champion, static=static_scores)
            decision = dataclasses.replace(decision, tune_overlap=overlap)
            run_id = record_decision(client, tracking_uri, name, candidate, decision, hash_, cand_scores,
                                     champ_scores, static_scores)
            after = champion
            if decision.promote:
                previous = alias_version(client, name, cfg.previous_alias)
                try:
                    move_aliases(client, tracking_uri, name, cfg, lock, (candidate, champion or previous),
                                 before=(champion, previous), candidate=candidate)
                except Exception:
                    try:
                        client.set_model_version_tag(name, candidate, "stark.promotion.decision", "promotion-failed")
                    except Exception:  # noqa: BLE001 - the server is gone; the move's own error says what to do
                        pass
                    raise
                after = alias_version(client, name, cfg.champion_alias)
                if after != candidate:
                    raise RegistryError(f"{cfg.champion_alias} reads {after} after being set to {candidate}")
            return PromotionOutcome(decision, candidate, champion, after, run_id)
    except RegistryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any tracking failure becomes one clear message
        from mlflow.exceptions import MlflowException

        if isinstance(exc, (MlflowException, OSError)) or "Connection" in type(exc).__name__:
            raise explain_mlflow_error(exc, tracking_uri) from exc
        raise


def candidate_tune_overlap(client, name: str, version: str, sequences: list[EvalSequence],
                           tuned_on: list[EvalSequence] | None) -> str:
    """tune_overlap() of the promotion sequences with what the version was tuned on (given, or its record)."""
    if tuned_on is not None:
        return tune_overlap(tuning_record(tuned_on), sequences)
    raw = client.get_model_version(name, version).tags.get("stark.tuned")
    try:
        tuned = json.loads(raw) if raw else None
    except ValueError:
        tuned = {"unreadable": raw}
    return tune_overlap(tuned, sequences)


# --- moving the aliases: champion and previous-champion change together, or not at all ------------------
MOVING_TAG = "stark.aliases.moving"  # on the registered model while its two aliases are being changed


def _set_alias(client, name: str, alias: str, version: str | None) -> None:
    if version is not None:
        client.set_registered_model_alias(name, alias, version)
    elif alias_version(client, name, alias) is not None:
        client.delete_registered_model_alias(name, alias)


def move_aliases(client, tracking_uri: str, name: str, cfg: RegistryConfig, lock: PromotionLock,
                 to: tuple[str, str | None], before: tuple[str | None, str | None],
                 candidate: str | None = None) -> None:
    """(champion, previous-champion) <- `to`, from `before`, under `lock`.

    The pair is journalled: tag MOVING_TAG on the registered model names `before` while the two alias
    writes run, and is removed after them. If the server goes away between them (one alias moved, the other
    not), the writes are undone here when the server still answers, else by the next promote or rollback
    (undo_interrupted_move, the first thing done under the lock), so a reader never keeps a pair that
    disagrees."""
    if not lock.still_held():
        raise RegistryError(f"lost {lock.name} (its heartbeat could not be renewed within "
                            f"{lock.lease_s:.0f}s); the aliases were not changed")
    client.set_registered_model_tag(name, MOVING_TAG, json.dumps(
        {"champion": before[0], "previous": before[1], "to": list(to), "candidate": candidate,
         "holder": lock.holder}))
    cut_off = RegistryError(
        f"the MLflow server at {tracking_uri} stopped answering while {cfg.champion_alias} and "
        f"{cfg.previous_alias} were being moved; the next `stark promote` or `stark rollback` puts them back to "
        f"{before[0] or 'none'} and {before[1] or 'none'}")
    try:
        _set_alias(client, name, cfg.champion_alias, to[0])
        _set_alias(client, name, cfg.previous_alias, to[1])
    except Exception as exc:
        try:
            _set_alias(client, name, cfg.champion_alias, before[0])
            _set_alias(client, name, cfg.previous_alias, before[1])
            client.delete_registered_model_tag(name, MOVING_TAG)
        except Exception:  # noqa: BLE001 - the journal stays; the next promote or rollback undoes the move
            raise cut_off from exc
        raise
    try:
        client.delete_registered_model_tag(name, MOVING_TAG)
    except Exception as exc:  # both moved, but the journal stays: the next promote or rollback undoes the move
        raise cut_off from exc


def undo_interrupted_move(client, name: str, cfg: RegistryConfig, log=print) -> None:
    """If an alias move was cut off (its journal tag is still there), put both aliases back to where they
    were before it, and mark its candidate. Runs under the promotion lock."""
    from mlflow.exceptions import MlflowException

    try:
        journal = client.get_registered_model(name).tags.get(MOVING_TAG)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
            return  # no model yet, so no alias either
        raise
    if not journal:
        return
    before = json.loads(journal)
    _set_alias(client, name, cfg.champion_alias, before["champion"])
    _set_alias(client, name, cfg.previous_alias, before["previous"])
    if before.get("candidate"):
        client.set_model_version_tag(name, before["candidate"], "stark.promotion.decision", "promotion-interrupted")
    client.delete_registered_model_tag(name, MOVING_TAG)
    log(f"  an alias move by {before.get('holder', '?')} was cut off: {cfg.champion_alias} back to "
        f"{before['champion'] or 'none'}, {cfg.previous_alias} back to {before['previous'] or 'none'}")


def rollback(tracking_uri: str, cfg: RegistryConfig, log=print) -> tuple[str, str]:
    """champion <- previous-champion; previous-champion <- the demoted version. Returns (from, to)."""
    client = mlflow_client(tracking_uri)
    name = cfg.model_name
    try:
        with PromotionLock(client, name, cfg.lock_lease_s, cfg.lock_wait_s, log=log) as lock:
            undo_interrupted_move(client, name, cfg, log)
            current = alias_version(client, name, cfg.champion_alias)
            previous = alias_version(client, name, cfg.previous_alias)
            if previous is None:
                raise RegistryError(f"{name} has no {cfg.previous_alias} to roll back to")
            move_aliases(client, tracking_uri, name, cfg, lock, (previous, current), before=(current, previous))
            if current is not None:
                client.set_model_version_tag(name, current, "stark.rolled_back", "true")
            log(f"{cfg.champion_alias}: {name}/{current} -> {name}/{previous}")
            return current, previous
    except RegistryError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise explain_mlflow_error(exc, tracking_uri) from exc


def record_decision(client, tracking_uri: str, name: str, candidate: str, decision: Decision, hash_: str,
                    cand_scores: dict[str, float], champ_scores: dict[str, float] | None,
                    static_scores: dict[str, float] | None = None) -> str:
    """Tags on the candidate version, and a run with the comparison table (candidate, champion and the
    static box per sequence) and plot."""
    tags = {"stark.promotion.decision": "promoted" if decision.promote else "rejected",
            "stark.promotion.reason": decision.reason, "stark.promotion.metric": decision.metric,
            "stark.promotion.candidate_mean": f"{decision.candidate_mean:.6f}",
            "stark.promotion.compared_to": decision.compared_to or "none",
            "stark.promotion.data_hash": hash_,
            "stark.promotion.tune_overlap": decision.tune_overlap}
    if decision.mean_diff is not None:
        tags.update({"stark.promotion.champion_mean": f"{decision.champion_mean:.6f}",
                     "stark.promotion.margin": f"{decision.mean_diff:.6f}",
                     "stark.promotion.p_value": f"{decision.p_value:.6f}",
                     "stark.promotion.interval": f"[{decision.ci_low:.6f}, {decision.ci_high:.6f}]"})
    if decision.static_diff is not None:
        tags.update({"stark.promotion.baseline": "static-box",
                     "stark.promotion.static_mean": f"{decision.static_mean:.6f}",
                     "stark.promotion.static_margin": f"{decision.static_diff:.6f}",
                     "stark.promotion.static_p_value": f"{decision.static_p_value:.6f}",
                     "stark.promotion.static_interval": f"[{decision.static_ci_low:.6f}, {decision.static_ci_high:.6f}]"})
    run = client.create_run(experiment_id(client, EXPERIMENTS["promote"], tracking_uri),
                            run_name=f"promote-{name}-{candidate}",
                            tags={**tags, "stark.candidate": f"{name}/{candidate}"})
    run_id = run.info.run_id
    metrics = {"candidate_mean": decision.candidate_mean}
    if decision.mean_diff is not None:
        metrics.update(champion_mean=decision.champion_mean, mean_diff=decision.mean_diff, p_value=decision.p_value)
    if decision.static_diff is not None:
        metrics.update(static_mean=decision.static_mean, static_diff=decision.static_diff,
                       static_p_value=decision.static_p_value)
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))
    client.log_text(run_id, comparison_table(cand_scores, champ_scores, static_scores), "comparison.csv")
    client.log_dict(run_id, asdict(decision), "decision.json")
    client.log_figure(run_id, comparison_figure(cand_scores, champ_scores, decision, static_scores),
                      "comparison.png")
    client.set_terminated(run_id)
    for key, value in tags.items():
        client.set_model_version_tag(name, candidate, key, value)
    return run_id


def comparison_table(cand: dict[str, float], champ: dict[str, float] | None,
                     static: dict[str, float] | None = None) -> str:
    """CSV: one row per sequence, then a 'mean' row; `difference` is candidate - champion and
    `difference_to_static` candidate - static box (empty where there is nothing to compare)."""
    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.6f}"

    rows = ["sequence,candidate,champion,static_box,difference,difference_to_static"]
    names = sorted(cand)
    for seq in names + ["mean"]:
        if seq == "mean":
            c = float(np.mean([cand[n] for n in names]))
            h = float(np.mean([champ[n] for n in names])) if champ else None
            s = float(np.mean([static[n] for n in names])) if static else None
        else:
            c, h, s = cand[seq], champ.get(seq) if champ else None, static.get(seq) if static else None
        rows.append(f"{seq},{cell(c)},{cell(h)},{cell(s)},{cell(None if h is None else c - h)},"
                    f"{cell(None if s is None else c - s)}")
    return "\n".join(rows) + "\n"


def comparison_figure(cand: dict[str, float], champ: dict[str, float] | None, decision: Decision,
                      static: dict[str, float] | None = None):
    """Per-sequence bars: the static box, the champion (if any) and the candidate, means in the legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = sorted(cand)
    series = [(label, scores, color) for label, scores, color in
              (("static box", static, "tab:orange"), ("champion", champ, "tab:gray"), ("candidate", cand, "tab:blue"))
              if scores is not None]
    fig = Figure(figsize=(max(6.0, 0.5 * len(names) * len(series) / 2 + 2), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    width = 0.8 / len(series)
    for k, (label, scores, color) in enumerate(series):
        values = [scores[n] for n in names]
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width=width, color=color,
               label=f"{label} (mean {np.mean(values):.3f})")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set(ylabel=decision.metric, title=decision.reason[:90])
    ax.title.set_fontsize(8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
