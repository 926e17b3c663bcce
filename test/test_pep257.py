"""
Docstrings checked as ament_pep257 checks them in ``colcon test``.

The ``ament`` convention of an ament_python package's test_pep257.py.
"""

from pathlib import Path

import pytest

from conftest import skip_unless_required

REPO = Path(__file__).resolve().parents[1]
PATHS = ["thermal_visible_fusion", "test", "launch", "scripts", "setup.py", "bootstrap.py"]


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    try:
        from ament_pep257.main import main
    except ImportError as error:
        skip_unless_required(f"ament_pep257 is not installed ({error})")
    rc = main(argv=[str(REPO / p) for p in PATHS])
    assert rc == 0, "Found code style errors / warnings"
