#!/usr/bin/env python3
"""
Count what test/test_flake8.py and test/test_pep257.py find, per file and per code.

    .venv/bin/python scripts/lint_report.py            # counts per file, then per code
    .venv/bin/python scripts/lint_report.py FILE ...   # the violations in these files

Uses the same tools and configuration as the tests (ament_flake8 with setup.cfg
[flake8], ament_pep257's ament convention).
"""

from __future__ import annotations

import collections
import contextlib
import io
from pathlib import Path
import re
import sys

REPO = Path(__file__).resolve().parents[1]
PATHS = ["thermal_visible_fusion", "test", "launch", "scripts", "setup.py", "bootstrap.py"]
LINE = re.compile(r"^(?P<file>[^:\s]+\.py):(?P<line>\d+):(?:\d+:)?\s*(?P<code>[A-Z]+\d+)\b")


def violations(paths: list[str]) -> list[tuple[str, str, str]]:
    """(file, code, line) for every flake8 and pep257 finding in these paths."""
    from ament_flake8.main import main_with_errors
    from ament_pep257.main import main as pep257_main

    found = []
    with open("/dev/null", "w") as sink, contextlib.redirect_stdout(sink):
        _, errors = main_with_errors(argv=["--config", str(REPO / "setup.cfg"), *paths])
    for error in errors:
        match = LINE.match(error.splitlines()[0])
        if match:
            found.append(("flake8 " + match["file"], match["code"], error.splitlines()[0]))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        pep257_main(argv=paths)
    for line in out.getvalue().splitlines():  # "file:line in ...: Dxxx: message"
        match = re.match(r"^(?P<file>\S+\.py):\d+ .*?: (?P<code>D\d+):", line)
        if match:
            found.append(("pep257 " + match["file"], match["code"], line))
    return found


def main(argv: list[str]) -> int:
    paths = argv or [str(REPO / p) for p in PATHS]
    found = violations(paths)
    if argv:
        for _, _, text in found:
            print(text)
    else:
        by_file = collections.Counter(
            str(Path(f.split(" ", 1)[1]).resolve().relative_to(REPO)) for f, _, _ in found)
        by_code = collections.Counter(f"{f.split(' ')[0]} {c}" for f, c, _ in found)
        for name, count in sorted(by_file.items()):
            print(f"{count:5d}  {name}")
        print(f"{len(found):5d}  total in {len(by_file)} files")
        print("  ".join(f"{code}: {count}" for code, count in by_code.most_common()))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
