"""Every deviation of a recipe from its paper is shown wherever the layout's numbers are: the Markdown, LaTeX and CSV
tables, `cxrbench reproduce --plan`, `cxrbench table --layout` and the HTML report. A recipe without the
`deviations:` key is refused, naming its file and the fix."""

from __future__ import annotations

import dataclasses
import html
import io
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.errors import CxrbenchError
from cxrbench.registry import benchmark_spec
from cxrbench.tables import recipes
from cxrbench.tables.latex import latex_escape, to_latex
from cxrbench.tables.layout import benchmark_layout
from cxrbench.tables.long_form import long_frame
from cxrbench.tables.markdown import paper_markdown
from cxrbench.tables.model import DEVIATIONS_TITLE, OURS, Row
from cxrbench.tables.paper import build_paper_table
from cxrbench.tables.recipes import get_layout, load_recipe, recipe_names

runner = CliRunner()
COMMITTED = Path(__file__).resolve().parent / "fixtures" / "committed"  # the CI fixture runs and their tables


def _flat(text: str) -> str:
    """Whitespace collapsed: the terminal wraps long lines."""
    return " ".join(text.split())


def _table_with_one_row_of_ours(name: str):
    """The layout's table (published rows from the paper's CSV) plus one row of ours with every cell filled, so that
    each renderer has a number of ours to put the deviations beside."""
    table = build_paper_table(get_layout(name), {})
    cell = {"mean": 0.5, "std": 0.01, "ci_low": 0.4, "ci_high": 0.6}
    table.rows.insert(0, Row(OURS, "probe-check / linear", [dict(cell) for _ in table.columns],
                             encoder="probe-check", head="linear", overlap=[() for _ in table.columns]))
    return table


def _write_recipe(folder: Path, name: str, tail: str) -> None:
    (folder / f"{name}.yaml").write_text(
        f"table: {name}\nsource: a paper\nruns:\n  - {{benchmark: vindr, head: linear, encoders: [rad-dino]}}\n{tail}",
        encoding="utf-8")


def test_every_layout_has_a_recipe_that_declares_its_deviations():
    assert recipe_names()
    for name in recipe_names():
        recipe = load_recipe(name)
        assert recipe.deviations, f"{name}: every paper protocol here differs in something; list it"
        for deviation in recipe.deviations:
            assert deviation.what.strip() and deviation.why.strip()


def test_a_recipe_without_the_key_is_refused_naming_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "recipes_dir", lambda: tmp_path)
    _write_recipe(tmp_path, "rad-dino-1a", "")
    with pytest.raises(CxrbenchError) as missing:
        load_recipe("rad-dino-1a")
    assert str(tmp_path / "rad-dino-1a.yaml") in str(missing.value)
    assert "deviations: []" in str(missing.value) and "why" in str(missing.value)

    _write_recipe(tmp_path, "rad-dino-1a", "deviations: [a bare sentence]\n")
    with pytest.raises(CxrbenchError, match=r"deviations\[0\]: expected a mapping"):
        load_recipe("rad-dino-1a")
    _write_recipe(tmp_path, "rad-dino-1a", "deviations:\n  - {what: a probe, why: '  '}\n")
    with pytest.raises(CxrbenchError, match=r"rad-dino-1a.yaml.deviations\[0\]: `why` is empty"):
        load_recipe("rad-dino-1a")
    _write_recipe(tmp_path, "rad-dino-1a", "deviations:\n  - {what: a probe, why: the paper, cost: 3}\n")
    with pytest.raises(CxrbenchError, match="unknown key 'cost'"):
        load_recipe("rad-dino-1a")


@pytest.mark.parametrize("name", recipe_names())
def test_each_layouts_markdown_latex_and_csv_carry_each_of_its_deviations(name):
    table = _table_with_one_row_of_ours(name)
    deviations = load_recipe(name).deviations
    assert table.deviations == deviations
    markdown, latex = paper_markdown(table), to_latex(table)
    section = markdown[markdown.index(f"## {DEVIATIONS_TITLE}"):]
    block = latex[latex.index(r"\end{tabular}"):latex.index(r"\end{table}")]
    for deviation in deviations:
        assert f"- **{deviation.what}**: {deviation.why}" in section
        assert rf"\textbf{{{latex_escape(deviation.what)}}}: {latex_escape(deviation.why)}" in block
    assert block.isascii() and block.count("{") == block.count("}")  # pdflatex without inputenc tricks
    frame = pd.read_csv(io.StringIO(long_frame(table).to_csv(index=False)))
    ours, published = frame[frame["source"] == "cxrbench"], frame[frame["source"] != "cxrbench"]
    assert len(ours) == len(table.columns)
    for text in ours["deviations"]:
        assert json.loads(text) == [dataclasses.asdict(d) for d in deviations]
    assert published["deviations"].isna().all()  # the paper's own numbers: nothing of ours to declare


def test_a_table_without_deviations_or_without_recipe_says_so(monkeypatch):
    table = _table_with_one_row_of_ours("rad-dino-c2")
    table.deviations = ()
    assert "- **none**: these runs follow the paper's protocol as published." in paper_markdown(table)
    assert r"\textbf{none}" in to_latex(table)
    assert set(long_frame(table).query("source == 'cxrbench'")["deviations"]) == {"[]"}

    spec = benchmark_spec("vindr")  # a per-benchmark comparison: no recipe makes it
    table = build_paper_table(benchmark_layout(spec, "auprc"), {}, lambda name: spec)
    table.rows.insert(0, Row(OURS, "x / linear", [{"mean": 0.5, "std": None, "ci_low": None, "ci_high": None}]
                             * len(table.columns), encoder="x", head="linear", overlap=[()] * len(table.columns)))
    assert table.deviations is None
    assert "- **not declared**: no recipe (results/recipes/vindr.yaml)" in paper_markdown(table)
    assert set(long_frame(table).query("source == 'cxrbench'")["deviations"]) == {"null"}


@pytest.mark.parametrize("path", sorted((COMMITTED / "tables").glob("*.md")), ids=lambda p: p.stem)
def test_committed_tables_show_their_recipes_deviations(path):
    deviations = load_recipe(path.stem.partition("_vs_")[0]).deviations
    markdown = path.read_text(encoding="utf-8")
    latex = path.with_suffix(".tex").read_text(encoding="utf-8")
    frame = pd.read_csv(path.with_suffix(".csv"))
    for deviation in deviations:
        assert f"**{deviation.what}**: {deviation.why}" in markdown
        assert latex_escape(deviation.why) in latex
    assert {json.dumps([dataclasses.asdict(d) for d in deviations], ensure_ascii=False)} == \
        set(frame.loc[frame["source"] == "cxrbench", "deviations"])


def test_reproduce_plan_prints_the_deviations(tmp_path):
    result = runner.invoke(app, ["reproduce", "dinov2-table4", "--plan", "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    output = _flat(result.output)
    assert f"{DEVIATIONS_TITLE} (dinov2-table4):" in output
    for deviation in load_recipe("dinov2-table4").deviations:
        assert _flat(f"- {deviation.what}: {deviation.why}") in output


def test_table_layout_prints_the_deviations(tmp_path):
    out = tmp_path / "results"
    shutil.copytree(COMMITTED / "mimic-demographics", out / "mimic-demographics")
    result = runner.invoke(app, ["table", "--layout", "rad-dino-c2", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for deviation in load_recipe("rad-dino-c2").deviations:
        assert _flat(f"- {deviation.what}: {deviation.why}") in _flat(result.output)


def test_report_section_shows_the_deviations_beside_the_table():
    from cxrbench.report.sections import paper_table_section

    section = paper_table_section(get_layout("rad-dino-c2"), COMMITTED)
    assert section.index("</table>") < section.index(DEVIATIONS_TITLE)
    for deviation in load_recipe("rad-dino-c2").deviations:
        assert f"<li><strong>{html.escape(deviation.what)}</strong>: {html.escape(deviation.why)}</li>" in section


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex on PATH (Debian: texlive-latex-recommended)")
@pytest.mark.parametrize("name", recipe_names())
def test_latex_with_its_deviations_compiles(name, tmp_path):
    document = "\n".join([r"\documentclass{article}", r"\usepackage{booktabs}", r"\usepackage{amssymb}",
                          r"\usepackage[landscape,margin=1cm]{geometry}", r"\begin{document}",
                          to_latex(_table_with_one_row_of_ours(name)), r"\end{document}"])
    (tmp_path / "table.tex").write_text(document, encoding="utf-8")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "table.tex"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
