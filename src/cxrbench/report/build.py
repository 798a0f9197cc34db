"""`write_report`: the whole results folder as one static page, DEST/index.html with its figures in DEST/figures/.

The report is assembled in a hidden staging sibling of DEST and renamed into place under DEST's lock, so that a
reader (or a browser with the page open) sees the previous report or the new one, never half of one, and a crash
leaves only a staging folder that the next report removes. DEST is replaced only when it is a report written here
(it holds `MARKER`): pointing --dest at a folder of other files is refused, never emptied.

One part that cannot be shown (a damaged file, a benchmark or metric no longer registered) becomes a note in its
place on the page; the rest of the report is still written.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import cxrbench
from cxrbench.errors import CxrbenchError
from cxrbench.files import folder_lock, remove_stale, staging_name, storage_errors
from cxrbench.progress import Progress, SilentProgress
from cxrbench.report import html
from cxrbench.report.collect import BenchmarkResults, collect
from cxrbench.report.figures import FigureFolder
from cxrbench.results.labels import comparable, encoder_label
from cxrbench.report.sections import (
    benchmark_spec_or_none, bias_section, comparison_section, efficiency_section, explain_section, overview_section,
    paper_layouts, paper_table_section, run_section, run_title,
)

MARKER = ".cxrbench-report"
VALUES = ("Values are mean ± std over seeds [95% bootstrap CI] of the stored runs, fractions in %, unless a table "
          "says otherwise; published rows are as printed in the papers.")


def write_report(out: Path, dest: Path, progress: Progress = SilentProgress()) -> Path:
    """Write the report of everything stored under `out` to `dest` (replacing a previous report there); returns
    the path of its index.html."""
    out, dest = Path(out), Path(dest)
    if not out.is_dir():
        raise CxrbenchError(f"No results folder {out}. Pass --out with the folder your runs wrote to.")
    if out.resolve() == dest.resolve() or dest.resolve() in out.resolve().parents:
        raise CxrbenchError(f"--dest {dest} would replace the results folder {out}; choose a folder of its own.")
    benchmarks = collect(out, exclude=[dest])
    if not benchmarks:
        raise CxrbenchError(f"Nothing stored under {out}. Run `cxrbench run BENCHMARK --encoder NAME --out {out}` first.")
    parent = dest.parent
    with storage_errors(parent, "Free some space, or pass --dest on a disk with room, then rerun."):
        parent.mkdir(parents=True, exist_ok=True)
        with folder_lock(parent / f".{dest.name}.lock", f"the report {dest}", progress.note):
            if dest.exists() and not (dest / MARKER).is_file():
                raise CxrbenchError(f"{dest} exists and is not a cxrbench report; pass another --dest (it would be replaced).")
            remove_stale(parent, f".{dest.name}.")
            staging = parent / staging_name(dest.name)
            staging.mkdir()
            try:
                unshown = _write(out, benchmarks, staging, progress)
                _replace(staging, dest)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    problems = [problem for results in benchmarks for problem in results.problems] + unshown
    if problems:  # written, with the problems shown in it; but a report missing runs must not pass as complete
        raise CxrbenchError(f"Report written to {dest / 'index.html'}, without what it could not read: "
                            + " ".join(problems))
    return dest / "index.html"


def _replace(staging: Path, dest: Path) -> None:
    if dest.exists():
        retired = dest.parent / staging_name(f"{dest.name}.old")
        os.rename(dest, retired)
        os.rename(staging, dest)
        shutil.rmtree(retired)
    else:
        os.rename(staging, dest)


def _write(out: Path, benchmarks: list[BenchmarkResults], folder: Path, progress: Progress) -> list[str]:
    """Write the report's page and figures into `folder`; returns what could not be shown (noted on the page)."""
    figures = FigureFolder(folder)
    unshown: list[str] = []
    layouts = paper_layouts(benchmarks)
    total = len(layouts) + sum(3 + len(b.comparisons) + len(b.runs) + len(b.explains) for b in benchmarks)
    advance = progress.task(f"writing the report of {out}", total)

    def part(what: str, build: Callable[[], str]) -> str:
        """One unit of the page; a user-fixable error becomes a note in its place."""
        try:
            return build()
        except CxrbenchError as exc:
            unshown.append(f"{what} cannot be shown: {exc}")
            return html.notes([unshown[-1]])
        finally:
            advance(1)

    toc: list[tuple[str, str]] = []
    body: list[str] = []
    if layouts:
        toc.append(("paper-tables", "Paper tables"))
        body.append(html.heading(2, "Paper tables", "paper-tables"))
        body += [part(f"table {layout.name}", lambda: paper_table_section(layout, out)) for layout in layouts]
    for index, results in enumerate(benchmarks):
        spec = benchmark_spec_or_none(results.name)
        title = spec.title if spec else results.name
        anchor = f"b{index}-{html.slug(results.name)}"
        toc.append((anchor, title))
        body.append(html.heading(2, title, anchor))
        body.append(html.notes(results.problems + ([] if spec else [f"'{results.name}' is not a registered benchmark now: "
                                                                     "its runs are shown from their files alone."])))
        body.append(part("the overview", lambda: overview_section(spec, results.runs) if spec else ""))
        body += [part(path.name, lambda: comparison_section(path, figures))
                 for path in results.comparisons]
        body.append(part("label efficiency", lambda: efficiency_section(results, spec, figures)))
        body.append(part("bias", lambda: bias_section(results, figures)))
        if results.runs:
            body.append(html.heading(3, f"Runs ({len(results.runs)})"))
        body += [part(f"run {run.label}", lambda: run_section(run, out, figures)) for run in results.runs]
        body += [part(f"explain run {explain.encoder}", lambda: explain_section(explain, figures))
                 for explain in results.explains]
    text = html.page("cxrbench report", _header(out, benchmarks) + html.navigation(toc) + "".join(body))
    (folder / "index.html").write_text(text, encoding="utf-8")
    (folder / MARKER).write_text(f"cxrbench {cxrbench.__version__}\n", encoding="utf-8")
    return unshown


def _header(out: Path, benchmarks: list[BenchmarkResults]) -> str:
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    flagged = [f"{b.name}: {run_title(run)}" for b in benchmarks for run in b.runs if not comparable(run.variant)]
    flagged += [f"{b.name}: {encoder_label(e.encoder, e.variant)} explain" for b in benchmarks for e in b.explains
                if not comparable(e.variant)]
    flagged = list(dict.fromkeys(flagged))
    parts = [html.heading(1, "cxrbench report"),
             html.paragraph(f"Results folder {out.resolve()}; written {created} by cxrbench {cxrbench.__version__}.", "meta"),
             html.paragraph(VALUES, "values")]
    if flagged:
        parts.append(html.paragraph(
            f"{len(flagged)} run(s) are not the released encoder on the real dataset (random weights, another input "
            f"size or synthetic data): their numbers measure the pipeline, not the encoder, and compare with no "
            f"paper. Flagged: {'; '.join(flagged)}.", "warning"))
    return "".join(parts)
