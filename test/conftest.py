"""Shared test fixtures.

Real data lives outside the repository, in ``../shared/data`` beside the checkout
(override with ``TVF_SHARED_DATA``).  Tests that need it skip when it is absent,
so the suite still runs on a machine that only has the repository; with
``TVF_REQUIRE_DATA=1`` (CI) they fail instead, so missing data cannot pass unnoticed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("TVF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        if os.environ.get("TVF_REQUIRE_DATA") == "1":
            pytest.fail(f"shared data not found at {path} (TVF_REQUIRE_DATA=1; "
                        "set TVF_SHARED_DATA to its folder)", pytrace=False)
        pytest.skip(f"shared data not found at {path}")
    return path
