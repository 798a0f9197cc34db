"""An explain run's summary for people and for JSON: its Markdown table, the published figure it sits beside, and the
conversion of numpy numbers and NaN into what metrics.json stores (strict JSON, NaN as null)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def published_explainability() -> dict | None:
    """RayDINO's published VinDr-CXR explainability figure (results/published/raydino_headline.csv), as fractions."""
    from cxrbench.resources import published_dir

    path = published_dir() / "raydino_headline.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path, comment="#")
    row = table[table["task"].astype(str).str.strip().eq("explainability")]
    if row.empty:
        return None
    row = row.iloc[0]
    return {"model": "RayDINO (ViT-L/16)", "benchmark": str(row["benchmark"]), "metric": str(row["metric"]),
            "macro_accuracy": float(row["raydino"]) / 100, "ci_low": float(row["ci_low"]) / 100,
            "ci_high": float(row["ci_high"]) / 100, "best_competitor": str(row["best_competitor"]),
            "competitor_delta": str(row["competitor_delta"]), "source": str(path.name)}


def explain_markdown(summary: dict) -> str:
    """A short table: finding, boxes, images, accuracy (%, mean ± std over seeds), then the macro accuracy."""
    def pct(mean, std=None):
        if mean is None:
            return "–"
        return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")

    lines = [f"# Explainability: {summary.get('benchmark', '')} · {summary.get('encoder', '')} · {summary.get('head', '')}",
             "", f"Argmax attention patch overlaps the box by ≥ {summary['protocol']['min_overlap']:g} patch "
             f"(per box), seeds {summary['seeds']}.", "",
             "| finding | boxes | images | accuracy (%) |", "|---|---:|---:|---:|"]
    for name, item in plain(summary)["findings"].items():
        lines.append(f"| {name} | {item['boxes']} | {item['images']} | {pct(item['accuracy_mean'], item['accuracy_std'])} |")
    macro = plain(summary)["macro_accuracy"]
    ci = f" [{100 * macro['ci_low']:.1f}–{100 * macro['ci_high']:.1f}]" if macro["ci_low"] is not None else ""
    lines.append(f"| **macro** | | | **{pct(macro['mean'], macro['std'])}**{ci} |")
    published = summary.get("published")
    if published:
        lines += ["", f"Published ({published['model']}): {100 * published['macro_accuracy']:.1f} "
                      f"[{100 * published['ci_low']:.1f}–{100 * published['ci_high']:.1f}]."]
    return "\n".join(lines) + "\n"


def plain(value):
    """JSON-safe: NaN -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value

