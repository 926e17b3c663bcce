"""
Fuser registry: names a user can pass as ``fuser`` and how to build each.

``auto`` picks the learned network when its weights load and the multi-scale
fuser otherwise, so the node always fuses, with or without trained weights.
"""

from __future__ import annotations

import re

from thermal_visible_fusion.fusers.base import Fuser
from thermal_visible_fusion.fusers.classic import AverageFuser, MaxFuser, MultiScaleFuser
from thermal_visible_fusion.learned import weights as learned_weights  # no torch

CLASSIC_FUSERS = {"average": AverageFuser, "max": MaxFuser, "multiscale": MultiScaleFuser}
FALLBACK_FUSER = "multiscale"
FUSER_NAMES = ("auto", "learned", *CLASSIC_FUSERS)


def create_fuser(name: str, *, weights: str | None = None, device: str = "auto",
                 use_memory: bool = True, lookahead: int = 0,
                 threads: int | None = None, bf16: bool | None = None
                 ) -> tuple[Fuser, str | None]:
    """
    Build a fuser by name; returns (fuser, warning).

    ``warning`` is set when ``auto`` or ``learned`` had to fall back to the
    non-learned fuser (weights asked for but missing, or corrupt): the caller
    reports it as a WARN diagnostic instead of failing to start.  ``auto``
    without shipped weights quietly uses the multi-scale fuser.  ``threads``: the
    learned fuser's most torch threads on a CPU (None: all cores); ``bf16``: its
    ``LearnedFuser`` argument (None: where the CPU has bfloat16).
    """
    if name not in FUSER_NAMES:
        raise ValueError(f"unknown fuser {name!r}; choose one of {', '.join(FUSER_NAMES)}")
    if name in CLASSIC_FUSERS:
        return CLASSIC_FUSERS[name](), None
    path = weights or learned_weights.default_weights()
    if path is None:
        if name == "auto":
            # no trained weights shipped: the fallback is the default
            return MultiScaleFuser(), None
        return MultiScaleFuser(), f"no weights shipped or given; falling back to {FALLBACK_FUSER}"
    try:  # checked before importing torch, so classic-only installs never need it
        from thermal_visible_fusion.fusers.learned import LearnedFuser
    except ImportError as error:
        return MultiScaleFuser(), (f"learned fuser needs torch ({error}); "
                                   f"falling back to {FALLBACK_FUSER}")
    try:
        fuser = LearnedFuser(path, device=device, use_memory=use_memory, lookahead=lookahead,
                             threads=threads, bf16=bf16)
    except learned_weights.WeightsError as error:
        return MultiScaleFuser(), f"{_brief(str(error))}; falling back to {FALLBACK_FUSER}"
    except (RuntimeError, MemoryError) as error:  # a valid config too big to build, ...
        return MultiScaleFuser(), (f"cannot build the learned fuser from {path}: "
                                   f"{_brief(str(error))}; falling back to {FALLBACK_FUSER}")
    return fuser, None


def _brief(text: str, limit: int = 400) -> str:
    """
    Return one line without torch's advice to load with weights_only=False.

    A file that fails the safe loader must not be loaded unsafely on a log
    line's word.
    """
    parts = re.split(r"(?<=\.)\s+|\n+", text)
    keep = [p.strip() for p in parts if p.strip() and not re.search(
        r"weights_only|file an issue|Check the documentation|Do it only if", p)]
    brief = " ".join(keep)
    brief += ")" * (brief.count("(") - brief.count(")"))  # the advice held the closing one
    return brief if len(brief) <= limit else brief[:limit] + "..."


__all__ = ["Fuser", "AverageFuser", "MaxFuser", "MultiScaleFuser", "create_fuser",
           "CLASSIC_FUSERS", "FUSER_NAMES", "FALLBACK_FUSER"]
