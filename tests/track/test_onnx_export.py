"""`stark export` and the ONNX Runtime engine: two graphs and a JSON, outputs equal to the PyTorch inference
copy's on fixed inputs, and a whole sequence tracked through ONNX Runtime with the PyTorch tracker's boxes.

Random weights serve for equivalence (a seeded model with non-trivial BatchNorm statistics, so folding
matters); tolerances are the issue's: boxes to 1e-4 of the search crop, scores to 1e-4, fp16 boxes within
0.5% of the box size.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stark.jobs.export import main as export_main
from stark.model.inference import inference_copy
from stark.model.stark import build_stark
from stark.platform.checkpoint import make_checkpoint, save_checkpoint
from stark.platform.experiment import load_config, to_dict
from stark.platform.image_norm import IMAGENET_MEAN, IMAGENET_STD
from stark.platform.ingest.synthetic import make_sequences
from stark.platform.track.config import TrackerSettings
from stark.platform.track.export import export_tracker
from stark.platform.track.onnx_folder import MANIFEST_FILE, read_exported, sha256_of
from stark.platform.track.onnx_tracker import OnnxTracker
from stark.platform.track.tracker import StarkTracker, track_many
from tests.support.model_fixtures import crops, preset_model_config, randomise_statistics

UPDATING = TrackerSettings(update_interval=3, score_threshold=0.0)  # the dynamic template changes every 3rd frame


def seeded_model(preset: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = preset_model_config(preset, **overrides)
    model = build_stark(cfg).eval()
    randomise_statistics(model, seed)
    return model, cfg


def onnx_outputs(tracker: OnnxTracker, templates, template_masks, search, search_mask):
    tokens = [tracker._forward_templates(z, m) for z, m in zip(templates, template_masks)]
    return tracker._forward_search(tokens, search, search_mask)


def torch_outputs(model, templates, template_masks, search, search_mask):
    fast = inference_copy(model, channels_last=False)
    with torch.inference_mode():
        tokens = [fast.forward_backbone(z, m) for z, m in zip(templates, template_masks)]
        out = fast.forward_search(tokens, search, search_mask)
    scores = out["pred_logits"].sigmoid().numpy() if "pred_logits" in out else None
    return out["pred_boxes"].numpy(), scores


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny preset's seeded model, saved as a checkpoint and exported by the `stark export` job."""
    root = tmp_path_factory.mktemp("export")
    model, cfg = seeded_model("stark_tiny")
    experiment = load_config("stark_tiny")
    checkpoint = root / "tiny.pt"
    save_checkpoint(str(checkpoint), make_checkpoint(model, to_dict(experiment), tracker={"update_interval": 7}))
    assert export_main(["--model", str(checkpoint), "--out", str(root / "onnx"), "--config", "stark_tiny"]) == 0
    return model, cfg, read_exported(root / "onnx")


@pytest.fixture(scope="module")
def tiny_fp16(tiny, tmp_path_factory):
    model, cfg, _ = tiny
    return export_tracker(model, cfg, TrackerSettings(), tmp_path_factory.mktemp("fp16"), fp16=True)


def test_the_export_writes_two_graphs_and_a_json_with_config_settings_normalisation_and_sha256(tiny, capsys):
    model, cfg, exported = tiny
    files = sorted(p.name for p in exported.folder.iterdir())
    assert files == [MANIFEST_FILE, "template.onnx", "track.onnx"]  # no temporary file left behind
    manifest = json.loads((exported.folder / MANIFEST_FILE).read_text())
    assert manifest["model"]["transformer"]["d_model"] == cfg.transformer.d_model and manifest["model"]["variant"] == "ST"
    assert manifest["tracker"]["update_interval"] == 7  # stored with the model, over the config's 200
    assert manifest["tracker"]["present_threshold"] == 0.5
    assert manifest["input"]["mean"] == list(IMAGENET_MEAN) and manifest["input"]["std"] == list(IMAGENET_STD)
    assert manifest["input"]["search_size"] == cfg.search_size and manifest["precision"] == "fp32"
    for name in ("template", "track"):
        assert manifest["graphs"][name]["sha256"] == sha256_of(exported.graph_path(name))
    assert manifest["graphs"]["track"]["inputs"] == ["t0_feat", "t0_mask", "t0_pos", "t1_feat", "t1_mask", "t1_pos",
                                                     "search", "search_mask"]
    assert manifest["graphs"]["track"]["outputs"] == ["boxes", "score"]


def test_the_check_the_job_prints_finds_onnx_runtime_within_tolerance_of_pytorch(tiny):
    from stark.platform.track.export import graph_differences

    model, _, exported = tiny
    diff = graph_differences(model, OnnxTracker(exported, TrackerSettings(), threads=1))
    assert diff["boxes"] < 1e-4 and diff["score"] < 1e-4


def test_an_opset_without_attention_is_refused_before_any_work(tmp_path, capsys):
    assert export_main(["--model", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x"), "--opset", "11",
                        "--config", "stark_tiny"]) == 2
    assert "opset 14" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_runtime_gives_the_inference_copys_boxes_and_scores_at_any_batch_size(tiny, batch):
    model, cfg, exported = tiny
    inputs = crops(cfg, batch=batch, seed=11)
    boxes, scores = onnx_outputs(OnnxTracker(exported, TrackerSettings(), threads=1), *inputs)
    want_boxes, want_scores = torch_outputs(model, *inputs)
    assert boxes.shape == (batch, 4) and scores.shape == (batch,)
    np.testing.assert_allclose(boxes, want_boxes, atol=1e-4, rtol=0)  # boxes are in units of the search crop
    np.testing.assert_allclose(scores, want_scores, atol=1e-4, rtol=0)


def test_an_fp16_export_keeps_boxes_within_half_a_percent_of_the_box_size(tiny, tiny_fp16):
    model, cfg, _ = tiny
    assert tiny_fp16.manifest["precision"] == "fp16"
    inputs = crops(cfg, batch=3, seed=12)
    boxes, scores = onnx_outputs(OnnxTracker(tiny_fp16, TrackerSettings(), threads=1), *inputs)
    want_boxes, want_scores = torch_outputs(model, *inputs)
    assert boxes.dtype == np.float32  # the interface stays float32
    # the target's size in a search crop is 1 / search_factor of it (the crop is cut so); random weights
    # give boxes of no particular size, so that is the size the tolerance is measured against
    size = 1.0 / cfg.search_factor
    assert np.abs(boxes - want_boxes).max() <= 0.005 * size, np.abs(boxes - want_boxes).max() / size
    np.testing.assert_allclose(scores, want_scores, atol=5e-3)


def test_a_whole_sequence_on_onnx_runtime_gives_the_pytorch_trackers_boxes_and_template_updates(tiny):
    model, cfg, exported = tiny
    seq = make_sequences(["updates"], 16, (160, 120), seed=4)[0]
    frames = list(seq.frames)
    with_torch = StarkTracker(model, cfg, UPDATING).track(frames, seq.boxes_xywh[0])
    with_onnx = OnnxTracker(exported, UPDATING, threads=1).track(frames, seq.boxes_xywh[0])
    assert with_torch.updates == [3, 6, 9, 12, 15] and with_onnx.updates == with_torch.updates
    np.testing.assert_allclose(with_onnx.boxes, with_torch.boxes, atol=1e-3, rtol=0)  # pixels
    np.testing.assert_allclose(with_onnx.scores, with_torch.scores, atol=1e-4, equal_nan=True)
    assert (with_onnx.present == with_torch.present).all()


def test_batched_onnx_tracking_gives_the_boxes_of_one_sequence_at_a_time(tiny):
    _, _, exported = tiny
    tracker = OnnxTracker(exported, UPDATING, threads=1)
    sequences = make_sequences(["a", "b", "c"], 8, (160, 120), seed=6)
    sequences[1].frames = sequences[1].frames[:5]  # one leaves early, so batches change size mid-way
    alone = [tracker.track(list(s.frames), s.boxes_xywh[0]) for s in sequences]
    batched = dict(track_many(tracker, [(list(s.frames), s.boxes_xywh[0]) for s in sequences], batch_size=2))
    for i, single in enumerate(alone):
        np.testing.assert_allclose(batched[i].boxes, single.boxes, atol=1e-3)
        assert batched[i].updates == single.updates


def test_a_graph_that_does_not_match_its_sha256_is_refused(tiny, tmp_path):
    import shutil

    _, _, exported = tiny
    copy = tmp_path / "copy"
    shutil.copytree(exported.folder, copy)
    data = bytearray((copy / "track.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "track.onnx").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        read_exported(copy)
    with pytest.raises(ValueError, match=MANIFEST_FILE):
        read_exported(tmp_path)


def test_a_stark_s_export_has_no_score_and_tracks_with_the_target_always_present(tmp_path):
    model, cfg = seeded_model("stark_tiny", variant="S")
    exported = export_tracker(model, cfg, TrackerSettings(), tmp_path)
    assert exported.manifest["graphs"]["track"]["outputs"] == ["boxes"]
    assert exported.manifest["graphs"]["track"]["inputs"][:3] == ["t0_feat", "t0_mask", "t0_pos"]
    inputs = crops(cfg, batch=2, seed=13)
    boxes, scores = onnx_outputs(OnnxTracker(exported, TrackerSettings(), threads=1), *inputs)
    np.testing.assert_allclose(boxes, torch_outputs(model, *inputs)[0], atol=1e-4, rtol=0)
    seq = make_sequences(["s"], 6, (160, 120), seed=2)[0]
    result = OnnxTracker(exported, TrackerSettings(), threads=1).track(list(seq.frames), seq.boxes_xywh[0])
    assert np.isnan(result.scores).all() and result.present.all() and result.updates == []


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["stark_s50", "stark_st50"])
def test_the_full_size_presets_export_with_the_inference_copys_outputs(preset, tmp_path):
    model, cfg = seeded_model(preset)
    exported = export_tracker(model, cfg, TrackerSettings(), tmp_path)
    inputs = crops(cfg, batch=2, seed=14)
    boxes, scores = onnx_outputs(OnnxTracker(exported, TrackerSettings()), *inputs)
    want_boxes, want_scores = torch_outputs(model, *inputs)
    np.testing.assert_allclose(boxes, want_boxes, atol=1e-4, rtol=0)
    if want_scores is not None:
        np.testing.assert_allclose(scores, want_scores, atol=1e-4, rtol=0)


def test_stark_track_with_engine_onnx_writes_the_torch_engines_boxes(tmp_path):
    import csv

    from stark.jobs.track import main as track_main
    from stark.platform.ingest.synthetic import encode_video_file

    seq = make_sequences(["video"], 10, (160, 120), seed=8)[0]
    encode_video_file(str(tmp_path / "video.mp4"), seq.frames, 25.0)
    model, _ = seeded_model("stark_tiny", seed=5)
    save_checkpoint(str(tmp_path / "tiny.pt"), make_checkpoint(model, to_dict(load_config("stark_tiny"))))
    rows = {}
    for engine in ("torch", "onnx"):
        assert track_main([str(tmp_path / "video.mp4"), "--box", ",".join(f"{v:g}" for v in seq.boxes_xywh[0]),
                           "--model", str(tmp_path / "tiny.pt"), "--config", "stark_tiny", "--engine", engine,
                           "--out", str(tmp_path / engine), "tracker.update_interval=3",
                           "tracker.score_threshold=0.0"]) == 0
        with open(tmp_path / engine / "boxes.csv") as f:
            rows[engine] = list(csv.DictReader(f))
    boxes = {e: np.array([[float(r[k]) for k in "xywh"] for r in rows[e]]) for e in rows}
    np.testing.assert_allclose(boxes["onnx"], boxes["torch"], atol=0.011)  # the CSV holds 2 decimals
    assert [r["present"] for r in rows["onnx"]] == [r["present"] for r in rows["torch"]]
