"""
How many CPU threads torch gives the network: chosen by measurement, and re-checked.

On an idle CPU more intra-op threads fuse a frame faster.  On a shared one (DDS, image
decoding and the executor in the node, other processes on the robot) a thread that loses
its core holds up every parallel region it is in, and one thread is faster.  On the
2-core development machine, 2 threads ran the engine at about 44 fps idle but 20 with one
core busy, where 1 thread ran 27; in the node at 30 Hz, 1 thread fused 293 of 301 frames
and 2 threads 246.  Which case a robot is in changes over its day, so ``ThreadTuner``
times the candidate counts in turn every few seconds and keeps the fastest.
"""

from __future__ import annotations

from collections import deque
import statistics
from typing import Sequence

import torch

# torch's own choice (the cores, or OMP_NUM_THREADS), read before any tuner changes it: the
# most threads a fuser uses when it is not told
DEFAULT_MOST = torch.get_num_threads()


class ThreadTuner:
    """
    Pick torch's thread count among ``counts`` by the frame times it sees.

    A trial runs ``trial`` turns (of ``cycle`` frames) at each count, interleaved (a load
    spike hits all of them alike), and keeps the count with the lowest median; another
    count must be ``margin`` faster to replace the current one.  Then ``period`` frames
    run at it before the next trial, or fewer: when the median of the last ``trial``
    turns grows ``slower`` times the trial's (another process took a core), a new trial
    starts at once.  ``begin()`` before a frame sets the count, ``end(seconds)`` after it records
    the frame's time.  ``cycle=k``: frame times repeat a pattern of k frames (the learned
    fuser estimates on every k-th frame), so every timing is the mean over k frames in a
    row, and in a trial each count runs k frames at a turn: counts taking single turns
    would each meet the slow frames of the cycle on one phase only.
    """

    def __init__(self, counts: Sequence[int], trial: int = 5, period: int = 300,
                 margin: float = 0.1, slower: float = 1.5, cycle: int = 1):
        self.counts = sorted({int(c) for c in counts if int(c) >= 1})
        if not self.counts or trial < 1 or period < 0 or not 0 <= margin < 1 or \
                slower <= 1 or cycle < 1:
            raise ValueError("need counts >= 1, trial >= 1, period >= 0, 0 <= margin < 1, "
                             "slower > 1, cycle >= 1")
        self.trial, self.period, self.margin, self.slower = trial, period, margin, slower
        self.cycle = cycle
        self.current = self.counts[-1]
        self.trials = 0  # completed, for diagnostics and tests
        self.restart()

    def restart(self) -> None:
        """Forget the timings and start a new trial with the next frame."""
        self._plan = [c for _ in range(self.trial) for c in self.counts
                      for _ in range(self.cycle)] if len(self.counts) > 1 else []
        self._times: dict[int, list[float]] = {c: [] for c in self.counts}
        self._running: int | None = None
        self._left = 0  # frames before the next trial
        self._recent: deque[float] = deque(maxlen=self.trial * self.cycle)
        self._reference = float("inf")  # the trial's median at the chosen count

    def begin(self) -> int:
        """Set the thread count for the next frame, and return it."""
        if not self._plan and self._left == 0 and len(self.counts) > 1:
            self.restart()
        self._running = self._plan.pop(0) if self._plan else self.current
        if torch.get_num_threads() != self._running:
            torch.set_num_threads(self._running)
        return self._running

    def end(self, seconds: float) -> None:
        """Record the time of the frame begun last."""
        if self._running is None or len(self.counts) == 1:
            return
        if self._left > 0:
            self._left -= 1
            self._recent.append(seconds)
            if len(self._recent) == self._recent.maxlen and \
                    self._median(list(self._recent)) > self.slower * self._reference:
                self._left = 0  # the load changed: try the counts again now
        else:
            self._times[self._running].append(seconds)
            if not self._plan:
                self._decide()
        self._running = None

    def _median(self, times: list[float]) -> float:
        """Return the median over whole cycles of their mean frame time."""
        k = self.cycle
        if len(times) < k:  # a trial cut short (a frame failed): what there is
            return statistics.fmean(times)
        return statistics.median(statistics.fmean(times[i:i + k])
                                 for i in range(0, len(times) - k + 1, k))

    def _decide(self) -> None:
        medians = {c: self._median(t) for c, t in self._times.items() if t}
        best = min(medians, key=medians.get)
        if best != self.current and medians[best] < (1 - self.margin) * medians.get(
                self.current, float("inf")):
            self.current = best
        self.trials += 1
        self._left = self.period
        self._reference = medians[self.current]
        torch.set_num_threads(self.current)
