"""`stark ingest SRC DEST`: import a benchmark tree or videos + box files into H.264 clips and a Parquet manifest."""
from __future__ import annotations

import sys

from stark.jobs.args import config_from_args, job_parser
from stark.jobs.boundary import EXIT_BAD_INPUT, job_boundary


@job_boundary
def main(argv: list[str] | None = None, prog: str = "stark ingest") -> int:
    parser = job_parser(prog, __doc__.split(":", 1)[1].strip(), default_config=None)
    parser.add_argument("src", help="source folder (benchmark layout, or videos with a .csv box file each)")
    parser.add_argument("dest", help="destination: a local folder or s3://bucket/prefix")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip bad sequences (listed in the report) instead of stopping at the first")
    parser.add_argument("--layout", choices=("auto", "got10k", "lasot", "trackingnet", "footage"),
                        help="source layout (default: ingest.layout, auto-detected)")
    args = parser.parse_args(argv)  # key.sub=value overrides anywhere; SRC and DEST bind by position
    cfg = config_from_args(args)
    if args.skip_invalid:
        cfg.ingest.skip_invalid = True
    if args.layout:
        cfg.ingest.layout = args.layout

    from stark.platform.ingest.run import ingest
    from stark.platform.ingest.sources import InvalidInputError

    try:
        report = ingest(args.src, args.dest, cfg.ingest, cfg.storage)
    except InvalidInputError as exc:
        print(f"error: {exc}; nothing was imported", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
