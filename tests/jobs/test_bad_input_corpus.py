"""A corpus of bad input, run through the real commands as a new user would: each case is a tiny input,
the command line, and a fragment of the one `error:` line it must end with. No case may pass silently
(exit 0) or put a traceback on the terminal.

Ingest cases break one thing in a copy of a small generated tree per layout (the trees and helpers of
tests/ingest/test_bad_input.py); model cases use an untrained tiny checkpoint. Every case fails before
any Ray or MLflow work starts, so the corpus runs in seconds per case.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from stark.jobs.cli import main as stark
from stark.platform.ingest.synthetic import write_demo_dataset
from tests.ingest.test_bad_input import annotation_of_first_train_sequence, first_listed, lasot_folder, replace_line

SMALL = dict(num_sequences=3, num_frames=30, size=(160, 120), num_test=1)
LAYOUTS = ("got10k", "lasot", "trackingnet", "footage")


@dataclass
class Case:
    id: str
    argv: Callable[["Inputs"], list[str]]  # builds the tiny input, returns the command line after `stark`
    fragment: str  # in the error line
    code: int = 2  # 2 bad input, 1 a service down


class Inputs:
    """What a case builds its input from: fresh copies of the generated trees, a scratch folder, models."""

    def __init__(self, trees, tmp_path, model: str):
        self.trees, self.tmp, self.model = trees, tmp_path, model

    def tree(self, layout: str) -> str:
        target = str(self.tmp / layout)
        shutil.copytree(self.trees / layout, target)
        return target

    def file(self, name: str, data: bytes | str) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(path)

    def frames(self, name: str, n: int = 12, bad: int | None = None, odd_size: int | None = None) -> str:
        from PIL import Image

        folder = self.tmp / name
        folder.mkdir()
        for i in range(n):
            path = folder / f"{i:04d}.jpg"
            if i == bad:
                path.write_bytes(b"not a jpeg")
                continue
            w, h = (100, 80) if i == odd_size else (160, 120)
            Image.fromarray(np.random.RandomState(i).randint(0, 255, (h, w, 3), np.uint8)).save(path)
        return str(folder)


def box_case(layout: str, box: str) -> Case:
    def argv(inp: Inputs) -> list[str]:
        root = inp.tree(layout)
        path, line = annotation_of_first_train_sequence(root, layout)
        replace_line(path, line, f"4,{box}" if layout == "footage" else box)
        return ["ingest", root, str(inp.tmp / "dest")]

    return Case(f"ingest-{layout}-box-{box}", argv, f"box {box} of frame 4 lies entirely outside the 160x120 image")


def line_case(layout: str, text: str, fragment: str) -> Case:
    def argv(inp: Inputs) -> list[str]:
        root = inp.tree(layout)
        path, line = annotation_of_first_train_sequence(root, layout)
        replace_line(path, line, f"4,{text}" if layout == "footage" else text)
        return ["ingest", root, str(inp.tmp / "dest")]

    return Case(f"ingest-{layout}-line-{text}", argv, fragment)


def got10k_label(label_file: str, value: str, fragment: str) -> Case:
    def argv(inp: Inputs) -> list[str]:
        root = inp.tree("got10k")
        replace_line(os.path.join(root, "train", first_listed(root, "train/list.txt"), label_file), 7, value)
        return ["ingest", root, str(inp.tmp / "dest")]

    return Case(f"ingest-got10k-{label_file}-{value}", argv, fragment)


def lasot_flag(label_file: str) -> Case:
    def argv(inp: Inputs) -> list[str]:
        root = inp.tree("lasot")
        path = os.path.join(lasot_folder(root, first_listed(root, "training_set.txt")), label_file)
        values = open(path).read().strip().split(",")
        values[3] = "2"
        open(path, "w").write(",".join(values) + "\n")
        return ["ingest", root, str(inp.tmp / "dest")]

    return Case(f"ingest-lasot-{label_file}", argv, "2")


def lasot_in_another_class_folder(inp: Inputs) -> list[str]:
    root = inp.tree("lasot")
    name = first_listed(root, "training_set.txt")
    other = next(c for c in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, c))
                 and c != name.rsplit("-", 1)[0])
    shutil.move(lasot_folder(root, name), os.path.join(root, other, name))
    return ["ingest", root, str(inp.tmp / "dest")]


def listed_twice(inp: Inputs) -> list[str]:
    root = inp.tree("got10k")
    with open(os.path.join(root, "train", "list.txt"), "a") as f:
        f.write(first_listed(root, "train/list.txt") + "\n")
    return ["ingest", root, str(inp.tmp / "dest")]


def listed_missing(inp: Inputs) -> list[str]:
    root = inp.tree("got10k")
    with open(os.path.join(root, "train", "list.txt"), "a") as f:
        f.write("GOT-10k_Train_000404\n")
    return ["ingest", root, str(inp.tmp / "dest")]


def footage_header(header: str) -> Case:
    def argv(inp: Inputs) -> list[str]:
        root = inp.tree("footage")
        csv = os.path.join(root, sorted(f for f in os.listdir(root) if f.endswith(".csv"))[0])
        lines = open(csv).read().splitlines()
        open(csv, "w").write("\n".join([header] + lines[1:]) + "\n")
        return ["ingest", root, str(inp.tmp / "dest")]

    return Case(f"ingest-footage-header-{header}", argv, "header")


def track(video: Callable[[Inputs], str], *extra: str, model: Callable[[Inputs], str] | None = None,
          box: str = "10,10,30,30") -> Callable[[Inputs], list[str]]:
    return lambda inp: ["track", video(inp), "--box", box, "--config", "stark_tiny", "--out", str(inp.tmp / "out"),
                        "--model", model(inp) if model else inp.model, *extra]


def evil_pickle(inp: Inputs) -> str:
    import torch

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {inp.tmp / 'ran'}",)

    path = str(inp.tmp / "evil.pth")
    torch.save({"net": {}, "settings": Payload()}, path)
    return path


def other_architecture(inp: Inputs) -> str:
    from stark.model.stark import build_stark
    from stark.platform.checkpoint import make_checkpoint, save_checkpoint
    from stark.platform.experiment import load_config, to_dict

    wide = load_config("stark_tiny", ["model.transformer.d_model=64"])
    path = str(inp.tmp / "other.pt")
    save_checkpoint(path, make_checkpoint(build_stark(wide.model), to_dict(load_config("stark_tiny"))))
    return path


def evaluate(data: Callable[[Inputs], str], *extra: str) -> Callable[[Inputs], list[str]]:
    return lambda inp: ["evaluate", "--model", inp.model, "--data", data(inp), "--config", "stark_tiny",
                        "--no-mlflow", "--out", str(inp.tmp / "out"), *extra]


def manifest_with_a_missing_clip(inp: Inputs) -> str:
    """An ingest DEST whose manifest names two clips of one sequence, the second of them deleted: TMP/d."""
    from stark.platform.ingest.manifest import write_manifest
    from tests.support.data_fixtures import sequence_records

    dest = inp.tmp / "d"
    records = sequence_records("seq", "got10k", np.ones(8, dtype=bool), clip_frames=4)
    for record in records:
        record.clip_uri = str(dest / "clips" / f"seq-{record.clip_index:04d}.mp4")
    inp.file("d/clips/seq-0000.mp4", b"a clip")  # only the first is there
    write_manifest(str(dest), records)
    return str(dest)


MISSING_CLIP = "TMP/d/manifest.parquet: names clip TMP/d/clips/seq-0001.mp4, which does not exist"


def train(*overrides: str) -> Callable[[Inputs], list[str]]:
    return lambda inp: ["train", "--config", "stark_tiny", f"train.storage_path={inp.tmp / 'runs'}",
                        f"mlflow.tracking_uri=sqlite:///{inp.tmp / 'mlflow.db'}",
                        *[o.replace("TMP", str(inp.tmp)) for o in overrides]]


CASES = [
    *[box_case(layout, box) for layout in LAYOUTS for box in ("500,10,20,20", "-40,10,20,20")],
    *[line_case(layout, "a,b,c,d", "") for layout in LAYOUTS],
    *[line_case(layout, "10,10,20", "") for layout in LAYOUTS],
    got10k_label("absence.label", "3", "label 3 is out of range: absence.label holds 0..1"),
    got10k_label("cover.label", "9", "label 9 is out of range: cover.label holds 0..8"),
    got10k_label("cover.label", "0.5", "expected an integer label, got '0.5'"),
    lasot_flag("full_occlusion.txt"), lasot_flag("out_of_view.txt"),
    Case("ingest-lasot-sequence-in-another-class-folder", lasot_in_another_class_folder,
         "is in class folder"),
    Case("ingest-got10k-listed-twice", listed_twice, "appears twice (first: line 1)"),
    Case("ingest-got10k-listed-but-missing", listed_missing, "is listed but its folder"),
    footage_header("frame,left,top,w,h"), footage_header("frame,x,y,w"),
    Case("ingest-src-missing", lambda inp: ["ingest", str(inp.tmp / "nowhere"), str(inp.tmp / "dest")], "nowhere"),
    Case("ingest-src-empty", lambda inp: ["ingest", inp.frames("empty", n=0), str(inp.tmp / "dest")],
         "not a known layout"),
    Case("ingest-dest-is-a-file", lambda inp: ["ingest", inp.tree("got10k"), inp.file("taken", "mine")],
         "DEST is an existing file, not a folder"),
    Case("ingest-config-binary", lambda inp: ["ingest", "--config", inp.file("c.yaml", bytes(range(256))),
                                              inp.tree("got10k"), str(inp.tmp / "dest")], "not a YAML text file"),
    Case("ingest-unknown-key", lambda inp: ["ingest", inp.tree("got10k"), str(inp.tmp / "dest"), "ingest.crff=3"],
         "ingest.crff"),
    Case("ingest-wrong-layout", lambda inp: ["ingest", inp.tree("got10k"), str(inp.tmp / "dest"), "--layout",
                                             "lasot"], ""),
    Case("ingest-missing-bucket", lambda inp: ["ingest", inp.tree("footage"), "s3://no-such-bucket-corpus/x"],
         "bucket 'no-such-bucket-corpus' does not exist"),
    # track
    Case("track-no-such-video", track(lambda inp: str(inp.tmp / "none.mp4")), "no such video file or image folder"),
    Case("track-box-outside", track(lambda inp: inp.frames("f"), box="500,500,10,10"), ""),
    Case("track-box-three-numbers", track(lambda inp: inp.frames("f"), box="1,2,3"), ""),
    Case("track-box-zero-width", track(lambda inp: inp.frames("f"), box="10,10,0,10"), ""),
    Case("track-box-text", track(lambda inp: inp.frames("f"), box="a,b,c,d"), ""),
    Case("track-unreadable-frame-late", track(lambda inp: inp.frames("f", bad=9)),
         "0009.jpg: unreadable image (frame 10 of 12)"),
    Case("track-frames-of-mixed-sizes", track(lambda inp: inp.frames("f", odd_size=7)),
         "frame 8 is 100x80, the first frame 0000.jpg is 160x120"),
    Case("track-empty-folder", track(lambda inp: inp.frames("f", n=0)), "no image files"),
    Case("track-text-file-as-video", track(lambda inp: inp.file("v.mp4", "hello")), "not a readable video"),
    Case("track-no-such-model", track(lambda inp: inp.frames("f"), model=lambda inp: str(inp.tmp / "m.pt")),
         "no such file"),
    Case("track-model-of-text", track(lambda inp: inp.frames("f"), model=lambda inp: inp.file("m.pt", "text")), ""),
    Case("track-model-asking-to-run-code", track(lambda inp: inp.frames("f"), model=evil_pickle),
         "refused: its pickle asks to run code (posix.system)"),
    Case("track-model-of-another-architecture", track(lambda inp: inp.frames("f"), model=other_architecture),
         "its weights are of another architecture than its stored model config"),
    Case("track-unknown-override", track(lambda inp: inp.frames("f"), "tracker.update_intervall=3"),
         "tracker.update_intervall"),
    # evaluate
    Case("evaluate-no-such-data", evaluate(lambda inp: str(inp.tmp / "none")), ""),
    Case("evaluate-manifest-file-missing", evaluate(lambda inp: str(inp.tmp / "x" / "manifest.parquet")),
         "no such file or folder"),
    Case("evaluate-corrupt-manifest", evaluate(lambda inp: os.path.dirname(inp.file("d/manifest.parquet", b"PAR1"))),
         "not a readable manifest"),
    Case("evaluate-manifest-missing-on-s3", evaluate(lambda inp: f"{inp.s3_bucket}/none"),
         "no such file or folder, s3://"),
    Case("evaluate-missing-bucket", evaluate(lambda inp: "s3://no-such-bucket-corpus/data"),
         "bucket 'no-such-bucket-corpus' does not exist"),
    Case("evaluate-manifest-points-at-a-missing-clip", evaluate(manifest_with_a_missing_clip), MISSING_CLIP),
    Case("evaluate-split-without-sequences", evaluate(lambda inp: inp.tree("got10k"), "--split", "val"),
         "split 'val' has no list.txt"),
    Case("evaluate-no-such-model", lambda inp: ["evaluate", "--model", str(inp.tmp / "m.pt"), "--data",
                                                inp.tree("got10k"), "--config", "stark_tiny", "--no-mlflow"],
         "no such file"),
    Case("evaluate-model-asking-to-run-code", lambda inp: ["evaluate", "--model", evil_pickle(inp), "--data",
                                                           inp.tree("got10k"), "--config", "stark_tiny", "--no-mlflow"],
         "refused: its pickle asks to run code"),
    # train
    Case("train-no-manifests", train("data.manifests=[]"), "data.manifests is empty"),
    Case("train-manifest-missing", train("data.manifests=[TMP/none]"), "no manifest at"),
    Case("train-stage-2-on-stark-s", train("data.manifests=[TMP/none]", "model.variant=S", "train.stages=[2]"),
         "only STARK-ST has"),
    Case("train-manifest-points-at-a-missing-clip",
         lambda inp: train(f"data.manifests=[{manifest_with_a_missing_clip(inp)}]")(inp), MISSING_CLIP),
    Case("train-bad-value", train("train.stage1.epochs=many"), "train.stage1.epochs"),
    Case("train-unknown-preset", lambda inp: ["train", "--config", "no_such_preset"], "no_such_preset"),
    # the rest
    Case("model-summary-unknown-key", lambda inp: ["model-summary", "--config", "stark_tiny", "model.depthh=3"],
         "model.depthh"),
    Case("promote-candidate-not-a-model-uri", lambda inp: [
        "promote", "--candidate", "stark-3", "--data", inp.tree("got10k"), "--config", "stark_tiny",
        f"mlflow.tracking_uri=sqlite:///{inp.tmp / 'mlflow.db'}"], "stark-3"),
    Case("tune-manifest-points-at-a-missing-clip", lambda inp: [
        "tune", "--model", inp.model, "--data", manifest_with_a_missing_clip(inp), "--config", "stark_tiny",
        "--no-mlflow"], MISSING_CLIP),
    Case("tune-no-such-model", lambda inp: ["tune", "--model", str(inp.tmp / "m.pt"), "--data", inp.tree("got10k"),
                                            "--config", "stark_tiny", "--no-mlflow"], "no such file"),
]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for layout in LAYOUTS:
        write_demo_dataset(str(root / layout), layout, seed=3, **SMALL)
    return root


def test_the_corpus_holds_at_least_sixty_cases_across_every_command_and_layout():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
    assert {c.id.split("-")[0] for c in CASES} >= {"ingest", "track", "evaluate", "train", "promote", "tune"}
    assert all(any(c.id.startswith(f"ingest-{layout}") for c in CASES) for layout in LAYOUTS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_ends_the_command_with_one_error_line_and_no_traceback(case, trees, tmp_path, random_checkpoint,
                                                                          s3_bucket, capsys, monkeypatch):
    monkeypatch.setenv("STARK_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.chdir(tmp_path)
    inputs = Inputs(trees, tmp_path, str(random_checkpoint))
    inputs.s3_bucket = s3_bucket
    argv = case.argv(inputs)
    try:
        code = stark(argv)
    except SystemExit as exc:  # argparse and config errors exit from inside the parser
        code = exc.code
    err = capsys.readouterr().err
    assert code == case.code, err
    assert "Traceback" not in err and not (tmp_path / "logs").exists(), err  # no bug behind it
    last = err.strip().splitlines()[-1]
    assert last.startswith("error:") or "error:" in last, err
    assert case.fragment.replace("TMP", str(tmp_path)) in last, err
    assert not (tmp_path / "ran").exists()  # and no pickled payload ever ran
