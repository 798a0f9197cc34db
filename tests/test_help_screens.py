"""Every command's `--help` fits one screen (issue 22): at most 50 lines in a 100-column terminal.

Rarer options stay out of the option tables (hidden, named in the epilog: `cxrbench.cli.options.more`); the common
ones get one-line help. The walk finds every command and subcommand from the click tree, so a new command is held to
the same limit without being listed here.
"""

from __future__ import annotations

import pytest
import typer.main
from typer.testing import CliRunner

from cxrbench.cli import app

SCREEN_LINES, SCREEN_COLUMNS = 50, 100
runner = CliRunner()


def _command_paths(command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's words after `cxrbench`, groups and their subcommands alike (typer's own click: a group is a
    command with `commands`)."""
    paths = [path]
    for name in sorted(getattr(command, "commands", {})):
        paths += _command_paths(command.commands[name], (*path, name))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))


def test_the_walk_finds_the_commands_and_subcommands():
    assert {("run",), ("explain",), ("bias",), ("reproduce",), ("extract",)} <= set(COMMANDS)
    assert any(len(path) == 2 for path in COMMANDS)  # a group's subcommand (e.g. `cache ls`)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "cxrbench")
def test_help_fits_one_screen(path):
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(SCREEN_COLUMNS), "TERMINAL_WIDTH": str(SCREEN_COLUMNS)},
                           terminal_width=SCREEN_COLUMNS)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= SCREEN_COLUMNS  # rendered at the width asked for
    assert len(lines) <= SCREEN_LINES, (f"`cxrbench {' '.join(path)} --help` is {len(lines)} lines at {SCREEN_COLUMNS} "
                                        f"columns (at most {SCREEN_LINES}): shorten help strings, or hide a rarer option "
                                        f"and name it in the epilog (cxrbench.cli.options.more).\n" + result.output)


def test_hidden_options_still_work():
    """Hiding keeps an option: explain's --min-overlap is still parsed (a bad value is refused by the option)."""
    result = runner.invoke(app, ["explain", "vindr", "-e", "pixels", "--min-overlap", "lots"])
    assert result.exit_code != 0 and "--min-overlap" in result.output
