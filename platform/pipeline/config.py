"""Typed configuration of `stark pipeline`: where the data comes from and which steps run."""
from __future__ import annotations

from dataclasses import dataclass, field

STEPS = ("data", "ingest", "train", "tune", "register", "promote", "track")


@dataclass
class PipelineConfig:
    # everything the pipeline writes, step by step (re-runs resume here); None: <home>/pipelines/<name>
    workdir: str | None = None
    # Training data, first that applies: `source` (a benchmark tree or videos + box files, ingested into
    # <workdir>/clips), else `data.manifests` as given, else a generated demo dataset.
    source: str | None = None
    val_data: str | None = None  # tuning data (manifest or tree); None = the demo's val split
    val_split: str | None = "val"
    # promotion data, kept apart from tuning's so that the gate measures generalisation; None = the
    # demo's holdout set (photographs seen neither in training nor in tuning), else val_data
    promote_data: str | None = None
    promote_split: str | None = "val"
    video: str | None = None  # the video `track` runs on; None = a generated demo video
    video_box: list[float] = field(default_factory=list)  # x,y,w,h in its first frame (generated: known)
    demo_train_sequences: int = 8  # from the "train" photographs (synthetic.PHOTO_SPLITS)
    demo_val_sequences: int = 6  # tuning, from the "val" photographs
    demo_promote_sequences: int = 6  # promotion and the summary, from the "test" photographs
    demo_frames: int = 60
    demo_video_frames: int = 150  # the generated video `track` annotates; the summary's IoU share is over it
    demo_size: list[int] = field(default_factory=lambda: [480, 270])  # width, height
    seed: int = 0
    steps: list[str] = field(default_factory=lambda: list(STEPS))

    def validate(self) -> None:
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise ValueError(f"pipeline.steps: {unknown} are not among {list(STEPS)}")
        if self.video and len(self.video_box) != 4:
            raise ValueError("pipeline.video_box: give x,y,w,h of the object in the first frame of pipeline.video")
        if len(self.demo_size) != 2 or min(self.demo_size) < 32:
            raise ValueError("pipeline.demo_size: [width, height], each >= 32")
        for key in ("demo_train_sequences", "demo_val_sequences", "demo_promote_sequences", "demo_frames",
                    "demo_video_frames"):
            if getattr(self, key) < 1:
                raise ValueError(f"pipeline.{key} must be >= 1")
