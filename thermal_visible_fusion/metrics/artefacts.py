"""
Artefact metrics of one fused frame (no reference needed).

Block-grid energy: a network that works on patches or strided features can print
a faint grid on its output, steps in brightness between neighbouring pixels that
straddle a block boundary.  For a block size ``b`` the boundaries are the column
and row seams at multiples of ``b`` (between pixel ``k*b - 1`` and ``k*b``); the
energy is the mean absolute step between neighbouring pixels across those seams
divided by the mean absolute step across every other seam, horizontal and vertical
pooled.  1.0 means no grid (natural images stay within a few percent of it); a
pattern of period ``b`` raises it above 1 for ``b`` and for its multiples.
:func:`block_grid_energy` combines the sizes by their maximum, so a grid of any
of them shows.  Frames are scored in gray (BGR is converted with BT.601).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["block_grid_energy", "block_grid_profile"]


def _gray(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.shape[2] == 3 else frame[..., 0]
    return frame.astype(np.float32)


def block_grid_profile(frame: np.ndarray, blocks: tuple[int, ...] = (2, 4, 8)) -> dict[int, float]:
    """Block-grid energy per block size (see the module docstring)."""
    gray = _gray(frame)
    steps = (np.abs(np.diff(gray, axis=1)), np.abs(np.diff(gray, axis=0)).T)  # seams along axis 1
    out: dict[int, float] = {}
    for b in blocks:
        if b < 2:
            raise ValueError(f"block size must be >= 2, got {b}")
        on_sum = off_sum = 0.0
        on_n = off_n = 0
        for s in steps:
            seam = (np.arange(s.shape[1]) + 1) % b == 0  # step j is between pixels j and j+1
            on, off = s[:, seam], s[:, ~seam]
            on_sum, on_n = on_sum + float(on.sum(dtype=np.float64)), on_n + on.size
            off_sum, off_n = off_sum + float(off.sum(dtype=np.float64)), off_n + off.size
        if on_n == 0 or off_n == 0 or off_sum == 0:
            out[b] = 1.0 if on_sum == 0 else float("inf")  # too small or flat: no grid to tell
            continue
        out[b] = (on_sum / on_n) / (off_sum / off_n)
    return out


def block_grid_energy(frame: np.ndarray, blocks: tuple[int, ...] = (2, 4, 8)) -> float:
    """Return the largest block-grid energy over ``blocks``; 1.0 means no grid."""
    return max(block_grid_profile(frame, blocks).values())
