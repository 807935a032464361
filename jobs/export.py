"""`stark export --model M --out DIR`: the tracker's network as two ONNX graphs (template, track) + a JSON."""
from __future__ import annotations

import sys
import time

from stark.jobs.args import config_from_args, job_parser, job_tracking_uri
from stark.jobs.boundary import job_boundary


@job_boundary
def main(argv: list[str] | None = None, prog: str = "stark export") -> int:
    parser = job_parser(prog, "Export a model to ONNX: a `template` graph (crop -> template tokens) and a "
                              "`track` graph (template tokens + search crop -> box, score), dynamic batch, "
                              "with a JSON of the model config, tracker settings, input normalisation and "
                              "sha256 of each graph.", default_config="stark_st50")
    parser.add_argument("--model", required=True,
                        help="platform checkpoint (local or s3://), official STARK file or MLflow URI")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17)")
    parser.add_argument("--fp16", action="store_true",
                        help="float16 weights and activations inside the graphs (inputs and outputs stay float32)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    tracking_uri = job_tracking_uri(cfg)
    from stark.model.onnx_graphs import DEFAULT_OPSET
    from stark.platform.model_loading import load_model
    from stark.platform.track.export import MANIFEST_FILE, export_tracker, graph_differences
    from stark.platform.track.onnx_tracker import OnnxTracker

    opset = args.opset or DEFAULT_OPSET
    if opset < 14:
        print(f"error: --opset {opset}: the graphs need opset 14 or later (scaled dot-product attention)",
              file=sys.stderr)
        return 2
    try:
        loaded = load_model(args.model, cfg.model, cfg.storage, tracking_uri)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = cfg.tracker_choice.for_model(loaded.tracker)
    precision = "fp16" if args.fp16 else "fp32"
    print(f"exporting {loaded.kind} model {args.model} (STARK-{loaded.model_cfg.variant}, "
          f"{loaded.model_cfg.backbone.name}) to ONNX opset {opset}, {precision}, into {args.out}", flush=True)
    start = time.perf_counter()
    exported = export_tracker(loaded.model, loaded.model_cfg, settings, args.out, opset=opset, fp16=args.fp16,
                              source=args.model)
    wall = time.perf_counter() - start
    diff = graph_differences(loaded.model, OnnxTracker(exported, settings))
    print(f"\ndone in {wall:.1f}s; ONNX Runtime vs PyTorch on seeded crops (batch 3): boxes differ by at most "
          f"{diff['boxes']:.2e} of the search crop" + ("" if diff["score"] != diff["score"] else
                                                      f", scores by {diff['score']:.2e}"))
    for name in ("template", "track"):
        graph = exported.manifest["graphs"][name]
        print(f"  {name:<9} {exported.graph_path(name)}  {graph['bytes'] / 1e6:.1f} MB  sha256 {graph['sha256'][:16]}")
    print(f"  manifest  {exported.folder / MANIFEST_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
