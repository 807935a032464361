"""`stark rollback`: move `champion` back to `previous-champion`."""
from __future__ import annotations

import os
import sys

from stark.jobs.args import config_from_args, job_parser


def main(argv: list[str] | None = None, prog: str = "stark rollback") -> int:
    parser = job_parser(prog, "Move the champion alias back to the previous champion.", default_config="stark_st50")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    from stark.platform.promotion import rollback
    from stark.platform.registry import RegistryError
    from stark.platform.tracking import resolve_tracking_uri

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    try:
        rollback(resolve_tracking_uri(cfg.mlflow), cfg.registry)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
