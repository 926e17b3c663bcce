"""
Stamp order of the input streams, and source restarts (a looping bag) across them.

Each stream's stamps must increase.  A jump *back* by more than ``max_gap_ns`` is not a
stray frame but a restarted source: ``rosbag2 play --loop`` or a replayed recording.  The
streams of one bag loop together but not in the same instant: the thermal frame of the
new loop may arrive while RGB frames of the old loop are still in flight.  So the first
stream to jump back starts a new epoch (``RESTART``: reset pairing and memory once); each
other stream then has ``follow_s`` seconds of wall time to follow it: its frames from the
old loop are ``STALE`` (dropped quietly) and its first frame of the new loop is
``FOLLOW`` (counted as a restart of that stream, no second reset).
"""

from __future__ import annotations

from enum import Enum
from typing import Iterable


class StampOrderError(ValueError):
    """
    A duplicate or out-of-order stamp: the frame is dropped.

    ``duplicate`` tells the two apart (a repeated stamp is a resent frame, not a
    broken one).
    """

    def __init__(self, message: str, duplicate: bool = False):
        super().__init__(message)
        self.duplicate = duplicate


class Verdict(Enum):
    ACCEPT = "accept"    # the next frame of the stream
    RESTART = "restart"  # this stream jumped back: a new epoch, reset pairing and memory
    FOLLOW = "follow"    # this stream's first frame of the epoch another stream started
    STALE = "stale"      # a frame from before the restart, still in flight: drop it


class StampOrder:
    """Classifies each stamp of each stream; see the module docstring.  One thread only."""

    def __init__(self, streams: Iterable[str], max_gap_ns: int, follow_s: float = 2.0):
        self.streams = tuple(streams)
        self.max_gap_ns = int(max_gap_ns)
        self.follow_s = float(follow_s)
        self._last: dict[str, int | None] = dict.fromkeys(self.streams)
        self._awaiting: dict[str, tuple[int, float]] = {}  # stream -> (epoch stamp, deadline)

    def check(self, stream: str, stamp_ns: int, now: float) -> Verdict:
        """
        Return the verdict for ``stamp_ns`` of ``stream`` received at monotonic time ``now``.

        Raises ``StampOrderError`` for a duplicate or out-of-order stamp.
        """
        if stream not in self._last:
            raise ValueError(f"unknown stream {stream!r}; expected one of {self.streams}")
        awaiting = self._awaiting.pop(stream, None)
        if awaiting is not None and now <= awaiting[1]:
            epoch = awaiting[0]
            if stamp_ns - epoch > self.max_gap_ns:
                self._awaiting[stream] = awaiting
                return Verdict.STALE
            self._last[stream] = stamp_ns
            return Verdict.FOLLOW
        last = self._last[stream]
        if last is not None and last - stamp_ns > self.max_gap_ns:
            self._last = dict.fromkeys(self.streams)
            self._last[stream] = stamp_ns
            self._awaiting = {other: (stamp_ns, now + self.follow_s)
                              for other in self.streams if other != stream}
            return Verdict.RESTART
        if last is not None and stamp_ns <= last:
            kind = "duplicate" if stamp_ns == last else "out-of-order"
            raise StampOrderError(f"{kind} stamp {stamp_ns / 1e9:.6f} s "
                                  f"(previous {last / 1e9:.6f} s)", duplicate=stamp_ns == last)
        self._last[stream] = stamp_ns
        return Verdict.ACCEPT

    def set_max_gap(self, max_gap_ns: int) -> None:
        self.max_gap_ns = int(max_gap_ns)
