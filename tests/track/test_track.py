"""`stark track VIDEO --box`: boxes CSV + annotated video for any video file; bad input is named."""
from __future__ import annotations

import csv
from pathlib import Path

import decord
import numpy as np
import pytest
import torch

from stark.jobs.track import main as track_main
from stark.model.stark import build_stark
from stark.platform.track.annotate import draw_box, parse_box_argument
from stark.platform.checkpoint import make_checkpoint, save_checkpoint
from stark.platform.experiment import load_config, to_dict
from stark.platform.ingest.synthetic import encode_video_file, make_sequences


@pytest.fixture(scope="module")
def video_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("track")
    seq = make_sequences(["demo"], 12, (160, 120), seed=5)[0]
    encode_video_file(str(root / "demo.mp4"), seq.frames, 25.0)
    cfg = load_config("stark_tiny")
    torch.manual_seed(0)
    save_checkpoint(str(root / "tiny.pt"), make_checkpoint(build_stark(cfg.model), to_dict(cfg)))
    return root / "demo.mp4", root / "tiny.pt", seq.boxes_xywh[0]


def test_tracking_a_video_writes_boxes_and_an_annotated_video(tmp_path, video_and_model, capsys):
    video, model, box = video_and_model
    out = tmp_path / "out"
    assert track_main([str(video), "--box", ",".join(f"{v:g}" for v in box), "--model", str(model),
                       "--config", "stark_tiny", "--out", str(out)]) == 0
    assert "frames/s" in capsys.readouterr().err
    with open(out / "boxes.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and list(rows[0]) == ["frame", "x", "y", "w", "h", "score", "present"]
    assert [float(rows[0][k]) for k in "xywh"] == pytest.approx(list(box), abs=0.01)
    assert rows[0]["score"] == "" and 0.0 <= float(rows[5]["score"]) <= 1.0
    annotated = decord.VideoReader(str(out / "tracked.mp4"))
    assert len(annotated) == 12 and annotated[0].shape == (120, 160, 3)


def test_without_out_the_outputs_go_to_the_homes_folder_for_that_model_and_video(tmp_path, video_and_model,
                                                                                 monkeypatch, capsys):
    import shutil

    from stark.platform.home import Home, output_folder

    video, model, box = video_and_model
    other_model = tmp_path / "other.pt"
    shutil.copy(model, other_model)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    home = Home(tmp_path / "home")
    folders = []
    for m in (model, other_model):
        assert track_main([str(video), "--box", ",".join(f"{v:g}" for v in box), "--model", str(m),
                           "--config", "stark_tiny", f"home={home.root}"]) == 0
        folder = output_folder(home.track, str(m), str(video))
        assert f"boxes          {folder / 'boxes.csv'}" in capsys.readouterr().out
        folders.append(folder)
    # one folder per model and video under <home>/track: the second model did not overwrite the first
    assert folders[0] != folders[1] and all(f.parent.parent == Path(home.track) for f in folders)
    assert all((f / "boxes.csv").exists() and (f / "tracked.mp4").exists() for f in folders)
    assert list((tmp_path / "cwd").iterdir()) == []  # nothing in the working folder


def test_off_a_terminal_progress_is_a_line_every_few_seconds_and_the_last_one_with_rate_and_eta():
    import io

    from stark.jobs.track import ProgressBar

    stream = io.StringIO()  # not a terminal: a log, CI, a pipeline step
    bar = ProgressBar(1000, stream, every=3600)
    for done in range(1, 1001):
        bar.update(done)
    (line,) = stream.getvalue().splitlines()
    assert "1000/1000 frames" in line and "frames/s" in line and "ETA" in line


def test_a_box_outside_the_frame_is_refused(tmp_path, video_and_model, capsys):
    video, model, _ = video_and_model
    assert track_main([str(video), "--box", "500,10,20,20", "--model", str(model), "--config", "stark_tiny",
                       "--out", str(tmp_path)]) == 2
    assert "outside the 160x120 frame" in capsys.readouterr().err


def test_an_unreadable_video_is_named(tmp_path, video_and_model, capsys):
    _, model, _ = video_and_model
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    assert track_main([str(bad), "--box", "1,1,5,5", "--model", str(model), "--config", "stark_tiny"]) == 2
    assert "broken.mp4: not a readable video" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "1,2,0,4", "1,2,nan,4"])
def test_malformed_box_arguments_are_refused(text):
    with pytest.raises(ValueError, match="--box"):
        parse_box_argument(text)


def test_the_drawn_box_is_on_the_frame():
    frame = np.zeros((60, 80, 3), dtype=np.uint8)
    drawn = draw_box(frame, [20, 25, 30, 20], 0.9, 3, thickness=1)
    assert (drawn[25, 20:50] != 0).any() and (drawn[44, 20:50] != 0).any()  # top and bottom edges
    assert not drawn[35, 30:40].any()  # the inside stays untouched
