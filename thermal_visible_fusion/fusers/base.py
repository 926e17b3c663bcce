"""The interface every fuser implements, learned or not."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Fuser(Protocol):
    """
    Fuses one registered thermal/RGB pair, possibly using memory of earlier pairs.

    ``fuse`` takes ``thermal`` as (H, W) uint8 and ``rgb`` as (H, W, 3) uint8 BGR of
    the same size (the engine has already normalised and registered them) and
    returns (H, W, 3) uint8 BGR of that size.  Stateless fusers make ``reset`` a no-op.
    """

    name: str

    def fuse(self, thermal: np.ndarray, rgb: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...
