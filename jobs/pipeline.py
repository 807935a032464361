"""`stark pipeline`: the main job. Data -> ingest -> train (both stages) -> tune -> register -> promote
-> track, each step skipped when its output already exists, then a summary against the static-box
baseline. Every step runs through its job's `main` with the argv the pipeline prints: the same job a user
can run alone, on the effective config the pipeline wrote. Its folder and its MLflow store are in the
platform's home (platform/home.py), so the same command finds the same run from any folder, and a run
with every step done is a no-op that prints the stored summary again (Ray is only started for a step
that has work to do)."""
from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

from stark.jobs.args import config_from_args, job_parser
from stark.jobs.boundary import job_boundary


class Pipeline:
    def __init__(self, cfg, config_path: Path, user_manifests: bool, verbose: bool = False):
        from stark.platform.mlflow_runs import resolve_tracking_uri

        self.cfg, self.p = cfg, cfg.pipeline
        self.work = Path(self.p.workdir).resolve()
        self.config_path = config_path
        self.user_manifests = user_manifests  # data.manifests came from the user (not the demo's clips)
        self.verbose = verbose  # passed on to every step's job
        self.tracking_uri = resolve_tracking_uri(cfg.mlflow, cfg.home)
        self.started = time.monotonic()
        self.steps_total = len(self.p.steps)
        self.step_no = 0
        self.outputs: dict[str, str] = {}
        self.demo_video = None  # the generated SyntheticSequence `track` ran on (its boxes are known)

    # --- paths --------------------------------------------------------------------------------------
    @property
    def demo_dir(self) -> Path:
        return self.work / "demo"

    @property
    def clips(self) -> str:
        return str(self.work / "clips")

    @property
    def holdout_dir(self) -> Path:
        return self.work / "demo-holdout"

    @property
    def holdout_clips(self) -> str:
        return str(self.work / "clips-holdout")

    @property
    def demo_data(self) -> bool:
        return not (self.p.source or self.user_manifests)

    @property
    def val_data(self) -> str:
        return self.p.val_data or self.clips

    @property
    def promote_data(self) -> tuple[str, str | None]:
        """(data, split) that promotion and the summary measure on: never the tuning sequences when the
        pipeline generates its own data."""
        if self.p.promote_data:
            return self.p.promote_data, self.p.promote_split
        if self.demo_data and not self.p.val_data:
            return self.holdout_clips, "val"
        return self.val_data, self.p.val_split

    def final_checkpoint(self, stage: int) -> str:
        from stark.platform.train.run_layout import RunPaths

        return RunPaths.for_config(self.cfg.train.storage_path, self.cfg.name).final(stage)

    # --- output -------------------------------------------------------------------------------------
    def begin(self, step: str, what: str) -> None:
        self.step_no += 1
        elapsed = time.monotonic() - self.started
        print(f"\n=== [{self.step_no}/{self.steps_total}] {step}: {what}  (t+{elapsed / 60:.1f} min)", flush=True)

    def command(self, subcommand: str, *args: str) -> list[str]:
        """The job's argv (printed as the `stark ...` line a user could run alone)."""
        argv = [*args, "--config", str(self.config_path)]
        print(f"    $ stark {subcommand} " + " ".join(shlex.quote(a) for a in argv), flush=True)
        return argv + (["--verbose"] if self.verbose else [])

    def run(self, main, argv: list[str], what: str) -> None:
        from stark.platform.ray_runtime import init_ray, training_cpu_slots

        # one Ray for every step that has work, with room for the training stream; none on a no-op re-run
        init_ray(min_cpus=training_cpu_slots(self.cfg))
        code = main(argv)
        if code != 0:
            raise RuntimeError(f"{what} failed (exit {code}); fix it and re-run: finished steps are kept")

    # --- steps --------------------------------------------------------------------------------------
    def step_data(self) -> None:
        from stark.platform.ingest.synthetic import iter_sequences, write_got10k

        if not self.demo_data:
            self.begin("data", f"using {self.p.source or self.cfg.data.manifests}")
            return
        marker = self.demo_dir / ".complete"
        self.begin("data", f"demo dataset in {self.demo_dir}, holdout in {self.holdout_dir}")
        if marker.exists():
            print("    already generated: skipped")
            return
        size, frames, seed = tuple(self.p.demo_size), self.p.demo_frames, self.p.seed
        train = [f"GOT-10k_Train_{i:06d}" for i in range(1, self.p.demo_train_sequences + 1)]
        val = [f"GOT-10k_Val_{i:06d}" for i in range(1, self.p.demo_val_sequences + 1)]
        holdout = [f"GOT-10k_Val_{i:06d}" for i in range(1001, 1001 + self.p.demo_promote_sequences)]
        # each split from its own photographs (synthetic.PHOTO_SPLITS): tuning and promotion measure
        # generalisation to scenes training never saw, and promotion uses sequences tuning never saw
        write_got10k(str(self.demo_dir), {
            "train": iter_sequences(train, frames, size, seed=seed, photos="train"),
            "val": iter_sequences(val, frames, size, seed=seed + 1, photos="val")})
        write_got10k(str(self.holdout_dir), {"val": iter_sequences(holdout, frames, size, seed=seed + 3,
                                                                   photos="test")})
        marker.write_text("complete\n")  # last: a half-written demo is regenerated
        print(f"    {len(train)} train + {len(val)} val (tuning) + {len(holdout)} holdout (promotion) sequences "
              f"of {frames} frames at {size[0]}x{size[1]}, each split from its own scikit-image photographs")

    def step_ingest(self) -> None:
        from stark.jobs.ingest import main as ingest_main
        from stark.platform import storage
        from stark.platform.ingest.manifest import manifest_uri

        if self.user_manifests and not self.p.source:
            self.begin("ingest", "data.manifests given: nothing to ingest")
            return
        source = self.p.source or str(self.demo_dir)
        jobs = [(source, self.clips)] + ([(str(self.holdout_dir), self.holdout_clips)] if self.demo_data else [])
        self.begin("ingest", ", ".join(f"{src} -> {dest}" for src, dest in jobs))
        for src, dest in jobs:
            if storage.exists(manifest_uri(dest)):
                print(f"    {dest}: manifest exists, skipped")
                continue
            self.run(ingest_main, self.command("ingest", src, dest), "ingest")

    def step_train(self) -> None:
        from stark.jobs.train import main as train_main

        from stark.platform import storage

        self.begin("train", f"stages {self.cfg.train.stages} on Ray Train")
        finals = [self.final_checkpoint(stage) for stage in self.cfg.train.stages]
        if all(storage.exists(final, self.cfg.storage) for final in finals):
            print(f"    every stage has its final checkpoint ({finals[-1]}): skipped")
            return
        self.run(train_main, self.command("train"), "train")  # resumes; finished stages are skipped

    def step_tune(self) -> None:
        from stark.jobs.tune import main as tune_main

        out = self.work / "tune"
        self.begin("tune", f"update_interval x score_threshold on {self.val_data} ({self.p.val_split})")
        if (out / "model_tuned.pt").exists():
            print("    tuned model exists: skipped")
            return
        args = ["tune", "--model", self.final_checkpoint(max(self.cfg.train.stages)), "--data", self.val_data,
                "--out", str(out)]
        if self.p.val_split:
            args += ["--split", self.p.val_split]
        self.run(tune_main, self.command(*args), "tune")

    def tuned_model(self) -> str:
        return str(self.work / "tune" / "model_tuned.pt")

    def registered_version(self, checkpoint: str) -> str | None:
        """The version registered from this checkpoint file (by its content hash), if any."""
        from stark.platform.mlflow_runs import mlflow_client

        digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
        client = mlflow_client(self.tracking_uri)
        name = self.cfg.registry.model_name
        if not client.search_registered_models(f"name = '{name}'"):
            return None
        found = [v for v in client.search_model_versions(f"name = '{name}'")
                 if v.tags.get("stark.checkpoint_sha256") == digest]
        return str(found[0].version) if found else None

    def step_register(self) -> None:
        from stark.jobs.register import main as register_main

        checkpoint = self.tuned_model()
        name = self.cfg.registry.model_name
        self.begin("register", f"{checkpoint} as '{name}'")
        existing = self.registered_version(checkpoint)
        if existing:
            self.version = existing
            print(f"    already registered as models:/{name}/{self.version}: skipped")
            return
        args = ["register", "--checkpoint", checkpoint, "--eval-data", self.val_data,
                "--description", "registered by stark pipeline"]
        if self.p.val_split:
            args += ["--split", self.p.val_split]
        self.run(register_main, self.command(*args), "register")
        self.version = self.registered_version(checkpoint)

    def step_promote(self) -> None:
        from stark.jobs.promote import main as promote_main
        from stark.platform.mlflow_runs import mlflow_client

        name = self.cfg.registry.model_name
        version = getattr(self, "version", None) or self._latest_version()
        self.begin("promote", f"models:/{name}/{version} against the current champion")
        tags = mlflow_client(self.tracking_uri).get_model_version(name, version).tags
        if "stark.promotion.decision" in tags:
            print(f"    already decided ({tags['stark.promotion.decision']}): skipped")
            return
        data, split = self.promote_data
        args = ["promote", "--candidate", f"models:/{name}/{version}", "--data", data]
        if split:
            args += ["--split", split]
        self.run(promote_main, self.command(*args), "promote")

    def _latest_version(self) -> str:
        from stark.platform.mlflow_runs import mlflow_client

        versions = mlflow_client(self.tracking_uri).search_model_versions(f"name = '{self.cfg.registry.model_name}'")
        if not versions:
            raise RuntimeError("no registered version to promote: run the register step")
        return str(max(int(v.version) for v in versions))

    def served_model(self) -> str | None:
        """The model the pipeline has produced so far: the champion, else the tuned checkpoint, else the
        last trained stage's checkpoint; None before training."""
        from stark.platform import storage
        from stark.platform.mlflow_runs import mlflow_client
        from stark.platform.registry.versions import alias_version

        name = self.cfg.registry.model_name
        if "register" in self.p.steps or "promote" in self.p.steps:
            champion = alias_version(mlflow_client(self.tracking_uri), name, self.cfg.registry.champion_alias)
            if champion:
                return f"models:/{name}@{self.cfg.registry.champion_alias}"
        if Path(self.tuned_model()).exists():
            return self.tuned_model()
        final = self.final_checkpoint(max(self.cfg.train.stages))
        return final if storage.exists(final, self.cfg.storage) else None

    def step_track(self) -> None:
        from stark.jobs.track import main as track_main
        from stark.platform.ingest.synthetic import encode_video_file

        out = self.work / "track"
        video, box = self.p.video, self.p.video_box
        if video is None:
            video = str(self.work / "demo_video.mp4")
        model = self.served_model() or self.tuned_model()
        self.begin("track", f"{video} with {model}")
        if (out / "tracked.mp4").exists():
            print("    annotated video exists: skipped")
        else:
            if self.p.video is None:
                seq = self.demo_sequence()
                box = [float(v) for v in seq.boxes_xywh[0]]
                if not Path(video).exists():
                    encode_video_file(video, seq.frames, 25.0)
            self.run(track_main, self.command("track", video, "--box", ",".join(f"{v:g}" for v in box),
                                              "--model", model, "--out", str(out)), "track")
        self.outputs["annotated video"] = str(out / "tracked.mp4")
        self.outputs["boxes"] = str(out / "boxes.csv")

    def demo_sequence(self):
        """The generated demo video `track` runs on (a SyntheticSequence: its boxes are known); made once."""
        from stark.platform.ingest.synthetic import make_sequences

        if self.demo_video is None:
            self.demo_video = make_sequences(["demo_video"], self.p.demo_video_frames, tuple(self.p.demo_size),
                                             seed=self.p.seed + 2, photos="test")[0]
        return self.demo_video

    # --- summary ------------------------------------------------------------------------------------
    def model_identity(self, model: str) -> str:
        """What the served model is, exactly: the registered version behind an alias, or a file's sha256."""
        from stark.platform.mlflow_runs import mlflow_client
        from stark.platform.registry.versions import resolve_version

        if model.startswith("models:/"):
            return f"{self.cfg.registry.model_name}/{resolve_version(mlflow_client(self.tracking_uri), model)}"
        return hashlib.sha256(Path(model).read_bytes()).hexdigest() if Path(model).is_file() else model

    def summary(self) -> None:
        """The served model, the starter it was fine-tuned from (if any) and the static box, side by side
        on the promotion sequences (unseen in training and, on the demo data, in tuning). Measured once per
        served model: a re-run with the same model and data prints the stored summary.json again."""
        model = self.served_model()
        minutes = (time.monotonic() - self.started) / 60
        if model is None:
            print(f"\n=== stark pipeline done in {minutes:.1f} min: no trained model yet, so no summary "
                  f"(steps run: {', '.join(self.p.steps)})")
            return
        data, split = self.promote_data
        key = {"model": model, "identity": self.model_identity(model), "data": data, "split": split,
               "starter": self.cfg.train.init_from}
        stored_file = self.work / "summary.json"
        stored = json.loads(stored_file.read_text()) if stored_file.exists() else {}
        if stored.get("key") == key:
            print(f"\n=== stark pipeline: nothing to do ({minutes:.1f} min); the summary of the run that "
                  f"finished in {stored['minutes']:.1f} min:")
            print_summary(stored)
            return
        summary = self.measure(model, data, split)
        summary.update(minutes=minutes, key=key)
        print(f"\n=== stark pipeline done in {minutes:.1f} min:")
        print_summary(summary)
        stored_file.write_text(json.dumps(summary, indent=2))

    def measure(self, model: str, data: str, split: str | None) -> dict:
        import numpy as np

        from stark.platform.evaluate import metrics as M
        from stark.platform.evaluate.report import PROTOCOLS, score_auc, score_auc_interval
        from stark.platform.evaluate.runner import load_sequences, track_model
        from stark.platform.model_loading import load_model

        sequences = [s for s in load_sequences(data, self.cfg.storage, split) if s.has_groundtruth]
        benchmark = self.cfg.evaluate.benchmark or sequences[0].dataset
        protocol = PROTOCOLS[benchmark]

        def scores(boxes_of) -> dict[str, float]:
            per = {s.name: M.sequence_metrics(boxes_of(s), s.boxes_xywh, s.visible, **protocol) for s in sequences}
            return M.aggregate(per).scores

        rows: dict[str, dict[str, float]] = {}
        settings = None
        candidates = [("STARK (" + model.split("/")[-1][:16] + ")", model)]
        if self.cfg.train.init_from:
            candidates.append((f"starter alone ({self.cfg.train.init_from.split('/')[-1][:14]})", self.cfg.train.init_from))
        for label, spec in candidates:
            loaded = load_model(spec, self.cfg.model, self.cfg.storage, self.tracking_uri)
            tracker = self.cfg.tracker_choice.for_model(loaded.tracker)
            settings = settings or tracker
            results = track_model(loaded, tracker, sequences, self.cfg.evaluate, self.cfg.storage)
            # a handful of sequences: the AUC's 90% interval over sequences like them says how much it means
            auc_lo, auc_hi = score_auc_interval(results, sequences)
            rows[label] = {**scores(lambda s: results[s.name].boxes), "score_auc": score_auc(results, sequences),
                           "auc_lo90": auc_lo, "auc_hi90": auc_hi}
        rows["static box (first frame)"] = scores(lambda s: np.repeat(s.init_box[None], s.num_frames, axis=0))
        outputs = {"work folder": str(self.work), "clips + manifest": self.clips,
                   "training run": str(Path(self.final_checkpoint(1)).parent.parent),
                   "tuning report": str(self.work / "tune"), **self.outputs,
                   "model": model}
        from stark.platform.console import routed_to

        if routed_to() is not None:
            outputs["log (Ray, MLflow)"] = str(routed_to())
        return {"model": model, "benchmark": benchmark, "data": data, "split": split,
                "sequences": len(sequences), "settings": {"update_interval": settings.update_interval,
                                                          "score_threshold": settings.score_threshold},
                "stark": rows[candidates[0][0]], "static_box": rows["static box (first frame)"],
                "rows": rows, "demo_video_iou50": self.demo_video_iou(), "outputs": outputs,
                "tracking_uri": self.tracking_uri}

    def demo_video_iou(self) -> float | None:
        """Share of the generated demo video's visible frames that `track` boxed at IoU > 0.5."""
        import csv

        import numpy as np

        from stark.platform.evaluate.metrics import box_iou_xywh

        boxes_file = self.work / "track" / "boxes.csv"
        if self.p.video is not None or not boxes_file.exists():
            return None
        seq = self.demo_sequence()
        with open(boxes_file) as f:
            rows = list(csv.DictReader(f))
        boxes = np.array([[float(r[k]) for k in ("x", "y", "w", "h")] for r in rows])
        n = min(len(boxes), seq.num_frames)
        iou = box_iou_xywh(boxes[:n], seq.boxes_xywh[:n])
        visible = seq.visible[:n]
        return float((iou[visible] > 0.5).mean()) if visible.any() else None


def print_summary(summary: dict) -> None:
    """The summary table, where everything is, and how to browse MLflow (from a summary.json's content)."""
    settings, rows = summary["settings"], summary["rows"]
    print(f"    {summary['sequences']} {summary['benchmark']} sequence(s) of {summary['data']} ({summary['split']}), "
          f"unseen in training; tracker settings update_interval={settings['update_interval']}, "
          f"score_threshold={settings['score_threshold']:g}")
    keys = [k for k in rows[next(iter(rows))] if k != "fps"]
    print(f"    {'':<30}" + "".join(f"{k:>10}" for k in keys))
    for label, row in rows.items():
        print(f"    {label:<30}" + "".join(f"{row[k]:>10.3f}" if k in row else f"{'-':>10}" for k in keys))
    if summary["demo_video_iou50"] is not None:
        print(f"    demo video: IoU > 0.5 on {summary['demo_video_iou50']:.0%} of the frames where the object is visible")
    for key, value in summary["outputs"].items():
        print(f"    {key:<18} {value}")
    uri = summary["tracking_uri"]
    ui = f"mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite") else f"open {uri}"
    print(f"    {'mlflow':<18} {uri}\n    browse it:         {ui}")


@job_boundary
def main(argv: list[str] | None = None, prog: str = "stark pipeline") -> int:
    parser = job_parser(prog, "The main job: data -> ingest -> train -> tune -> register -> promote -> track, "
                              "resuming where it stopped.", default_config="pipeline_demo")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    from stark.platform.experiment import dump_yaml, load_config

    work = Path(cfg.pipeline.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    # The effective config, paths made absolute, so each step runs exactly what a user could run alone.
    user_manifests = bool(cfg.data.manifests)
    if not user_manifests or cfg.pipeline.source:
        cfg.data.manifests = [str(work / "clips")]
    cfg.train.storage_path = cfg.train.storage_path if "://" in cfg.train.storage_path else str(work / "runs")
    cfg.tune.storage_path = cfg.tune.storage_path if "://" in cfg.tune.storage_path else str(work / "tune-trials")
    config_path = work / "pipeline-config.yaml"
    config_path.write_text(dump_yaml(cfg))
    # read back: the pipeline's own summary sees the config exactly as the steps' jobs do (its command-line
    # keys are now the file's, so settings stored with a model win over them in every step alike)
    cfg = load_config(str(config_path))
    pipeline = Pipeline(cfg, config_path, user_manifests, verbose=args.verbose)
    print(f"stark pipeline: {cfg.name} in {work}; steps {', '.join(cfg.pipeline.steps)}; "
          f"mlflow {pipeline.tracking_uri}", flush=True)
    try:
        for step in cfg.pipeline.steps:
            getattr(pipeline, f"step_{step}")()
        pipeline.summary()
    except Exception:
        print(f"\nstark pipeline: stopped in step {pipeline.step_no}", flush=True)
        raise  # the boundary prints the one error line (or logs the traceback of a bug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
