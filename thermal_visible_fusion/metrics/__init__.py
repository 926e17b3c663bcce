"""
Fusion quality metrics (ROS-free).

* :mod:`.image` -- the conventional IVIF metrics of one fused frame against its two
  sources (EN SD SF AG MI SCD VIF Qabf SSIM PSNR CC Nabf); conventions in its
  docstring.  ``compute_all(fused, ir, vis) -> {metric: value}``.
* :mod:`.vifb` -- a VIFB-toolbox-compatible mode (VIFB metric names and quirks),
  ``compute_vifb(fused, ir, vis)``.
* :mod:`.features` -- deep-feature temporal consistency (feaCD-style),
  ``FeatureConsistency`` / ``feature_consistency``; needs torch, imported lazily.
* :mod:`.temporal` -- optical-flow temporal consistency (flowD).
* :mod:`.artefacts` -- artefacts of one fused frame: ``block_grid_energy`` (1.0 = no
  block grid).
"""

from __future__ import annotations

from typing import Any

from .artefacts import block_grid_energy, block_grid_profile
from .image import (ag, cc, compute_all, correlation, en, entropy, HIGHER_IS_BETTER, METRICS, mi,
                    mutual_information, nabf, psnr, qabf, scd, sd, sf, ssim, ssim_pair, to_gray,
                    vif, vifp)
from .vifb import compute_vifb, VIFB_METRICS

__all__ = [
    "METRICS", "HIGHER_IS_BETTER", "compute_all", "to_gray",
    "en", "sd", "sf", "ag", "mi", "scd", "vif", "qabf", "ssim", "psnr", "cc", "nabf",
    "entropy", "mutual_information", "ssim_pair", "vifp", "correlation",
    "VIFB_METRICS", "compute_vifb", "block_grid_energy", "block_grid_profile",
    "FeatureConsistency", "FeatureExtractor", "feature_consistency",
]

_LAZY = {"FeatureConsistency", "FeatureExtractor", "feature_consistency"}


def __getattr__(name: str) -> Any:  # torch is only imported when feature metrics are used
    if name in _LAZY:
        from . import features

        return getattr(features, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
