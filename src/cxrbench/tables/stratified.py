"""A run's stratified block (`stats.stratified`) as files: `stratified.csv` (long form, raw values) and a section of
`table.md` per attribute (the primary metric per group with its CI, the false-negative rate at the validation
threshold, and the average / worst group / gap lines)."""

from __future__ import annotations

import pandas as pd

from cxrbench.registry import metric_spec
from cxrbench.stats.summary import MACRO
from cxrbench.tables.markdown import to_markdown
from cxrbench.tables.runs import format_entry

TOO_SMALL = "too few patients"


def stratified_long_table(metrics: dict) -> pd.DataFrame:
    """attribute, group, patients, images, too_small, metric, task, mean, std, ci_low, ci_high, fnr: one row per
    group, metric and task (and macro); a group too small to report has one row, without numbers."""
    rows = []
    for attribute, block in metrics["stratified"]["attributes"].items():
        for group in block["groups"]:
            common = {"attribute": attribute, "group": group["group"], "patients": group["patients"],
                      "images": group["images"], "too_small": group["too_small"]}
            if group["too_small"]:
                rows.append(common)
                continue
            for metric, entries in group["metrics"].items():
                for task, entry in entries.items():
                    fnr = block["underdiagnosis"].get(task, {}).get("groups", {}).get(group["group"])
                    rows.append({**common, "metric": metric, "task": task,
                                 **{k: entry[k] for k in ("mean", "std", "ci_low", "ci_high")}, "fnr": fnr})
    return pd.DataFrame(rows)


def stratified_frames(metrics: dict) -> list[tuple[str, pd.DataFrame, str]]:
    """Per attribute: its title, a frame with a row per group (patients, images, the primary metric's macro value
    with its CI, and the macro false-negative rate where thresholds were chosen) and a line with the average, the
    worst group and the gaps. What table.md and the HTML report show."""
    block = metrics["stratified"]
    metric = metrics["primary_metric"]
    heading = metric_spec(metric).heading
    out = []
    for attribute, part in block["attributes"].items():
        fnr = part["underdiagnosis"].get(MACRO, {}).get("groups", {})
        rows = {}
        for group in part["groups"]:
            value = TOO_SMALL if group["too_small"] else format_entry(group["metrics"].get(metric, {}).get(MACRO), metric)
            rows[group["group"]] = {"patients": group["patients"], "images": group["images"], heading: value,
                                    **({"FNR at val. threshold": _percent(fnr.get(group["group"]))} if fnr else {})}
        rows["(unknown)"] = {"patients": part["unknown"]["patients"], "images": part["unknown"]["images"], heading: "–",
                             **({"FNR at val. threshold": "–"} if fnr else {})}
        line = ""
        summary = part["summary"].get(metric, {}).get(MACRO)
        if summary:
            scale = metric_spec(metric).scale
            group_mean = summary.get("group_mean", summary.get("average"))  # 'average' before cxrbench 0.1 stored it so
            line = (f"Mean of the {summary['groups']} group means {scale * group_mean:.1f}; worst "
                    f"{summary['worst_group']} {scale * summary['worst']:.1f}; gap to {summary['best_group']} "
                    f"{scale * summary['gap']:.1f}.")
        if fnr:
            under = part["underdiagnosis"][MACRO]
            line += f" Underdiagnosis gap (FNR) {100 * under['gap']:.1f} points, highest in {under['worst_group']}."
        out.append((f"{attribute} ({part['column']})", pd.DataFrame.from_dict(rows, orient="index"), line.strip()))
    return out


def stratified_markdown(metrics: dict) -> str:
    """table.md's section: per attribute its group table and summary line (`stratified_frames`)."""
    block = metrics["stratified"]
    text = (f"\n## By patient group ({metric_spec(metrics['primary_metric']).heading}, macro; groups under "
            f"{block['min_group_patients']} test patients are not reported)\n")
    for title, frame, line in stratified_frames(metrics):
        text += f"\n### {title}\n\n" + to_markdown(frame, "group") + (f"\n{line}\n" if line else "")
    return text


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"
