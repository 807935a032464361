"""`stark pipeline`: the main job. Data -> ingest -> train (both stages) -> tune -> register -> promote
-> track, each step skipped when its output already exists, then a summary against the static-box
baseline. Every step is the same job a user can run alone; the pipeline prints each command."""
from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

from stark.jobs.args import config_from_args, job_parser


class Pipeline:
    def __init__(self, cfg, config_path: Path, user_manifests: bool):
        from stark.platform.tracking import resolve_tracking_uri

        self.cfg, self.p = cfg, cfg.pipeline
        self.work = Path(self.p.workdir).resolve()
        self.config_path = config_path
        self.user_manifests = user_manifests  # data.manifests came from the user (not the demo's clips)
        self.tracking_uri = resolve_tracking_uri(cfg.mlflow)
        self.started = time.monotonic()
        self.steps_total = len(self.p.steps)
        self.step_no = 0
        self.outputs: dict[str, str] = {}

    # --- paths --------------------------------------------------------------------------------------
    @property
    def demo_dir(self) -> Path:
        return self.work / "demo"

    @property
    def clips(self) -> str:
        return str(self.work / "clips")

    @property
    def val_data(self) -> str:
        return self.p.val_data or self.clips

    def final_checkpoint(self, stage: int) -> str:
        from stark.platform.train_run import RunPaths

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
        return argv

    @staticmethod
    def run(main, argv: list[str], what: str) -> None:
        code = main(argv)
        if code != 0:
            raise RuntimeError(f"{what} failed (exit {code}); fix it and re-run: finished steps are kept")

    # --- steps --------------------------------------------------------------------------------------
    def step_data(self) -> None:
        from stark.platform.synthetic import make_sequences, write_got10k

        if self.p.source or self.user_manifests:
            self.begin("data", f"using {self.p.source or self.cfg.data.manifests}")
            return
        marker = self.demo_dir / ".complete"
        self.begin("data", f"demo dataset in {self.demo_dir}")
        if marker.exists():
            print("    already generated: skipped")
            return
        size = tuple(self.p.demo_size)
        train = [f"GOT-10k_Train_{i:06d}" for i in range(1, self.p.demo_train_sequences + 1)]
        val = [f"GOT-10k_Val_{i:06d}" for i in range(1, self.p.demo_val_sequences + 1)]
        write_got10k(str(self.demo_dir), {
            "train": make_sequences(train, self.p.demo_frames, size, seed=self.p.seed),
            "val": make_sequences(val, self.p.demo_frames, size, seed=self.p.seed + 1)})
        marker.write_text("complete\n")  # last: a half-written demo is regenerated
        print(f"    {len(train)} train + {len(val)} val sequences of {self.p.demo_frames} frames "
              f"(scikit-image photographs, objects moving, absent stretches)")

    def step_ingest(self) -> None:
        from stark.jobs.ingest import main as ingest_main
        from stark.platform import storage
        from stark.platform.manifest import manifest_uri

        if self.user_manifests and not self.p.source:
            self.begin("ingest", "data.manifests given: nothing to ingest")
            return
        source = self.p.source or str(self.demo_dir)
        self.begin("ingest", f"{source} -> {self.clips}")
        if storage.exists(manifest_uri(self.clips)):
            print("    manifest exists: skipped")
            return
        self.run(ingest_main, self.command("ingest", source, self.clips), "ingest")

    def step_train(self) -> None:
        from stark.jobs.train import main as train_main

        self.begin("train", f"stages {self.cfg.train.stages} on Ray Train")
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

    def step_register(self) -> None:
        from stark.jobs.register import register
        from stark.platform.registry import client_for

        checkpoint = self.tuned_model()
        digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
        self.begin("register", f"{checkpoint} as '{self.cfg.registry.model_name}'")
        client = client_for(self.tracking_uri)
        name = self.cfg.registry.model_name
        existing = [v for v in client.search_model_versions(f"name = '{name}'")
                    if v.tags.get("stark.checkpoint_sha256") == digest] if client.search_registered_models(
                        f"name = '{name}'") else []
        if existing:
            self.version = str(existing[0].version)
            print(f"    already registered as models:/{name}/{self.version}: skipped")
            return
        print(f"    $ stark register --checkpoint {checkpoint} --eval-data {self.val_data} "
              f"--split {self.p.val_split} --config {self.config_path}")
        version = register(self.cfg, checkpoint, self.val_data, self.p.val_split,
                           description="registered by stark pipeline")
        self.version = str(version.version)
        print(f"    models:/{name}/{self.version}")

    def step_promote(self) -> None:
        from stark.platform.evaluation import load_sequences
        from stark.platform.promotion import promote
        from stark.platform.registry import client_for

        name = self.cfg.registry.model_name
        version = getattr(self, "version", None) or self._latest_version()
        self.begin("promote", f"models:/{name}/{version} against the current champion")
        tags = client_for(self.tracking_uri).get_model_version(name, version).tags
        if "stark.promotion.decision" in tags:
            print(f"    already decided ({tags['stark.promotion.decision']}): skipped")
            return
        print(f"    $ stark promote --candidate models:/{name}/{version} --data {self.val_data} "
              f"--split {self.p.val_split} --config {self.config_path}")
        sequences = [s for s in load_sequences(self.val_data, self.cfg.storage, self.p.val_split) if s.has_groundtruth]
        outcome = promote(self.tracking_uri, f"models:/{name}/{version}", sequences,
                          self.cfg.evaluate.benchmark or sequences[0].dataset, self.cfg.registry, self.cfg.tracker,
                          self.cfg.evaluate, self.cfg.storage, log=lambda line: print(f"    {line}"))
        print(f"    {'PROMOTED' if outcome.decision.promote else 'not promoted'}: {outcome.decision.reason}")

    def _latest_version(self) -> str:
        from stark.platform.registry import client_for

        versions = client_for(self.tracking_uri).search_model_versions(f"name = '{self.cfg.registry.model_name}'")
        if not versions:
            raise RuntimeError("no registered version to promote: run the register step")
        return str(max(int(v.version) for v in versions))

    def served_model(self) -> str:
        from stark.platform.registry import alias_version, client_for

        name = self.cfg.registry.model_name
        champion = alias_version(client_for(self.tracking_uri), name, self.cfg.registry.champion_alias)
        return f"models:/{name}@{self.cfg.registry.champion_alias}" if champion else self.tuned_model()

    def step_track(self) -> None:
        from stark.jobs.track import main as track_main
        from stark.platform.synthetic import encode_video_file, make_sequences

        out = self.work / "track"
        video, box = self.p.video, self.p.video_box
        if video is None:
            video = str(self.work / "demo_video.mp4")
            seq = make_sequences(["demo_video"], 90, tuple(self.p.demo_size), seed=self.p.seed + 2)[0]
            box = [float(v) for v in seq.boxes_xywh[0]]
            if not Path(video).exists():
                encode_video_file(video, seq.frames, 25.0)
        model = self.served_model()
        self.begin("track", f"{video} with {model}")
        if (out / "tracked.mp4").exists():
            print("    annotated video exists: skipped")
        else:
            self.run(track_main, self.command("track", video, "--box", ",".join(f"{v:g}" for v in box),
                                              "--model", model, "--out", str(out)), "track")
        self.outputs["annotated video"] = str(out / "tracked.mp4")
        self.outputs["boxes"] = str(out / "boxes.csv")

    # --- summary ------------------------------------------------------------------------------------
    def summary(self) -> None:
        from stark.platform.tracker import resolve_tracker_settings
        from stark.platform import metrics as M
        from stark.platform.eval_report import PROTOCOLS
        from stark.platform.evaluation import load_sequences, pack_model, track_sequences
        from stark.platform.model_loading import load_model

        model = self.served_model()
        sequences = [s for s in load_sequences(self.val_data, self.cfg.storage, self.p.val_split) if s.has_groundtruth]
        benchmark = self.cfg.evaluate.benchmark or sequences[0].dataset
        loaded = load_model(model, self.cfg.model, self.cfg.storage)
        settings = resolve_tracker_settings(self.cfg.tracker, loaded.tracker, [])
        results = track_sequences(pack_model(loaded.model, loaded.model_cfg), settings, sequences,
                                  self.cfg.evaluate, self.cfg.storage)
        protocol = PROTOCOLS[benchmark]

        def scores(boxes_of) -> dict[str, float]:
            per = {s.name: M.sequence_metrics(boxes_of(s), s.boxes_xywh, s.visible, **protocol) for s in sequences}
            return M.aggregate(per).scores

        import numpy as np

        tracked = scores(lambda s: results[s.name].boxes)
        static = scores(lambda s: np.repeat(s.init_box[None], s.num_frames, axis=0))
        keys = [k for k in tracked if k != "fps"]
        minutes = (time.monotonic() - self.started) / 60
        print(f"\n=== stark pipeline done in {minutes:.1f} min: {len(sequences)} {benchmark} "
              f"validation sequence(s), tracker settings update_interval={settings.update_interval}, "
              f"score_threshold={settings.score_threshold:g}")
        print(f"    {'':<26}" + "".join(f"{k:>10}" for k in keys))
        print(f"    {'STARK (' + model.split('/')[-1][:16] + ')':<26}" + "".join(f"{tracked[k]:>10.3f}" for k in keys))
        print(f"    {'static box (first frame)':<26}" + "".join(f"{static[k]:>10.3f}" for k in keys))
        outputs = {"work folder": str(self.work), "clips + manifest": self.clips,
                   "training run": str(Path(self.final_checkpoint(1)).parent.parent),
                   "tuning report": str(self.work / "tune"), **self.outputs,
                   "model": model}
        for key, value in outputs.items():
            print(f"    {key:<18} {value}")
        uri = self.tracking_uri
        ui = f"mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite") else f"open {uri}"
        print(f"    {'mlflow':<18} {uri}\n    browse it:         {ui}")
        summary = {"minutes": minutes, "model": model, "benchmark": benchmark, "stark": tracked,
                   "static_box": static, "outputs": outputs, "tracking_uri": uri}
        (self.work / "summary.json").write_text(json.dumps(summary, indent=2))


def main(argv: list[str] | None = None, prog: str = "stark pipeline") -> int:
    parser = job_parser(prog, "The main job: data -> ingest -> train -> tune -> register -> promote -> track, "
                              "resuming where it stopped.", default_config="pipeline_demo")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    import dataclasses

    from stark.platform.config import dump_yaml

    work = Path(cfg.pipeline.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    # The effective config, paths made absolute, so each step runs exactly what a user could run alone.
    user_manifests = bool(cfg.data.manifests)
    if not user_manifests or cfg.pipeline.source:
        cfg.data.manifests = [str(work / "clips")]
    cfg.train.storage_path = cfg.train.storage_path if "://" in cfg.train.storage_path else str(work / "runs")
    cfg.tune.storage_path = cfg.tune.storage_path if "://" in cfg.tune.storage_path else str(work / "tune-trials")
    if cfg.mlflow.tracking_uri is None and "MLFLOW_TRACKING_URI" not in __import__("os").environ:
        cfg.mlflow = dataclasses.replace(cfg.mlflow, tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    config_path = work / "pipeline-config.yaml"
    config_path.write_text(dump_yaml(cfg))
    from stark.platform.ray_runtime import init_ray, training_cpu_slots

    init_ray(min_cpus=training_cpu_slots(cfg))  # one Ray for every step, with room for the training stream
    pipeline = Pipeline(cfg, config_path, user_manifests)
    print(f"stark pipeline: {cfg.name} in {work}; steps {', '.join(cfg.pipeline.steps)}; "
          f"mlflow {pipeline.tracking_uri}", flush=True)
    try:
        for step in cfg.pipeline.steps:
            getattr(pipeline, f"step_{step}")()
        pipeline.summary()
    except Exception as exc:  # noqa: BLE001 - one readable line; the steps printed their own detail
        print(f"\nstark pipeline: failed in step {pipeline.step_no}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
