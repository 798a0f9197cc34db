"""Issue 22's size limits, read from the code: no module under src/cxrbench over 450 lines unless its docstring says why
(a line containing "longer than 450 lines because"), and no function or method over 80 lines (ast: from its `def`
line to its last line, nested functions counted in their parent too).

A long module hides more than one job and a long function more than one step; where a file must stay long, the reason
is written where the next reader looks first.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "cxrbench"
MODULE_LINES, FUNCTION_LINES = 450, 80
REASON = "longer than 450 lines because"
MODULES = sorted(SOURCE.rglob("*.py"))


def _tree(path: Path) -> tuple[int, ast.Module]:
    text = path.read_text(encoding="utf-8")
    return len(text.splitlines()), ast.parse(text)


def test_the_scan_reads_the_package():
    assert len(MODULES) > 100 and SOURCE / "specs.py" in MODULES


def test_no_module_is_longer_than_450_lines_unless_it_says_why():
    long = []
    for path in MODULES:
        lines, tree = _tree(path)
        if lines > MODULE_LINES and REASON not in (ast.get_docstring(tree) or ""):
            long.append(f"{path.relative_to(SOURCE.parent)}: {lines} lines")
    assert not long, (f"modules over {MODULE_LINES} lines: split them along a seam, or say why at the top of the "
                      f"docstring ('{REASON} ...'):\n" + "\n".join(long))


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in MODULES:
        _, tree = _tree(path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > FUNCTION_LINES:
                    long.append(f"{path.relative_to(SOURCE.parent)}:{node.lineno} {node.name}: {length} lines")
    assert not long, f"functions over {FUNCTION_LINES} lines: split them into named steps:\n" + "\n".join(long)


def test_the_limits_catch_a_long_module_and_function(tmp_path):
    """The measures themselves: a 451-line module without a reason and an 81-line function are seen."""
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    source = f'"""A module."""\n\n\ndef long():\n{body}\n' + "\n" * 400
    path = tmp_path / "m.py"
    path.write_text(source, encoding="utf-8")
    lines, tree = _tree(path)
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))
    assert lines > MODULE_LINES and REASON not in ast.get_docstring(tree)
    assert function.end_lineno - function.lineno + 1 == 81
