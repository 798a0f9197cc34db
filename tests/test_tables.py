"""The table model (`cxrbench.tables`): a paper table added by one YAML and one CSV in a scanned folder is found by
every command and rendered; Markdown, CSV and LaTeX of one model carry the same numbers; bad YAML keys are named with
a did-you-mean and the file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.errors import CxrbenchError
from cxrbench.results.store import json_writer, run_folder, write_run
from cxrbench.tables.latex import to_latex
from cxrbench.tables.layout import GroupLayout, TableLayout
from cxrbench.tables.long_form import long_frame
from cxrbench.tables.markdown import paper_markdown
from cxrbench.tables.model import OURS, PUBLISHED, Column, PaperTable, Row
from cxrbench.tables.recipes import TABLES_DIR_VARIABLE, get_layout, load_recipe, recipe_names

runner = CliRunner()

CSV = """# A made-up paper's Table 9: macro AUROC (%) on VinDr-CXR, mean and std over seeds.
model,demo_auroc_mean,demo_auroc_std
RAD-DINO,81.3,0.4
Another net,70.4,1.5
"""

TABLE = """table: demo-9
source: "A demo paper, Table 9: VinDr-CXR macro AUROC"
runs:
  - {benchmark: vindr, head: linear, encoders: [rad-dino]}
published:
  file: demo9.csv
  source: "Demo, Table 9 (%, mean and std over seeds)"
  encoders: {rad-dino: RAD-DINO}
layout:
  title: "Demo Table 9: VinDr-CXR, macro AUROC (%)"
  groups:
    - {benchmark: vindr, title: VinDr-CXR, metrics: [auroc], aggregate: macro AUROC, per_task: false,
       published: {auroc: {macro: demo_auroc}}}
deviations:
  - {what: "Probe on cached features", why: "The demo paper trains online (its Section 9)."}
"""


def _tables_folder(root: Path, table: str = TABLE, name: str = "demo-9") -> Path:
    """ROOT/recipes/NAME.yaml and ROOT/published/demo9.csv: one YAML and one CSV, side by side as in results/."""
    (root / "recipes").mkdir(parents=True, exist_ok=True)
    (root / "published").mkdir(exist_ok=True)
    (root / "published" / "demo9.csv").write_text(CSV, encoding="utf-8")
    (root / "recipes" / f"{name}.yaml").write_text(table, encoding="utf-8")
    return root / "recipes"


def _store_run(out: Path, seeds: list[float]) -> float:
    """A stored vindr run of rad-dino whose macro AUROC per seed is `seeds`; returns their mean (numpy)."""
    mean, std = float(np.mean(seeds)), float(np.std(seeds, ddof=1))
    entry = {"per_seed": {str(i): v for i, v in enumerate(seeds)}, "mean": mean, "std": std, "ci_low": mean - 0.03,
             "ci_high": mean + 0.03, "bootstrap_median": mean}
    metrics = {"benchmark": "vindr", "encoder": "rad-dino", "head": "linear", "metrics": {"auroc": {"macro": entry}}}
    write_run(run_folder(out, "vindr", "rad-dino", "linear"), {"metrics.json": json_writer(metrics)})
    return mean


def test_a_paper_table_added_as_one_yaml_and_one_csv_is_found_and_rendered(tmp_path, monkeypatch):
    monkeypatch.setenv(TABLES_DIR_VARIABLE, str(_tables_folder(tmp_path / "results")))
    assert recipe_names() == ["demo-9"]
    listing = runner.invoke(app, ["list", "tables"])
    assert listing.exit_code == 0 and "demo-9" in listing.output, listing.output

    out = tmp_path / "out"
    ours = _store_run(out, [0.84, 0.86, 0.85])
    result = runner.invoke(app, ["table", "demo-9", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "tables" / "demo-9.csv")
    paper = pd.read_csv(tmp_path / "results" / "published" / "demo9.csv", comment="#").set_index("model")
    mine = frame[frame["source"] == "cxrbench"].iloc[0]
    assert mine["mean"] == pytest.approx(ours)
    assert mine["published_mean"] == pytest.approx(paper.loc["RAD-DINO", "demo_auroc_mean"] / 100)
    assert mine["diff"] == pytest.approx(ours - paper.loc["RAD-DINO", "demo_auroc_mean"] / 100)
    published = frame[frame["source"] != "cxrbench"].set_index("model")
    assert published["mean"].to_dict() == pytest.approx((paper["demo_auroc_mean"] / 100).to_dict())
    assert published["std"].to_dict() == pytest.approx((paper["demo_auroc_std"] / 100).to_dict())
    markdown = (out / "tables" / "demo-9.md").read_text()
    assert markdown.startswith("# Demo Table 9: VinDr-CXR, macro AUROC (%)")
    assert f"{round(100 * ours, 1):.1f}" in markdown and "81.3 ± 0.4" in markdown and "70.4 ± 1.5" in markdown
    assert "- **Probe on cached features**: The demo paper trains online (its Section 9)." in markdown
    assert r"\textbf{Probe on cached features}" in (out / "tables" / "demo-9.tex").read_text()

    everything = runner.invoke(app, ["table", "--all", "--out", str(out)])
    assert everything.exit_code == 0 and "demo-9:" in everything.output, everything.output


def _model() -> PaperTable:
    """One table by hand: two columns, our row with marks (pretraining overlap, a verdict, a small worst group) and a
    published row with a missing cell."""
    layout = TableLayout(title="Hand-made", groups=(GroupLayout("vindr"),), name="hand-made")
    columns = [Column("G", "A", "vindr", "auroc", "a", None), Column("G", "B", "vindr", "auroc", "b", None)]
    ours = Row(OURS, "enc / linear", [{"mean": 0.81234, "std": 0.0123, "ci_low": 0.79, "ci_high": 0.83},
                                      {"mean": 0.4449, "std": None, "ci_low": None, "ci_high": None,
                                       "small_group": {"group": "g", "patients": 3}}],
               encoder="enc", head="linear", overlap=[("NIH",), ()], verdicts=["better", None])
    paper = Row(PUBLISHED, "Paper (published)", [{"mean": 0.9051, "std": 0.004, "ci_low": None, "ci_high": None}, None],
                model="Paper", overlap=[(), ()])
    return PaperTable(layout, columns, [ours, paper], ["Paper, Table 1"], ["a note"], versus="ref", deviations=())


def test_markdown_csv_and_latex_of_one_model_carry_the_same_numbers():
    table = _model()
    markdown, latex, frame = paper_markdown(table), to_latex(table), long_frame(table)
    md_rows = [line for line in markdown.splitlines() if line.startswith("| enc") or line.startswith("| Paper")]
    tex_rows = [line for line in latex.splitlines() if line.startswith("enc") or line.startswith("Paper")]
    assert len(md_rows) == len(tex_rows) == 2
    for md, tex in zip(md_rows, tex_rows):
        md_cells = [c.strip() for c in md.strip("|").split("|")][1:]
        tex_cells = [c.strip() for c in tex.removesuffix(r"\\").split("&")][1:]
        label = md.split("|")[1].strip()
        expected = frame[frame["model"] == ("enc" if label.startswith("enc") else "Paper")].set_index("column")
        for title, md_cell, tex_cell in zip(["A", "B"], md_cells, tex_cells):
            if title not in expected.index:  # no number: both renderers say so
                assert md_cell == "–" and tex_cell == "--"
                continue
            shown = [float(re.search(r"-?\d+\.\d", cell).group()) for cell in (md_cell, tex_cell)]
            assert shown == [pytest.approx(100 * expected.loc[title, "mean"], abs=0.05)] * 2
    assert "81.2†▲ ± 1.2 [79.0, 83.0]" in markdown and "44.5‡ (n=3)" in markdown  # 0.4449 -> 44.5 (one decimal)
    assert r"\textsuperscript{\dag}$^{\blacktriangle}$" in latex and r"\textsuperscript{\ddag} (n=3)" in latex
    assert list(frame["in_pretraining"]) == ["NIH", "", ""] and frame["versus"].iloc[0] == "better"
    assert frame["versus"].iloc[1:].isna().all()
    assert "- a note" in markdown and "**none**: these runs follow the paper's protocol as published." in markdown


@pytest.mark.parametrize("broken, message", [
    (("  title:", "  titel:"), r"layout: unknown key 'titel'. Did you mean 'title'\?"),
    (("aggregate: macro AUROC", "agregate: macro AUROC"), r"layout.groups\[0\]: unknown key 'agregate'. Did you mean 'aggregate'\?"),
    (("  file: demo9.csv", "  fil: demo9.csv"), r"published: unknown key 'fil'. Did you mean 'file'\?"),
    (("  file: demo9.csv", "  file: demo-9.csv"), r"published.file: .*demo-9.csv does not exist"),
    (("per_task: false,", "per_task: false, by_group: [ethnicity, best],"), "by_group statistic 'best' is neither"),
    (("layout:\n", "layout:\n  name: other\n"), r"layout.name: set by the file"),
])
def test_a_bad_key_is_named_with_its_file_and_a_did_you_mean(tmp_path, monkeypatch, broken, message):
    old, new = broken
    assert old in TABLE
    folder = _tables_folder(tmp_path / "results", TABLE.replace(old, new, 1))
    monkeypatch.setenv(TABLES_DIR_VARIABLE, str(folder))
    with pytest.raises(CxrbenchError, match=message) as caught:
        load_recipe("demo-9")
    assert str(folder / "demo-9.yaml") in str(caught.value)
    result = runner.invoke(app, ["table", "--layout", "demo-9", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "demo-9.yaml" in result.output


def test_group_columns_without_the_tables_csv_and_unknown_names_are_refused(tmp_path, monkeypatch):
    no_csv = TABLE.replace(TABLE[TABLE.index("published:"):TABLE.index("layout:")], "")
    monkeypatch.setenv(TABLES_DIR_VARIABLE, str(_tables_folder(tmp_path / "results", no_csv)))
    with pytest.raises(CxrbenchError, match="names published columns but the table has no `published:` block"):
        load_recipe("demo-9")
    with pytest.raises(CxrbenchError, match="Unknown table layout 'demo-8'. Did you mean demo-9"):
        get_layout("demo-8")
