"""`stark promote --candidate models:/stark/N --data DATA`: move `champion` only on a real win over both the
static box (the first frame's box on every frame) and the current champion."""
from __future__ import annotations

import sys

from stark.jobs.args import config_from_args, job_parser, registry_tracking_uri, run_registry_call
from stark.jobs.boundary import job_boundary


@job_boundary
def main(argv: list[str] | None = None, prog: str = "stark promote") -> int:
    parser = job_parser(prog, "Evaluate a candidate version, the champion and the static box (the first frame's "
                              "box on every frame) on the same sequences; move the champion alias only when the "
                              "candidate beats both.", default_config="stark_st50")
    parser.add_argument("--candidate", required=True, help="models:/NAME/VERSION (or models:/NAME@ALIAS)")
    parser.add_argument("--data", required=True, help="benchmark data: manifest or benchmark tree")
    parser.add_argument("--split", default=None, help="only this split (e.g. val)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    from stark.platform.evaluate.runner import load_sequences
    from stark.platform.registry.promotion import promote

    tracking_uri = registry_tracking_uri(cfg)

    def compare_and_maybe_promote():
        sequences = [s for s in load_sequences(args.data, cfg.storage, args.split) if s.has_groundtruth]
        if not sequences:
            raise ValueError(f"{args.data}: no sequence with ground truth to compare on")
        benchmark = cfg.evaluate.benchmark or sequences[0].dataset
        return promote(tracking_uri, args.candidate, sequences, benchmark, cfg.registry, cfg.tracker_choice,
                       cfg.evaluate, cfg.storage)

    outcome = run_registry_call(compare_and_maybe_promote, tracking_uri)
    d = outcome.decision
    name = cfg.registry.model_name
    print(f"\n{'PROMOTED' if d.promote else 'NOT PROMOTED'}: {d.reason}")
    if d.static_diff is not None:
        print(f"  {d.metric}: candidate {d.candidate_mean:.4f} vs static box {d.static_mean:.4f} "
              f"(difference {d.static_diff:+.4f}, 95% interval [{d.static_ci_low:+.4f}, {d.static_ci_high:+.4f}], "
              f"p={d.static_p_value:.4f})")
    if d.mean_diff is not None:
        print(f"  {d.metric}: candidate {d.candidate_mean:.4f} vs champion {d.champion_mean:.4f} "
              f"(difference {d.mean_diff:+.4f}, 95% interval [{d.ci_low:+.4f}, {d.ci_high:+.4f}], p={d.p_value:.4f})")
    print(f"  {cfg.registry.champion_alias}: "
          f"{f'{name}/{outcome.champion_before}' if outcome.champion_before else 'none'} -> "
          f"{f'{name}/{outcome.champion_after}' if outcome.champion_after else 'none'}")
    print(f"  tuned on these sequences: {d.tune_overlap}")
    print(f"  decision recorded on {name}/{outcome.candidate} and in run {outcome.run_id} at {tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
