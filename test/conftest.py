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


@pytest.fixture(scope="session")
def fresh_weights(tmp_path_factory) -> Path:
    """Weights of a fresh (untrained) StreamingFusionNet, for tests that need a learned
    fuser that loads whatever the shipped file is.  A fresh network restores nothing
    much, so its temporal gain is set to 0.5 (the fresh value is 0.018): its memory, and
    a look-ahead, visibly change the output."""
    import torch

    from thermal_visible_fusion.fusers.learned import save_weights
    from thermal_visible_fusion.model import StreamingFusionNet

    torch.manual_seed(0)
    model = StreamingFusionNet().eval()
    with torch.no_grad():
        model.denoiser[-1].bias[4:] = 0.0  # the temporal gain's logit
    return save_weights(model, tmp_path_factory.mktemp("fresh_weights") / "fresh.pt")
