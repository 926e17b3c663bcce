"""
flake8 as ament_flake8 runs it in an ament_python package's ``colcon test``.

The configuration is ament_flake8's own with the project's double quotes (setup.cfg
[flake8]).  Checks the package, the tests, the launch file and the scripts.
"""

import pytest

from conftest import LINT_PATHS, REPO_ROOT, skip_unless_required


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    try:
        from ament_flake8.main import main_with_errors
    except ImportError as error:
        skip_unless_required(f"ament_flake8 is not installed ({error})")
    rc, errors = main_with_errors(
        argv=["--config", str(REPO_ROOT / "setup.cfg"), *map(str, LINT_PATHS)])
    assert rc == 0, \
        "Found %d code style errors / warnings:\n" % len(errors) + "\n".join(errors)
