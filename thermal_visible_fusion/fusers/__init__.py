"""Fuser registry: names a user can pass as ``fuser`` and how to build each.

``auto`` picks the learned network when its weights load and the multi-scale
fuser otherwise, so the node always fuses, with or without trained weights.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from thermal_visible_fusion.fusers.base import Fuser
from thermal_visible_fusion.fusers.classic import AverageFuser, MaxFuser, MultiScaleFuser

CLASSIC_FUSERS = {"average": AverageFuser, "max": MaxFuser, "multiscale": MultiScaleFuser}
FALLBACK_FUSER = "multiscale"
FUSER_NAMES = ("auto", "learned", *CLASSIC_FUSERS)


def learned_available() -> bool:
    """True when the learned fuser's code exists (its weights may still be missing)."""
    return importlib.util.find_spec("thermal_visible_fusion.fusers.learned") is not None


def default_weights() -> Path | None:
    if not learned_available():
        return None
    from thermal_visible_fusion.fusers.learned import default_weights_path
    return default_weights_path()


def create_fuser(name: str, *, weights: str | None = None, device: str = "auto",
                 use_memory: bool = True, lookahead: int = 0) -> tuple[Fuser, str | None]:
    """Build a fuser by name; returns (fuser, warning).

    ``warning`` is set when ``auto`` or ``learned`` had to fall back to the
    non-learned fuser (weights asked for but missing, or corrupt): the caller
    reports it as a WARN diagnostic instead of failing to start.  ``auto``
    without shipped weights quietly uses the multi-scale fuser.
    """
    if name not in FUSER_NAMES:
        raise ValueError(f"unknown fuser {name!r}; choose one of {', '.join(FUSER_NAMES)}")
    if name in CLASSIC_FUSERS:
        return CLASSIC_FUSERS[name](), None
    if not learned_available():
        return MultiScaleFuser(), None if name == "auto" else "learned fuser not installed"
    from thermal_visible_fusion.fusers.learned import LearnedFuser, WeightsError
    path = weights or str(default_weights())
    if name == "auto" and not weights and not Path(path).exists():
        return MultiScaleFuser(), None  # no trained weights shipped: the fallback is the default
    try:
        fuser = LearnedFuser(path, device=device, use_memory=use_memory, lookahead=lookahead)
    except WeightsError as error:
        return MultiScaleFuser(), f"{error}; falling back to {FALLBACK_FUSER}"
    return fuser, None


__all__ = ["Fuser", "AverageFuser", "MaxFuser", "MultiScaleFuser", "create_fuser",
           "CLASSIC_FUSERS", "FUSER_NAMES", "FALLBACK_FUSER", "default_weights"]
