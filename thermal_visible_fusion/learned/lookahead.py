"""
Offline look-ahead: hand each fused frame back with the pair it belongs to.

The learned fuser with ``lookahead=K`` answers K frames late (see ``runtime.StreamingRunner``);
``tvf fuse`` and ``tvf evaluate`` use ``DelayedEngine`` so every output still carries
its own frame's name, stamp and sources.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any

import numpy as np

from thermal_visible_fusion.fusers import CLASSIC_FUSERS


def lookahead_problem(lookahead: int, fuser: str, use_memory: bool) -> str | None:
    """Why ``lookahead`` cannot be used with this fuser / memory setting, or None."""
    if lookahead < 0:
        return "--lookahead must be >= 0"
    if not lookahead:
        return None
    if not use_memory:
        return "--lookahead needs the temporal memory; it cannot be combined with --no-memory"
    if fuser in CLASSIC_FUSERS:
        return (f"--lookahead needs the learned fuser; the {fuser} fuser has no temporal "
                "memory to look ahead with")
    return None


class DelayedEngine:
    """
    ``FusionEngine.process`` with each fused frame handed back with ITS pair.

    With ``lookahead=K`` the learned fuser answers late: the call for the i-th pair
    since a memory reset returns frame max(0, i - K) (frame 0, with the look-ahead
    available so far, while the window fills), and ``fuser.flush()`` returns the
    frames after the last one returned.  ``push`` keeps the pairs whose final frame
    has not come out yet (at most K, plus the one being fused) and returns
    ``[(info, result)]`` for the pairs completed by this call, in input order, where
    ``result`` is the pair's own ``FusionResult`` with ``fused`` (and the temporal
    diagnostics, measured against the pair's own inputs) replaced by its final frame.
    ``flush`` returns the rest; it is also called before a pair that will make the
    engine reset its memory (size change, stamps backwards or a gap over
    ``max_stamp_gap``), since a reset would drop the frames held back.
    With ``lookahead=0`` it is a plain pass-through.
    """

    def __init__(self, engine, lookahead: int = 0):
        from thermal_visible_fusion.metrics.temporal import TemporalMonitor

        self.engine = engine
        self.lookahead = int(lookahead)
        if self.lookahead and not hasattr(engine.fuser, "flush"):
            raise ValueError(f"the {engine.fuser.name} fuser has no look-ahead")
        self.held: deque = deque()  # (info, result, rgb) of pairs waiting for their frame
        self._last_fused: np.ndarray | None = None
        self._monitor = TemporalMonitor(engine.config.diagnostics_width)

    def held_infos(self) -> list:
        return [info for info, _, _ in self.held]

    def push(self, thermal: np.ndarray, rgb: np.ndarray, stamp_ns: int, info: Any = None
             ) -> list[tuple[Any, Any]]:
        if not self.lookahead:
            return [(info, self.engine.process(thermal, rgb, stamp_ns))]
        ready = self.flush() if self._will_reset(thermal, rgb, stamp_ns) else []
        result = self.engine.process(thermal, rgb, stamp_ns)
        if result.frames_since_reset == 0 and self.held:
            raise RuntimeError(f"the engine reset its memory unexpectedly ({result.reset_reason})"
                               f" and dropped {len(self.held)} look-ahead frames")
        self.held.append((info, result, rgb))
        if len(self.held) > self.lookahead:
            ready.append(self._emit(self.held.popleft(), result.fused))
        else:
            self._last_fused = result.fused  # frame 0 of this stretch, so far
        return ready

    def flush(self) -> list[tuple[Any, Any]]:
        """Return the pairs still held back, with their frames (empty without look-ahead)."""
        if not self.lookahead:
            return []
        frames = list(self.engine.fuser.flush())
        if self.held and len(frames) == len(self.held) - 1:
            # fewer than K+1 pairs since the reset: frame 0 is the last push's output
            frames.insert(0, self._last_fused)
        if len(frames) != len(self.held):
            raise RuntimeError(f"look-ahead flush returned {len(frames)} frames for "
                               f"{len(self.held)} pairs")
        ready = [self._emit(entry, fused) for entry, fused in zip(self.held, frames)]
        self.held.clear()
        self._last_fused = None
        return ready

    def _will_reset(self, thermal: np.ndarray, rgb: np.ndarray, stamp_ns: int) -> bool:
        return bool(self.engine.reset_reason(thermal.shape, rgb.shape, stamp_ns))

    def _emit(self, entry, fused: np.ndarray):
        info, result, rgb = entry
        if result.frames_since_reset == 0:
            self._monitor.reset()
        sample = self._monitor.update(fused, result.thermal, rgb)
        return info, replace(result, fused=fused, temporal=sample)
