"""
flake8 as ament_flake8 runs it in an ament_python package's ``colcon test``.

The configuration is ament_flake8's own with the project's double quotes (setup.cfg
[flake8]).  Checks the package, the tests, the launch file and the scripts.
"""

from pathlib import Path

import pytest

from conftest import skip_unless_required

REPO = Path(__file__).resolve().parents[1]
PATHS = ["thermal_visible_fusion", "test", "launch", "scripts", "setup.py", "bootstrap.py"]


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    try:
        from ament_flake8.main import main_with_errors
    except ImportError as error:
        skip_unless_required(f"ament_flake8 is not installed ({error})")
    rc, errors = main_with_errors(
        argv=["--config", str(REPO / "setup.cfg"), *(str(REPO / p) for p in PATHS)])
    assert rc == 0, \
        "Found %d code style errors / warnings:\n" % len(errors) + "\n".join(errors)
