"""`stark model-summary --config PRESET`: parameters per part and FLOPs per tracked frame."""
from __future__ import annotations

import sys

from stark.jobs.args import config_from_args, job_parser
from stark.jobs.boundary import job_boundary


@job_boundary
def main(argv: list[str] | None = None, prog: str = "stark model-summary") -> int:
    parser = job_parser(prog, __doc__.split(":", 1)[1].strip(), default_config="stark_st50")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    from stark.model.stark import build_stark
    from stark.model.summary import count_flops, parameter_counts

    model = build_stark(cfg.model)
    counts = parameter_counts(model)
    flops = count_flops(model, cfg.model)
    m = cfg.model
    print(f"{cfg.name}: STARK-{m.variant}, {m.backbone.name}, d={m.transformer.d_model}, "
          f"{m.transformer.enc_layers}+{m.transformer.dec_layers} layers, "
          f"template {m.template_size}px x{m.num_templates}, search {m.search_size}px")
    print(f"{'part':<22}{'parameters':>14}{'trainable':>14}")
    for part, row in counts.items():
        if part == "all":
            print("-" * 50)
        print(f"{part:<22}{row['total']:>14,}{row['trainable']:>14,}")
    print(f"FLOPs per tracked frame: {flops.per_frame / 1e9:.2f} G ({flops.per_frame / 2e9:.2f} GMACs), "
          f"templates cached; each template embedding: {flops.per_template / 1e9:.2f} G")
    return 0


if __name__ == "__main__":
    sys.exit(main())
