"""Gated promotion: move the champion alias only when a candidate beats it on the same sequences.

A win needs both: the mean per-sequence metric is higher by at least `margin`, and a paired bootstrap
over sequences puts P(mean difference > 0) at `confidence` or more (p-value = 1 - that). A first
model (no champion) needs `min_first_metric`. Evaluations are stored as MLflow runs tagged with the
model version and the data hash, and reused when the same version meets the same data again.
Promotions are serialised by the registry lock, and the alias is read back after it is set.
"""
from __future__ import annotations

import hashlib
import json
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stark.platform.evaluation import EvalConfig, EvalSequence, pack_model, track_sequences
from stark.platform.registry import (PromotionLock, RegistryConfig, RegistryError, alias_version, client_for,
                                     explain_mlflow_error)

EVAL_EXPERIMENT = "stark-evaluations"
PROMOTE_EXPERIMENT = "stark-promote"


@dataclass
class Decision:
    promote: bool
    reason: str
    metric: str
    candidate_mean: float
    champion_mean: float | None
    mean_diff: float | None
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    compared_to: str | None  # champion version, or None for a first model


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


def decide(candidate: dict[str, float], champion: dict[str, float] | None, cfg: RegistryConfig, metric: str,
           compared_to: str | None) -> Decision:
    """The promotion rule on per-sequence scores {sequence: metric}."""
    cand_mean = float(np.mean(list(candidate.values())))
    if champion is None:
        ok = cand_mean >= cfg.min_first_metric
        reason = (f"first model: mean {metric} {cand_mean:.4f} "
                  f"{'reaches' if ok else 'is below'} the minimum {cfg.min_first_metric:.4f}")
        return Decision(ok, reason, metric, cand_mean, None, None, None, None, None, None)
    names = sorted(set(candidate) & set(champion))
    if len(names) != len(candidate) or len(names) != len(champion):
        raise ValueError("candidate and champion were not evaluated on the same sequences")
    diffs = np.array([candidate[n] - champion[n] for n in names])
    champ_mean = float(np.mean([champion[n] for n in names]))
    mean_diff = float(diffs.mean())
    p_value, lo, hi = paired_bootstrap(diffs, cfg.bootstrap_samples, cfg.seed)
    big_enough = mean_diff >= cfg.margin
    significant = p_value <= 1.0 - cfg.confidence
    promote = big_enough and significant
    if promote:
        reason = (f"wins: mean {metric} +{mean_diff:.4f} >= margin {cfg.margin:.4f}, "
                  f"p={p_value:.4f} <= {1 - cfg.confidence:.4f}")
    elif not big_enough:
        reason = f"no promotion: mean {metric} difference {mean_diff:+.4f} is below the margin {cfg.margin:.4f}"
    else:
        reason = (f"no promotion: the win of {mean_diff:+.4f} is not significant "
                  f"(p={p_value:.4f} > {1 - cfg.confidence:.4f})")
    return Decision(promote, reason, metric, cand_mean, champ_mean, mean_diff, p_value, lo, hi, compared_to)


def per_sequence_scores(metric: str, benchmark: str, results, sequences: list[EvalSequence]) -> dict[str, float]:
    from stark.platform import metrics as M
    from stark.platform.eval_report import PROTOCOLS

    protocol = PROTOCOLS["got10k"] if metric == "ao" else PROTOCOLS.get(benchmark, PROTOCOLS["lasot"])
    if metric == "auc" and protocol["protocol"] != "ope":
        protocol = PROTOCOLS["lasot"]
    scores = {}
    for seq in sequences:
        m = M.sequence_metrics(results[seq.name].boxes, seq.boxes_xywh, seq.visible, **protocol)
        value = m.scores()[metric]
        scores[seq.name] = 0.0 if math.isnan(value) else float(value)
    return scores


def evaluate_version(client, tracking_uri: str, name: str, version: str, sequences: list[EvalSequence],
                     hash_: str, metric: str, benchmark: str, tracker_defaults, eval_cfg: EvalConfig,
                     storage_cfg=None, log=print) -> dict[str, float]:
    """Per-sequence scores of a model version on a data set, reusing a stored evaluation if any."""
    from mlflow.entities import ViewType

    experiment = client.get_experiment_by_name(EVAL_EXPERIMENT)
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

    from stark.platform.tracker import resolve_tracker_settings
    from stark.platform.model_loading import load_model

    log(f"  {name}/{version}: evaluating on {len(sequences)} sequence(s)")
    loaded = load_model(f"models:/{name}/{version}")
    settings = resolve_tracker_settings(tracker_defaults, loaded.tracker, [])
    results = track_sequences(pack_model(loaded.model, loaded.model_cfg), settings, sequences, eval_cfg, storage_cfg)
    scores = per_sequence_scores(metric, benchmark, results, sequences)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EVAL_EXPERIMENT)
    run = client.create_run(experiment_id, run_name=f"eval-{name}-{version}",
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
            cfg: RegistryConfig, tracker_defaults, eval_cfg: EvalConfig, storage_cfg=None, log=print
            ) -> PromotionOutcome:
    """Evaluate candidate and champion on the same sequences, decide, and move the alias on a win.
    Everything happens under the promotion lock; the champion is re-read inside it."""
    from stark.platform.registry import resolve_version
    from stark.platform.tuning import resolve_metric

    client = client_for(tracking_uri)
    name = cfg.model_name
    metric = resolve_metric(cfg.metric, benchmark)
    hash_ = data_hash(sequences)
    try:
        candidate = resolve_version(client, candidate_uri)
        with PromotionLock(client, name, cfg.lock_timeout_s, cfg.lock_wait_s):
            champion = alias_version(client, name, cfg.champion_alias)
            log(f"candidate {name}/{candidate}, champion {f'{name}/{champion}' if champion else 'none'}, "
                f"{len(sequences)} sequence(s), data hash {hash_}, metric {metric}")
            if champion == candidate:
                raise RegistryError(f"{name}/{candidate} already is the {cfg.champion_alias}")
            cand_scores = evaluate_version(client, tracking_uri, name, candidate, sequences, hash_, metric, benchmark,
                                           tracker_defaults, eval_cfg, storage_cfg, log)
            champ_scores = None
            if champion is not None:
                champ_scores = evaluate_version(client, tracking_uri, name, champion, sequences, hash_, metric,
                                                benchmark, tracker_defaults, eval_cfg, storage_cfg, log)
            decision = decide(cand_scores, champ_scores, cfg, metric, champion)
            run_id = record_decision(client, name, candidate, decision, hash_, cand_scores, champ_scores)
            after = champion
            if decision.promote:
                try:
                    move_champion(client, name, candidate, champion, cfg)
                except Exception:
                    client.set_model_version_tag(name, candidate, "stark.promotion.decision", "promotion-failed")
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


def move_champion(client, name: str, new: str, old: str | None, cfg: RegistryConfig) -> None:
    """champion -> new first (the alias that matters), then previous-champion -> old. If the second
    write fails, champion is put back so the pair never disagrees."""
    client.set_registered_model_alias(name, cfg.champion_alias, new)
    if old is None:
        return
    try:
        client.set_registered_model_alias(name, cfg.previous_alias, old)
    except Exception:
        client.set_registered_model_alias(name, cfg.champion_alias, old)
        raise


def rollback(tracking_uri: str, cfg: RegistryConfig, log=print) -> tuple[str, str]:
    """champion <- previous-champion; previous-champion <- the demoted version. Returns (from, to)."""
    client = client_for(tracking_uri)
    name = cfg.model_name
    try:
        with PromotionLock(client, name, cfg.lock_timeout_s, cfg.lock_wait_s):
            current = alias_version(client, name, cfg.champion_alias)
            previous = alias_version(client, name, cfg.previous_alias)
            if previous is None:
                raise RegistryError(f"{name} has no {cfg.previous_alias} to roll back to")
            client.set_registered_model_alias(name, cfg.champion_alias, previous)
            if current is not None:
                client.set_registered_model_alias(name, cfg.previous_alias, current)
                client.set_model_version_tag(name, current, "stark.rolled_back", "true")
            log(f"{cfg.champion_alias}: {name}/{current} -> {name}/{previous}")
            return current, previous
    except RegistryError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise explain_mlflow_error(exc, tracking_uri) from exc


def record_decision(client, name: str, candidate: str, decision: Decision, hash_: str,
                    cand_scores: dict[str, float], champ_scores: dict[str, float] | None) -> str:
    """Tags on the candidate version, and a run with the comparison table and plot."""
    tags = {"stark.promotion.decision": "promoted" if decision.promote else "rejected",
            "stark.promotion.reason": decision.reason, "stark.promotion.metric": decision.metric,
            "stark.promotion.candidate_mean": f"{decision.candidate_mean:.6f}",
            "stark.promotion.compared_to": decision.compared_to or "none",
            "stark.promotion.data_hash": hash_}
    if decision.mean_diff is not None:
        tags.update({"stark.promotion.margin": f"{decision.mean_diff:.6f}",
                     "stark.promotion.p_value": f"{decision.p_value:.6f}",
                     "stark.promotion.interval": f"[{decision.ci_low:.6f}, {decision.ci_high:.6f}]"})
    experiment = client.get_experiment_by_name(PROMOTE_EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(PROMOTE_EXPERIMENT)
    run = client.create_run(experiment_id, run_name=f"promote-{name}-{candidate}",
                            tags={**tags, "stark.candidate": f"{name}/{candidate}"})
    run_id = run.info.run_id
    metrics = {"candidate_mean": decision.candidate_mean}
    if decision.mean_diff is not None:
        metrics.update(champion_mean=decision.champion_mean, mean_diff=decision.mean_diff, p_value=decision.p_value)
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))
    rows = ["sequence,candidate,champion,difference"]
    for seq in sorted(cand_scores):
        champ = champ_scores.get(seq) if champ_scores else None
        rows.append(f"{seq},{cand_scores[seq]:.6f},{'' if champ is None else f'{champ:.6f}'},"
                    f"{'' if champ is None else f'{cand_scores[seq] - champ:.6f}'}")
    client.log_text(run_id, "\n".join(rows) + "\n", "comparison.csv")
    client.log_dict(run_id, asdict(decision), "decision.json")
    client.log_figure(run_id, comparison_figure(cand_scores, champ_scores, decision), "comparison.png")
    client.set_terminated(run_id)
    for key, value in tags.items():
        client.set_model_version_tag(name, candidate, key, value)
    return run_id


def comparison_figure(cand: dict[str, float], champ: dict[str, float] | None, decision: Decision):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = sorted(cand)
    fig = Figure(figsize=(max(6.0, 0.4 * len(names) + 2), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    if champ is None:
        ax.bar(x, [cand[n] for n in names], color="tab:blue", label="candidate")
    else:
        ax.bar(x - 0.2, [champ[n] for n in names], width=0.4, color="tab:gray", label="champion")
        ax.bar(x + 0.2, [cand[n] for n in names], width=0.4, color="tab:blue", label="candidate")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set(ylabel=decision.metric, title=decision.reason[:90])
    ax.legend()
    fig.tight_layout()
    return fig
