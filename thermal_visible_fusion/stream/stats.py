"""
Bounded running statistics for the node's diagnostics (ROS-free).

Every window here has a fixed size, so a node that runs for weeks keeps the
same memory footprint whatever its inputs do.
"""

from __future__ import annotations

from collections import deque
import threading

import numpy as np


class RateWindow:
    """
    Events per second over the last ``window`` seconds of monotonic time.

    Thread-safe: the node's worker adds while its diagnostics timer reads (and trims).
    """

    def __init__(self, window: float = 2.0, max_events: int = 1000):
        self.window = window
        self._times: deque[float] = deque(maxlen=max_events)
        self._lock = threading.Lock()

    def add(self, now: float) -> None:
        with self._lock:
            self._times.append(now)

    def rate(self, now: float) -> float:
        with self._lock:
            while self._times and now - self._times[0] > self.window:
                self._times.popleft()
            if len(self._times) < 2:
                return 0.0
            return (len(self._times) - 1) / max(now - self._times[0], 1e-9)


class StampLossEstimator:
    """
    Estimates frames lost before they reached us, from gaps in header stamps.

    The nominal period is the median of recent stamp steps; a step of n periods
    (n >= 1.5) means about n - 1 frames never arrived.  Needs no knowledge of
    the camera's configured rate, so it works for any camera.

    A step longer than ``max_step_ns`` is a jump of the stamps (a clock set years
    ahead, a paused recording), not frames dropped in transport: it is counted in
    ``jumps`` and adds nothing to ``lost``, so one bad stamp cannot add billions.
    """

    def __init__(self, history: int = 30, max_step_ns: int | None = None):
        self._steps: deque[int] = deque(maxlen=history)
        self._last: int | None = None
        self.max_step_ns = max_step_ns
        self.lost = 0
        self.jumps = 0

    def reset(self) -> None:
        self._steps.clear()
        self._last = None

    def add(self, stamp_ns: int) -> int:
        """Record a stamp; returns the number of frames estimated lost just before it."""
        last, self._last = self._last, stamp_ns
        if last is None or stamp_ns <= last:
            return 0
        step = stamp_ns - last
        if self.max_step_ns is not None and step > self.max_step_ns:
            self.jumps += 1
            return 0
        lost = 0
        if len(self._steps) >= 5:
            period = float(np.median(self._steps))
            if period > 0 and step >= 1.5 * period:
                lost = int(round(step / period)) - 1
        if lost == 0:
            self._steps.append(step)  # only normal steps define the period
        self.lost += lost
        return lost

    @property
    def period_s(self) -> float | None:
        return float(np.median(self._steps)) / 1e9 if self._steps else None


class LatencyWindow:
    """Percentiles of the most recent latencies (seconds); one thread adds, another reads."""

    def __init__(self, size: int = 300):
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append(seconds)

    def percentile(self, q: float) -> float | None:
        with self._lock:
            values = list(self._values)
        return float(np.percentile(values, q)) if values else None
