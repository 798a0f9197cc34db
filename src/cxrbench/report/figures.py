"""The report's pictures: PNG files under DEST/figures/, drawn with matplotlib's Agg canvas or copied from the run.

Figures are drawn on `matplotlib.figure.Figure` with an Agg canvas, never through pyplot: no display is needed, no
global figure state is kept, and nothing depends on the user's backend setting. File names are made here (a
counter and a slug), never taken from the results folder, so any name a run chose is safe in a URL.
"""

from __future__ import annotations

import io
import math
import shutil
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxrbench.metrics.calibration import ExpectedCalibrationError
from cxrbench.report.curves import TargetCurves
from cxrbench.report.html import slug
from cxrbench.report.referral import ReferralCurve
from cxrbench.report.reliability import Reliability
from cxrbench.targets import target_kind

FOLDER = "figures"
PAIRS_PER_ROW = 2  # ROC + PR panel pairs per row of a run's curve figure
LABEL_CHARACTERS = 48  # a forest plot's row labels wrap onto lines of this many characters (never cut)
RELIABILITY_PER_ROW = 4
VERDICT_COLOURS = {"better": "#1a7f37", "worse": "#c62828", "not significant": "#6e6e6e", "not tested": "#9e9e9e"}


class FigureFolder:
    """DEST/figures/ of the report being written: saves drawn figures and copies stored pictures."""

    def __init__(self, report: Path):
        self.report = report
        (report / FOLDER).mkdir(parents=True, exist_ok=True)
        self.count = 0

    def _path(self, hint: str) -> tuple[Path, str]:
        self.count += 1
        name = f"{self.count:03d}-{slug(hint)}.png"
        return self.report / FOLDER / name, f"{FOLDER}/{name}"

    def save(self, png: bytes, hint: str) -> str:
        """Write PNG bytes; returns the path relative to the report folder (for <img src>)."""
        path, relative = self._path(hint)
        path.write_bytes(png)
        return relative

    def copy(self, source: Path, hint: str) -> str:
        path, relative = self._path(hint)
        shutil.copyfile(source, path)
        return relative


def _text(value: object) -> str:
    """User text for matplotlib: '$' would start mathtext (and fail on a lone one)."""
    return str(value).replace("$", r"\$")


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _figure(width: float, height: float):
    """A figure of fixed margins (set by `_axes`): matplotlib's constrained layout costs several times the drawing
    on a figure of many panels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _axes(figure, rows: int, columns: int, left: float, bottom: float = 0.5, top: float = 0.6, right: float = 0.2,
          wspace: float = 0.35, hspace: float = 0.6) -> np.ndarray:
    """A rows x columns grid of axes with margins in inches (`wspace`, `hspace`: gaps as fractions of a panel)."""
    width, height = figure.get_size_inches()
    return figure.subplots(rows, columns, squeeze=False, gridspec_kw={
        "left": left / width, "right": 1 - right / width, "bottom": bottom / height, "top": 1 - top / height,
        "wspace": wspace, "hspace": hspace})


def _small(ax) -> None:
    """Few ticks and small labels: the panels are small multiples."""
    ax.set_xticks([0, 0.5, 1])
    ax.set_yticks([0, 0.5, 1])
    ax.tick_params(labelsize="x-small")
    ax.xaxis.label.set_fontsize("x-small")
    ax.yaxis.label.set_fontsize("x-small")


def forest_plot(rows: pd.DataFrame, names: Sequence[str], title: str, axis_label: str, scale: float) -> bytes:
    """The forest plot of `forest_figure` as PNG bytes."""
    return _png(forest_figure(rows, names, title, axis_label, scale))


def forest_figure(rows: pd.DataFrame, names: Sequence[str], title: str, axis_label: str, scale: float):
    """One line per comparison row: the difference (point) and its CI (bar) on the metric's display `scale`, coloured
    by verdict, a vertical line at no difference; each row labelled 'name: verdict'.

    Labels are never cut: two rows that differ only at the end of a long name ("Pleural effusion" and "Pleural
    thickening" after a long encoder label) must stay apart. A long label wraps at word boundaries onto
    `LABEL_CHARACTERS`-wide lines, and the left margin is measured from the rendered text, not estimated from a
    character count (which clipped the first letters of wide labels)."""
    labels = [textwrap.fill(f"{name}: {verdict}", LABEL_CHARACTERS, break_long_words=True, break_on_hyphens=False)
              for name, verdict in zip(names, rows["verdict"])]
    lines = [label.count("\n") + 1 for label in labels]
    heights = np.array([0.16 + 0.18 * n for n in lines])  # inches per row
    centres = heights.sum() - (np.cumsum(heights) - heights / 2)  # first row on top
    figure = _figure(8.0, 1.1 + heights.sum())
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    for position, (_, row) in zip(centres, rows.iterrows()):
        colour = VERDICT_COLOURS[row["verdict"]]
        if pd.notna(row["ci_low"]) and pd.notna(row["ci_high"]):
            ax.plot([scale * row["ci_low"], scale * row["ci_high"]], [position, position], color=colour, linewidth=2)
        ax.plot([scale * row["diff"]], [position], "o", color=colour, markersize=6)
    ax.axvline(0.0, color="black", linewidth=1, linestyle="--")
    ax.set_yticks(centres, [_text(label) for label in labels], fontsize="small")
    ax.set_ylim(0.0, heights.sum())
    ax.set_xlabel(_text(axis_label))
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(_text(title), fontsize="medium")
    renderer = figure.canvas.get_renderer()
    widest = max(label.get_window_extent(renderer).width for label in ax.get_yticklabels()) / figure.dpi
    left, right, bottom, top = widest + 0.25, 0.3, 0.55, 0.45
    figure.set_size_inches(left + 5.0 + right, bottom + heights.sum() + top)
    width, height = figure.get_size_inches()
    ax.set_position((left / width, bottom / height, 5.0 / width, heights.sum() / height))
    return figure


def curves_figure(curves: Sequence[TargetCurves], title: str) -> bytes:
    """A ROC and a PR panel per target (seed-mean curve, bootstrap band, chance line), `PAIRS_PER_ROW` targets a row."""
    columns = min(PAIRS_PER_ROW, len(curves))
    rows = math.ceil(len(curves) / columns)
    figure = _figure(0.3 + 2.7 * 2 * columns, 0.6 + 2.6 * rows)
    axes = _axes(figure, rows, 2 * columns, left=0.5)
    for i, item in enumerate(curves):
        roc_ax, pr_ax = axes[i // columns, 2 * (i % columns)], axes[i // columns, 2 * (i % columns) + 1]
        _band(roc_ax, item.roc.grid, item.roc, "C0")
        roc_ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
        roc_ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false-positive rate", ylabel="true-positive rate")
        roc_ax.set_title(_text(f"{item.target}: ROC"), fontsize="small")
        _band(pr_ax, item.pr.grid, item.pr, "C1")
        if np.isfinite(item.prevalence):
            pr_ax.axhline(item.prevalence, color="grey", linewidth=0.8, linestyle=":")
        pr_ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
        pr_ax.set_title(_text(f"{item.target}: PR"), fontsize="small")
    for ax in axes.flat[2 * len(curves):]:
        ax.set_visible(False)
    figure.suptitle(_text(title), fontsize="medium")
    return _png(figure)


def _band(ax, grid: np.ndarray, band, colour: str) -> None:
    if np.isfinite(band.low).any():
        ax.fill_between(grid, band.low, band.high, color=colour, alpha=0.25, linewidth=0)
    ax.plot(grid, band.curve, color=colour, linewidth=1.5)
    _small(ax)


def reliability_figure(items: Sequence[Reliability], title: str) -> bytes:
    """Observed frequency against mean probability per bin (marker area grows with the bin's rows), the diagonal of
    perfect calibration, and the ECE in each panel's title."""
    columns = min(RELIABILITY_PER_ROW, len(items))
    rows = math.ceil(len(items) / columns)
    figure = _figure(0.3 + 2.9 * columns, 0.6 + 3.0 * rows)
    axes = _axes(figure, rows, columns, left=0.5, top=0.85, hspace=0.7)
    metric = ExpectedCalibrationError
    for ax, item in zip(axes.flat, items):
        bins = item.bins
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
        ax.plot(bins["confidence"], bins["observed"], color="C2", linewidth=1)
        sizes = 10 + 90 * bins["count"] / bins["count"].max()
        ax.scatter(bins["confidence"], bins["observed"], s=sizes, color="C2", zorder=3)
        axis = "top-label confidence" if target_kind(item.kind).one_hot else "mean predicted probability"
        ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), xlabel=axis, ylabel="observed frequency")
        _small(ax)
        ece = f"{metric.scale * item.ece:.{metric.decimals}f}{metric.unit}"
        ax.set_title(_text(f"{item.target}\nECE {ece} (n={item.rows:,})"), fontsize="small")
    for ax in axes.flat[len(items):]:
        ax.set_visible(False)
    figure.suptitle(_text(title), fontsize="medium")
    return _png(figure)


def referral_figure(curves: Sequence[ReferralCurve], title: str) -> bytes:
    """AUROC against referral rate: each target a thin line, the macro average thick with its bootstrap band."""
    figure = _figure(6.0, 4.0)
    ax = _axes(figure, 1, 1, left=0.7, right=2.0, top=0.5)[0, 0]
    for i, curve in enumerate(curves):
        macro = curve is curves[-1]
        colour = "black" if macro else f"C{i % 10}"
        if macro and np.isfinite(curve.low).any():
            ax.fill_between(100 * curve.rates, curve.low, curve.high, color="grey", alpha=0.25, linewidth=0)
        ax.plot(100 * curve.rates, curve.mean, color=colour, linewidth=2.0 if macro else 1.0, marker="o",
                markersize=3, label=_text("Macro" if macro else curve.target))
    ax.set(xlabel="predictions referred to the expert (%)", ylabel="AUROC", ylim=(None, 1.005))
    ax.tick_params(labelsize="x-small")
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    figure.suptitle(_text(title), fontsize="medium")
    return _png(figure)
