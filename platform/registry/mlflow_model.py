"""The MLflow model of a STARK tracker, logged as code ("models from code"): MLflow stores this file,
not a pickled object, and the weights travel as a platform checkpoint artifact (state_dicts,
read with weights_only). `mlflow.pyfunc.load_model(uri).predict(df)` tracks videos.

Input: one row per video, columns `video` (path or URL readable where the model runs) and the first
frame's box `x`, `y`, `w`, `h`. Output: one row per frame, columns video, frame, x, y, w, h, score.
Inside this project, `load_model("models:/stark@champion")` reads the same checkpoint directly.
"""
from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

CHECKPOINT_ARTIFACT = "checkpoint"


class StarkTrackerModel(PythonModel):
    # MLflow loads this file by path, outside its package: imports are absolute, and inside the methods so
    # that logging the model (which runs this file) needs nothing but MLflow.
    def load_context(self, context) -> None:
        from stark.platform.model_loading import from_content, read_local_model_file
        from stark.platform.track.tracker import StarkTracker
        from stark.platform.track.config import TrackerChoice

        path = context.artifacts[CHECKPOINT_ARTIFACT]
        loaded = from_content(read_local_model_file(path), path)
        settings = TrackerChoice().for_model(loaded.tracker)
        self.tracker = StarkTracker(loaded.model, loaded.model_cfg, settings)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from stark.platform.track.frames import open_frames

        rows = []
        for item in model_input.itertuples(index=False):
            result = self.tracker.track(open_frames(item.video), [item.x, item.y, item.w, item.h])
            for frame, (box, score) in enumerate(zip(result.boxes, result.scores)):
                rows.append({"video": item.video, "frame": frame, "x": box[0], "y": box[1], "w": box[2],
                             "h": box[3], "score": float(score)})
        return pd.DataFrame(rows, columns=["video", "frame", "x", "y", "w", "h", "score"])


mlflow.models.set_model(StarkTrackerModel())
