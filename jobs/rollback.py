"""`stark rollback`: move `champion` back to `previous-champion`."""
from __future__ import annotations

import sys

from stark.jobs.args import config_from_args, job_parser, registry_tracking_uri, run_registry_call
from stark.jobs.boundary import job_boundary


@job_boundary
def main(argv: list[str] | None = None, prog: str = "stark rollback") -> int:
    parser = job_parser(prog, "Move the champion alias back to the previous champion.", default_config="stark_st50")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    from stark.platform.registry.promotion import rollback

    tracking_uri = registry_tracking_uri(cfg)
    run_registry_call(lambda: rollback(tracking_uri, cfg.registry), tracking_uri)
    return 0

if __name__ == "__main__":
    sys.exit(main())
