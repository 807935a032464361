"""Success and precision plots (PNG) for one or several trackers on one split.

Drawn on a bare matplotlib Figure with the Agg canvas (no pyplot, no global backend switch), so
plots can be made from any thread or Ray worker without a display. Curves and scores come from
`stark.platform.evaluate.metrics.BenchmarkMetrics`; axes and legends use fractions, like the scores.
Trackers are listed best first, as the GOT-10k toolkit and pytracking do:

- success plot: success rate vs overlap threshold 0..1; legend "[AUC x]" under OPE (mean of the
  21 points) or "[AO x]" under GOT-10k (the toolkit's legend);
- precision plot: precision vs location error threshold 0..50 px; legend "[P@20 x]";
- normalised precision plot: vs normalised error 0..0.5; legend "[P_norm@0.2 x]".

A tracker whose name starts with "static box" (report.STATIC_BOX, the first frame's box on every frame)
is the baseline: drawn grey and dashed, whatever its rank, so a model's curve reads against it.
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..storage import write_file_atomic
from .metrics import BenchmarkMetrics, CENTER_THRESHOLDS_PX, NORM_CENTER_THRESHOLDS, OVERLAP_THRESHOLDS, PRECISION_INDEX

_LINE_STYLES = ("-", "--", "-.", ":")
BASELINE_PREFIX = "static box"


def plot_success(results: Mapping[str, BenchmarkMetrics], path: Path, *, title: str = "Success plot") -> Path:
    """{tracker name: metrics} -> PNG at path."""
    def score(m: BenchmarkMetrics) -> tuple[str, float]:
        return ("AO", m.scores["ao"]) if m.protocol == "got10k" else ("AUC", m.scores["auc"])
    curves = {name: (m.success_curve, *score(m)) for name, m in results.items()}
    return _plot(curves, OVERLAP_THRESHOLDS, path, title=title, xlabel="Overlap threshold",
                 ylabel="Success rate", xlim=(0.0, 1.0), legend_loc="lower left")


def plot_precision(results: Mapping[str, BenchmarkMetrics], path: Path, *, normalized: bool = False,
                   title: str | None = None) -> Path:
    """{tracker name: metrics} -> PNG at path; `normalized` plots the normalised precision."""
    if normalized:
        curves = {name: (m.norm_precision_curve, "P_norm@0.2", float(m.norm_precision_curve[PRECISION_INDEX]))
                  for name, m in results.items()}
        return _plot(curves, NORM_CENTER_THRESHOLDS, path, title=title or "Normalized precision plot",
                     xlabel="Normalized location error threshold", ylabel="Precision", xlim=(0.0, 0.5),
                     legend_loc="lower right")
    curves = {name: (m.precision_curve, "P@20", float(m.precision_curve[PRECISION_INDEX]))
              for name, m in results.items()}
    return _plot(curves, CENTER_THRESHOLDS_PX, path, title=title or "Precision plot",
                 xlabel="Location error threshold [pixels]", ylabel="Precision", xlim=(0.0, 50.0),
                 legend_loc="lower right")


def plot_benchmark(results: Mapping[str, BenchmarkMetrics], out_dir: Path, *, benchmark: str = "") -> dict[str, Path]:
    """success.png, precision.png and norm_precision.png in out_dir; returns {plot: path}."""
    out_dir = Path(out_dir)
    suffix = f" on {benchmark}" if benchmark else ""
    return {
        "success": plot_success(results, out_dir / "success.png", title=f"Success plot{suffix}"),
        "precision": plot_precision(results, out_dir / "precision.png", title=f"Precision plot{suffix}"),
        "norm_precision": plot_precision(results, out_dir / "norm_precision.png", normalized=True,
                                         title=f"Normalized precision plot{suffix}"),
    }


def _plot(curves: dict, thresholds, path: Path, *, title: str, xlabel: str, ylabel: str,
          xlim: tuple[float, float], legend_loc: str) -> Path:
    if not curves:
        raise ValueError("nothing to plot: no trackers given")
    fig = Figure(figsize=(6.0, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ranked = sorted(curves.items(), key=lambda item: -_sortable(item[1][2]))
    for i, (name, (curve, label, value)) in enumerate(ranked):
        style = ({"color": "0.45", "linestyle": "--", "linewidth": 1.5} if name.startswith(BASELINE_PREFIX)
                 else {"linestyle": _LINE_STYLES[(i // 10) % len(_LINE_STYLES)], "linewidth": 2})
        ax.plot(thresholds, curve, label=f"{name} [{label} {value:.3f}]", **style)
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=xlim, ylim=(0.0, 1.0), title=title)
    ax.grid(True, linestyle="-.")
    ax.legend(loc=legend_loc, fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return write_file_atomic(Path(path), buffer.getvalue())


def _sortable(value: float) -> float:
    return value if value == value else float("-inf")  # NaN last


def plot_tuning_map(update_intervals, score_thresholds, values, path: Path, *, metric: str,
                    note: str | None = None, complete=None, grid: tuple[list, list] | None = None) -> Path:
    """The tuned metric over update_interval x score_threshold. Inputs are per-trial sequences of equal
    length; `complete` says per trial whether it ran every chunk (default: all did); `note` is a second
    title line. With `grid` = (update intervals, score thresholds) of a grid search, every cell is drawn:
    a completed trial's score, a partial one (stopped early: its score over the chunks it ran) marked
    "(partial)" and hatched, or an empty cell where no trial reported. Otherwise (random/optuna) a scatter
    coloured by the metric, partial trials hollow."""
    intervals = [int(v) for v in update_intervals]
    thresholds = [float(v) for v in score_thresholds]
    values = [float(v) for v in values]
    complete = [True] * len(values) if complete is None else [bool(c) for c in complete]
    if not values and grid is None:
        raise ValueError("nothing to plot: no finished trials")
    fig = Figure(figsize=(6.5, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if grid is not None or len(set(intervals)) * len(set(thresholds)) == len(values):
        xs = sorted({int(v) for v in grid[0]} | set(intervals)) if grid else sorted(set(intervals))
        ys = sorted({float(v) for v in grid[1]} | set(thresholds)) if grid else sorted(set(thresholds))
        cells = [[float("nan")] * len(xs) for _ in ys]
        done = [[False] * len(xs) for _ in ys]
        for u, t, v, c in zip(intervals, thresholds, values, complete):
            cells[ys.index(t)][xs.index(u)], done[ys.index(t)][xs.index(u)] = v, c
        image = ax.imshow(cells, origin="lower", aspect="auto", cmap="viridis")
        ax.set_facecolor("0.92")  # an empty cell (NaN) shows the background
        ax.set_xticks(range(len(xs)), [str(x) for x in xs])
        ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
        for row, line in enumerate(cells):
            for col, v in enumerate(line):
                if v != v:
                    ax.text(col, row, "no result", ha="center", va="center", fontsize=7, color="0.4")
                elif done[row][col]:
                    ax.text(col, row, f"{v:.3f}", ha="center", va="center", fontsize=7, color="white")
                else:
                    ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, hatch="//", edgecolor="white",
                                           linewidth=0))
                    ax.text(col, row, f"{v:.3f}\n(partial)", ha="center", va="center", fontsize=7, color="white")
    else:
        full = [i for i, c in enumerate(complete) if c]
        part = [i for i, c in enumerate(complete) if not c]
        image = ax.scatter([intervals[i] for i in full], [thresholds[i] for i in full], c=[values[i] for i in full],
                           cmap="viridis", s=60, label="completed")
        if part:
            ax.scatter([intervals[i] for i in part], [thresholds[i] for i in part], s=60, facecolors="none",
                       edgecolors="0.3", label="partial (stopped early)")
            ax.legend(loc="best", fontsize="small")
    fig.colorbar(image, ax=ax, label=metric)
    title = f"{metric} over the tracker settings" + (f"\n{note}" if note else "")
    ax.set(xlabel="update_interval (frames)", ylabel="score_threshold", title=title)
    ax.title.set_fontsize(9 if note else 12)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return write_file_atomic(Path(path), buffer.getvalue())
