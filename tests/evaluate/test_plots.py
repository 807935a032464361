"""Success and precision plots are written as valid PNG images for one or several trackers."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stark.platform.evaluate.metrics import aggregate, sequence_metrics
from stark.platform.evaluate.plots import plot_benchmark, plot_precision, plot_success


def split(protocol: str, shift: float, seed: int):
    rng = np.random.default_rng(seed)
    per_sequence = {}
    for i in range(3):
        gt = np.tile([50.0, 40.0, 60.0, 30.0], (20, 1)) + rng.uniform(-5, 5, (20, 4))
        pred = gt + rng.normal(0.0, shift, (20, 4)) * [1, 1, 0.2, 0.2]
        per_sequence[f"seq{i}"] = sequence_metrics(pred, gt, protocol=protocol)
    return aggregate(per_sequence)


def assert_png(path, min_side: int = 300):
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        assert min_side <= width <= 3000 and min_side <= height <= 3000
        assert np.asarray(image.convert("L")).std() > 0  # something was drawn


def test_success_and_precision_plots_compare_trackers_side_by_side(tmp_path):
    results = {"STARK-ST50": split("ope", 2.0, 0), "STARK-S50": split("ope", 8.0, 1)}
    assert_png(plot_success(results, tmp_path / "success.png"))
    assert_png(plot_precision(results, tmp_path / "precision.png"))
    assert_png(plot_precision(results, tmp_path / "norm_precision.png", normalized=True))


def test_benchmark_plots_for_one_got10k_tracker(tmp_path):
    written = plot_benchmark({"STARK-ST50": split("got10k", 3.0, 2)}, tmp_path / "plots", benchmark="GOT-10k val")
    assert sorted(written) == ["norm_precision", "precision", "success"]
    for path in written.values():
        assert_png(path)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["norm_precision.png", "precision.png",
                                                                     "success.png"]


def test_plotting_nothing_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no trackers"):
        plot_success({}, tmp_path / "empty.png")


def test_a_tuning_heatmap_has_every_grid_cell_completed_partial_or_empty(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from stark.platform.evaluate.plots import plot_tuning_map

    texts = []
    original = Axes.text
    monkeypatch.setattr(Axes, "text", lambda self, x, y, s, **kw: texts.append(s) or original(self, x, y, s, **kw))
    # a 3 x 3 grid of which ASHA completed two trials, stopped two early, and seven never reported
    path = plot_tuning_map([5, 10, 5, 25], [0.1, 0.1, 0.2, 0.05], [0.61, 0.55, 0.40, 0.38], tmp_path / "heatmap.png",
                           metric="ao", complete=[True, True, False, False], grid=([5, 10, 25], [0.05, 0.1, 0.2]))
    assert_png(path)
    assert sorted(t for t in texts if "(partial)" not in t and t != "no result") == ["0.550", "0.610"]
    assert sum("(partial)" in t for t in texts) == 2 and texts.count("no result") == 5
