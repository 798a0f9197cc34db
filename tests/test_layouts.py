"""The layouts of issue 23: RayDINO Fig. 3a / 3c / 4a and the domain pre-training paper's Tables 2, 7 and 8, rendered
from stored runs written here (Markdown, long CSV, LaTeX) beside the papers' numbers; the macro over chosen tasks
(RayDINO's catheter groups), the transfer column mark, the lowest-is-best FNR, and the recipes' extra metrics."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrbench.errors import CxrbenchError
from cxrbench.registry import benchmark_spec
from cxrbench.resources import published_dir
from cxrbench.results.store import json_writer, run_folder, write_run
from cxrbench.tables.latex import to_latex
from cxrbench.tables.layout import GroupLayout, TableLayout
from cxrbench.tables.long_form import long_frame
from cxrbench.tables.markdown import paper_markdown
from cxrbench.tables.model import TRANSFER_MARK, best_rows
from cxrbench.tables.paper import table_from_store
from cxrbench.tables.recipes import load_recipe

NEW_TABLES = ("raydino-3a", "raydino-3c", "raydino-4a", "domain-pretraining-2", "domain-pretraining-7",
              "domain-pretraining-8")
SEEDS = 3


def _entry(values: list[float]) -> dict:
    """A stored summary of per-seed values (mean, std with ddof 1, a CI around the mean)."""
    mean = float(np.mean(values))
    return {"per_seed": {str(s): v for s, v in enumerate(values)}, "mean": mean, "std": float(np.std(values, ddof=1)),
            "ci_low": mean - 0.02, "ci_high": mean + 0.02}


def _seed_values(rng: np.random.Generator) -> list[float]:
    return [float(v) for v in rng.uniform(0.2, 0.9, SEEDS)]


def _write_run(out: Path, benchmark: str, encoder: str, head: str, metrics: list[str], seed: int) -> dict:
    """A stored run of `benchmark` with every task and the macro of each metric (random per-seed values); returns
    its metrics block."""
    rng = np.random.default_rng(seed)
    tasks = benchmark_spec(benchmark).result_columns
    block = {}
    for metric in metrics:
        entries = {task: _entry(_seed_values(rng)) for task in tasks}
        entries["macro"] = _entry(_seed_values(rng))
        block[metric] = entries
    data = {"benchmark": benchmark, "encoder": encoder, "head": head, "std_ddof": 1, "metrics": block}
    write_run(run_folder(out, benchmark, encoder, head), {"metrics.json": json_writer(data)})
    return block


def _columns_metrics(name: str) -> dict[str, list[str]]:
    """benchmark -> the metrics its columns read, from the layout (the bare benchmark metrics when none is named)."""
    layout = load_recipe(name).layout
    wanted: dict[str, list[str]] = {}
    for group in layout.groups:
        metrics = list(group.metrics) or [benchmark_spec(group.benchmark).primary_metric]
        wanted.setdefault(group.benchmark, []).extend(m for m in metrics if m not in wanted.get(group.benchmark, []))
    return wanted


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Per new table: a store with one run per (benchmark, encoder) of its recipe, and what was written."""
    made = {}
    for k, name in enumerate(NEW_TABLES):
        out = tmp_path_factory.mktemp(name)
        written = {}
        recipe = load_recipe(name)
        for j, (benchmark, metrics) in enumerate(_columns_metrics(name).items()):
            head = next(run.head for run in recipe.runs if run.benchmark == benchmark)
            encoder = recipe.runs[0].encoders[0]
            written[benchmark] = (encoder, head, _write_run(out, benchmark, encoder, head, metrics, 100 * k + j))
        made[name] = (out, written)
    return made


def _published(name: str) -> pd.DataFrame:
    return pd.read_csv(Path(published_dir()) / load_recipe(name).published.file, comment="#")


@pytest.mark.parametrize("name", NEW_TABLES)
def test_each_new_layout_renders_ours_and_the_papers_rows_in_markdown_csv_and_latex(stores, name):
    out, written = stores[name]
    layout = load_recipe(name).layout
    table = table_from_store(layout, out)
    markdown, latex, frame = paper_markdown(table), to_latex(table), long_frame(table)
    paper = _published(name)
    published_rows = [row for row in table.rows if row.kind == "published"]
    assert [row.model for row in published_rows] == paper["model"].astype(str).tolist()
    for column, i in zip(table.columns, range(len(table.columns))):
        # the paper's number in this column, read from its CSV here: the column named in the layout's `published:`
        group = next(g for g in layout.groups if g.benchmark == column.benchmark)
        csv_column = f"{group.published[column.metric][column.task]}_mean"
        for row in published_rows:
            expected = paper.loc[paper["model"].astype(str) == row.model, csv_column].iloc[0]
            scale = load_recipe(name).published.scale
            if pd.isna(expected):
                assert row.cells[i] is None
            else:
                assert row.cells[i]["mean"] == pytest.approx(expected / scale)
        ours = next(row for row in table.rows if row.kind == "ours")
        encoder, head, block = written[column.benchmark]
        if not column.members:
            assert ours.cells[i]["mean"] == pytest.approx(block[column.metric][column.task]["mean"])
        ours_rows = frame[(frame["source"] == "cxrbench") & (frame["column"] == column.title)
                          & (frame["benchmark"] == column.benchmark)]
        assert ours_rows["mean"].iloc[0] == pytest.approx(ours.cells[i]["mean"])
    first = published_rows[0]
    value = next(c for c in first.cells if c is not None)["mean"]
    assert f"{100 * value:.{layout.decimals}f}" in markdown
    assert "Deviations from the paper" in markdown and r"\begin{tabular}" in latex
    assert set(frame["layout"]) == {name}


def test_a_group_over_chosen_tasks_is_the_mean_of_its_members_per_seed(stores):
    out, written = stores["raydino-3c"]
    table = table_from_store(load_recipe("raydino-3c").layout, out)
    _, _, block = written["ranzcr-catheters"]
    ours = next(row for row in table.rows if row.kind == "ours")
    assert [c.title for c in table.columns] == ["Normal", "Borderline", "Abnormal"]
    for i, position in enumerate(["Normal", "Borderline", "Abnormal"]):
        members = [f"{tube} - {position}" for tube in ("ETT", "NGT", "CVC")]
        per_seed = np.array([[block["auprc"][m]["per_seed"][str(s)] for m in members] for s in range(SEEDS)])
        by_seed = per_seed.mean(axis=1)
        assert ours.cells[i]["mean"] == pytest.approx(by_seed.mean())
        assert ours.cells[i]["std"] == pytest.approx(np.std(by_seed, ddof=1))
        assert ours.cells[i]["ci_low"] is None  # no stored bootstrap for the subset
        assert table.columns[i].members == tuple(members)


def test_the_nih_five_class_average_sits_beside_the_stored_fourteen_class_macro(stores):
    out, written = stores["domain-pretraining-2"]
    table = table_from_store(load_recipe("domain-pretraining-2").layout, out)
    _, _, block = written["nih-cxr14"]
    ours = next(row for row in table.rows if row.kind == "ours")
    five = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion"]
    expected = np.mean([[block["auroc"][t]["per_seed"][str(s)] for t in five] for s in range(SEEDS)], axis=1).mean()
    titles = [c.title for c in table.columns]
    assert ours.cells[titles.index("NIH 5 class avg.")]["mean"] == pytest.approx(expected)
    assert ours.cells[titles.index("NIH 14 class avg.")]["mean"] == pytest.approx(block["auroc"]["macro"]["mean"])


def test_a_macro_is_left_blank_when_a_member_lacks_a_seed(tmp_path):
    block = _write_run(tmp_path, "ranzcr-catheters", "raydino", "raydino-grid", ["auprc"], 7)
    member = block["auprc"]["NGT - Abnormal"]
    del member["per_seed"]["2"]
    member["mean"] = float(np.mean(list(member["per_seed"].values())))  # a file that agrees with itself
    write_run(run_folder(tmp_path, "ranzcr-catheters", "raydino", "raydino-grid"),
              {"metrics.json": json_writer({"benchmark": "ranzcr-catheters", "encoder": "raydino",
                                            "head": "raydino-grid", "std_ddof": 1, "metrics": block})})
    table = table_from_store(load_recipe("raydino-3c").layout, tmp_path)
    ours = next(row for row in table.rows if row.kind == "ours")
    assert ours.cells[2] is None and ours.cells[0] is not None


def test_transfer_columns_carry_the_mark_and_a_legend_line_others_do_not(stores):
    out, _ = stores["domain-pretraining-2"]
    table = table_from_store(load_recipe("domain-pretraining-2").layout, out)
    for column in table.columns:
        spec = benchmark_spec(column.benchmark)
        assert column.title.endswith(TRANSFER_MARK) == (spec.transfer is not None), column.title
    markdown = paper_markdown(table)
    for name in ("nih-to-vindr", "nih-to-padchest", "nih-to-chexpert"):
        transfer = benchmark_spec(name).transfer
        assert f"{TRANSFER_MARK} {name}: heads trained on {transfer.train}, scored on {transfer.test}" in markdown
    assert f"{TRANSFER_MARK} nih-cxr14" not in markdown
    assert r"\dashrightarrow" in to_latex(table)


def test_the_lowest_fnr_is_marked_best(stores):
    out, _ = stores["domain-pretraining-7"]
    table = table_from_store(load_recipe("domain-pretraining-7").layout, out)
    best = best_rows(table)
    for i, column in enumerate(table.columns):
        values = {r: round(100 * row.cells[i]["mean"], 2) for r, row in enumerate(table.rows)
                  if row.cells[i] is not None and not row.variant}
        wanted = min(values.values()) if column.metric.startswith("fnr") else max(values.values())
        assert best[i] == {r for r, v in values.items() if v == wanted}, column.title


def test_a_macro_member_that_is_not_a_task_names_the_layout_and_the_fix(tmp_path):
    layout = TableLayout(title="t", name="bad", groups=(GroupLayout(
        "ranzcr-catheters", metrics=("auprc",), per_task=False, aggregate=None,
        macros={"Normal": ("ETT - Normal", "NGT-Normal")}),))
    _write_run(tmp_path, "ranzcr-catheters", "raydino", "linear", ["auprc"], 1)
    with pytest.raises(CxrbenchError, match=re.escape("'NGT-Normal' is not a task of ranzcr-catheters")) as error:
        table_from_store(layout, tmp_path)
    assert "macros:" in str(error.value) and "'bad'" in str(error.value)


def test_the_tables_sharing_nih_to_chexpert_runs_score_the_same_extra_metrics():
    """Tables 2, 7 and 8 read the same run folders: each entry asks for every extra metric, whichever runs first."""
    asked = {name: {run.metrics for run in load_recipe(name).runs if run.benchmark == "nih-to-chexpert"}
             for name in ("domain-pretraining-2", "domain-pretraining-7", "domain-pretraining-8")}
    assert all(found == {("subset_accuracy", "fnr", "selective_auroc")} for found in asked.values()), asked


def test_reproduce_passes_a_recipe_entrys_metrics_to_the_evaluation(tmp_path):
    """A recipe entry's extra metrics reach the RunSpec reproduce hands to the fan-out, and from there the evaluation."""
    from cxrbench.runs.fanout import Storage, _evaluation
    from cxrbench.runs.reproduce import ReproduceOptions, unit_spec
    from cxrbench.tables.recipes import plan_runs

    planned = [run for run in plan_runs(load_recipe("domain-pretraining-7"), tmp_path) if run.entry.tag is None]
    spec = unit_spec(tuple(run for run in planned if run.encoder == planned[0].encoder
                           and run.entry is planned[0].entry), ReproduceOptions(tmp_path))
    assert spec.metrics == ("subset_accuracy", "fnr", "selective_auroc")
    assert list(_evaluation(spec, Storage(tmp_path)).metrics) == ["subset_accuracy", "fnr", "selective_auroc"]
