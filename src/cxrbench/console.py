"""The terminal side of the CLI: consoles, progress bars, and result tables laid out to fit the terminal.

Everything shown here may hold user text (paths, ids, exception messages, benchmark names). Rich reads square
brackets as markup: `cxrbench[dicom]` would print as `cxrbench` and `/x[/y]` would crash the printer. So user text
only ever reaches rich as `Text` or escaped (`plain`), and markup is written by this module alone.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichBar, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from cxrbench.progress import LineProgress, Progress

if TYPE_CHECKING:  # tables arrive as DataFrames; pandas is not imported for `--help`, `list` and name errors
    import pandas as pd


def _console(stderr: bool = False) -> Console:
    """The terminal's width; piped or captured output (a log) gets 200 columns so that table rows stay whole."""
    made = Console(stderr=stderr)
    return made if made.is_terminal or "COLUMNS" in os.environ else Console(stderr=stderr, width=200)


console = _console()
errors = _console(stderr=True)


def plain(text: object) -> str:
    """User text made safe to embed in a markup string."""
    return escape(str(text))


def say(message: object, style: str = "") -> None:
    """Print user text as it is (no markup is read from it)."""
    console.print(Text(str(message), style=style), highlight=False)


def note(message: object) -> None:
    console.print(Text.assemble(("• ", "dim"), str(message)), highlight=False)


def warn(message: object) -> None:
    console.print(Text.assemble(("warning", "yellow"), ": ", str(message)), highlight=False)


def error(message: object) -> None:
    errors.print(Text.assemble(("error", "bold red"), ": ", str(message)), highlight=False)


class RichProgress:
    """`cxrbench.progress.Progress` on a rich live display."""

    def __init__(self, bar: RichBar):
        self.bar = bar

    def task(self, description: str, total: int, transient: bool = False) -> Callable[[int], None]:
        task_id = self.bar.add_task(plain(description), total=total)
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            self.bar.advance(task_id, n)
            if transient and done >= total:
                self.bar.remove_task(task_id)

        return advance

    def note(self, message: str) -> None:
        self.bar.console.print(Text.assemble(("• ", "dim"), str(message)), highlight=False)


@contextmanager
def progress_display() -> Iterator[Progress]:
    """Live bars on a terminal; elsewhere (a log file, a pipe, `nohup`) rich draws nothing until the work ends, so
    progress comes as plain lines (`LineProgress`) interleaved with the notes."""
    if not console.is_terminal:
        yield LineProgress(bullet="• ", write=lambda line: console.print(Text(line), highlight=False))
        return
    bar = RichBar(TextColumn("{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=False)
    with bar:
        yield RichProgress(bar)


# -- tables ---------------------------------------------------------------------------------------------------
def _cell_lines(text: str, split_ci: bool) -> str:
    """'48.3 ± 1.2 [45.1, 51.0]' on two lines (the CI under the estimate) when space is short."""
    return text.replace(" [", "\n[", 1) if split_ci else text


def _header(text: str, width: int) -> str:
    """A column title wrapped at word boundaries to about the width of its cells (never cut inside a word)."""
    return "\n".join(textwrap.wrap(text, width=max(width, 8), break_long_words=False)) or text


def _build(frame: pd.DataFrame, title: str, index_title: str, split_ci: bool) -> Table:
    table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    cells = frame.astype(str).map(lambda text: _cell_lines(text, split_ci))
    widest = max((len(line) for value in cells.to_numpy().ravel() for line in value.split("\n")), default=8)
    table.add_column(Text(_header(index_title, 24)), style="bold", no_wrap=True)
    for column in frame.columns:
        table.add_column(Text(_header(str(column), widest)), justify="right", no_wrap=True)
    for index, row in cells.iterrows():
        table.add_row(Text(str(index)), *(Text(value) for value in row.tolist()))
    return table


def _width(table: Table) -> int:
    return Measurement.get(console, console.options.update_width(100_000), table).maximum


def fitted_table(frame: pd.DataFrame, title: str, index_title: str = "", width: int | None = None):
    """The first layout of `frame` that fits `width` (default: the terminal's) without cutting a cell:
    as given, then with each CI under its estimate, then transposed (rows become columns) in both forms, then
    transposed and split into several tables of as many columns as fit. Files keep the full table; this is only
    what a terminal shows."""
    width = width or console.width
    flipped = frame.T
    flipped.index = [str(i) for i in flipped.index]
    for candidate, split in ((frame, False), (frame, True), (flipped, False), (flipped, True)):
        table = _build(candidate, title, index_title if candidate is frame else "", split)
        if _width(table) <= width:
            return table
    parts, start = [], 0
    while start < flipped.shape[1]:
        stop = start + 1
        while stop < flipped.shape[1] and _width(_build(flipped.iloc[:, start:stop + 1], title, "", True)) <= width:
            stop += 1
        label = title if not parts else f"{title} (continued)"
        parts.append(_build(flipped.iloc[:, start:stop], label, "", True))
        start = stop
    return Group(*parts)


def print_table(frame: pd.DataFrame, title: str, index_title: str = "") -> None:
    console.print(fitted_table(frame, title, index_title))


def text_table(title: str, columns: list[str], rows: list[list[object]], right: tuple[str, ...] = ()) -> Table:
    """A listing (encoders, label counts, stores): every cell shown as plain text, long ones wrapped at words."""
    table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD)
    for number, column in enumerate(columns):  # the first column names the row: never broken
        table.add_column(Text(column), justify="right" if column in right else "left", overflow="fold", no_wrap=number == 0)
    for row in rows:
        table.add_row(*(Text(str(value)) for value in row))
    return table
