"""
Docstrings checked as ament_pep257 checks them in ``colcon test``.

The ``ament`` convention of an ament_python package's test_pep257.py.
"""

import pytest

from conftest import LINT_PATHS, skip_unless_required


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    try:
        from ament_pep257.main import main
    except ImportError as error:
        skip_unless_required(f"ament_pep257 is not installed ({error})")
    rc = main(argv=[str(p) for p in LINT_PATHS])
    assert rc == 0, "Found code style errors / warnings"
