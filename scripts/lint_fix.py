#!/usr/bin/env python3
"""
Fix the mechanical docstring findings of test_pep257.py / test_flake8.py in place.

    .venv/bin/python scripts/lint_fix.py FILE ...     # rewrite these files
    .venv/bin/python scripts/lint_fix.py --all        # every file the lint tests check

Only layout, never words: in a multi-line docstring the summary moves to the line after
the opening quotes (D213, ament's convention) and the closing quotes to a line of their
own (D209); ``__doc__.strip().splitlines()[0]`` becomes ``__doc__.strip().splitlines()[0]`` so a
summary on the second line is still the first line.  What needs rewording (D205/D400
summaries over several lines, D401 imperative mood, E501 long lines, I100 import order)
is left for a person: scripts/lint_report.py lists it.
"""

from __future__ import annotations

import ast
from pathlib import Path
import re
import sys

REPO = Path(__file__).resolve().parents[1]
PATHS = ["thermal_visible_fusion", "test", "launch", "scripts", "setup.py", "bootstrap.py"]
OPENING = re.compile(r'^(?P<indent>\s*)(?P<prefix>[rRuU]?)(?P<quotes>"""|\'\'\')(?P<rest>.*)$')


def _docstring_nodes(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                yield body[0].value


def fix_source(text: str) -> str:
    lines = text.split("\n")
    edits = []  # (first line index, last line index, replacement lines), applied bottom-up
    for node in _docstring_nodes(ast.parse(text)):
        first, last = node.lineno - 1, node.end_lineno - 1
        if first == last:
            continue  # one-line docstring
        opening = OPENING.match(lines[first])
        if not opening or lines[first][:len(opening["indent"])].strip():
            continue
        indent, quotes = opening["indent"], opening["quotes"]
        new = list(lines[first:last + 1])
        if opening["rest"].strip():  # D213: summary on the line after the quotes
            new[0:1] = [f"{indent}{opening['prefix']}{quotes}", f"{indent}{opening['rest']}"]
        closing = new[-1]
        body = closing.rstrip()
        if body.endswith(quotes) and body[:-3].strip():  # D209: closing quotes alone
            new[-1:] = [body[:-3].rstrip(), f"{indent}{quotes}"]
        if new != lines[first:last + 1]:
            edits.append((first, last, new))
    for first, last, new in sorted(edits, reverse=True):
        lines[first:last + 1] = new
    fixed = "\n".join(lines)
    # a docstring that now starts with a newline has an empty first line
    return fixed.replace("__doc__.strip().splitlines()[0]", "__doc__.strip().splitlines()[0]")


def files(paths: list[str]) -> list[Path]:
    found = []
    for name in paths:
        path = Path(name)
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return found


def main(argv: list[str]) -> int:
    if not argv or argv in (["-h"], ["--help"]):
        print(__doc__)
        return 0 if argv else 2
    paths = [str(REPO / p) for p in PATHS] if argv == ["--all"] else argv
    changed = 0
    for path in files(paths):
        text = path.read_text()
        fixed = fix_source(text)
        if fixed != text:
            ast.parse(fixed)  # never write a file that no longer parses
            path.write_text(fixed)
            changed += 1
            print(f"fixed {path}")
    print(f"{changed} files changed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
