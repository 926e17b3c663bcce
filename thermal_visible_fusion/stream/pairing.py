"""
Pair thermal and RGB frames by header stamp (ROS-free, no threads).

Used by the live node (messages from two topics) and offline (frames read from
a rosbag); both use :class:`StampPairer`, so both pair identically.

Why not ``message_filters.ApproximateTimeSynchronizer``: it is greedy, can emit
out of order, counts no drops and runs callbacks under its lock.

Matching rule: mutual nearest neighbours within slop
----------------------------------------------------
A thermal message ``t`` and an RGB message ``r`` are paired when

* ``r`` is the RGB message nearest to ``t`` (among all RGB messages of the
  stream), **and** ``t`` is the thermal message nearest to ``r``, and
* ``|r - t| <= slop_ns``.

Ties in distance go to the *earlier* candidate.  Every message has exactly one
nearest partner, so it can only ever be paired with that one: a message whose
nearest partner is farther than ``slop_ns``, or whose nearest partner prefers
someone closer ("lost to a better match"), is dropped as ``dropped_unmatched``.
Example (slop 15 ms): thermal 0, 33, 66 ms and RGB 20, 40 ms give exactly one
pair, (33, 40); first-fit would take (33, 20) and strand 40.

Mutual-nearest pairs never cross (no other message of either stream lies
strictly between the two stamps of a pair), so pairs come out strictly
increasing in both streams, and the result depends only on the stamps, not on
how the two streams interleave on arrival (as long as no queue overflows).
It is not "as many pairs as possible": when both streams run at similar rates
and ``slop_ns`` is half a frame period or more, a message can have two partners
within slop and chains of one-sided preferences lose frames.  For equal rates,
keep ``slop_ns`` below half the frame period.

When a pair is final
--------------------
Stamps within a stream are assumed to increase (anything else is dropped on
arrival), so every future message of stream ``s`` is newer than ``L_s``, the
newest stamp accepted on ``s``.  Hence the nearest ``s``-partner of a stamp
``x`` is final once ``L_s >= x``: any future ``s`` message is farther from
``x`` than the one at ``L_s``.

For a candidate ``x`` (stream A) and ``y`` (stream B) with ``x < y`` and no
other message between them (otherwise they are not mutual nearest):

* ``y`` is x's nearest B-partner, final as soon as ``y`` has arrived;
* x is y's nearest A-partner unless the *next* A message ``a`` after ``x``
  satisfies ``a - y < y - x``.  So the pair waits for stream A's next message
  ``a`` (or :meth:`StampPairer.flush`): it is emitted if ``a - y >= y - x``
  and ``y - x <= slop_ns``, otherwise ``x`` is dropped and ``y`` waits on.

A message is dropped as soon as its nearest partner is known and is farther
than ``slop_ns`` or provably prefers someone else.  In practice:

* an exact-stamp pair is emitted the moment its second message arrives
  (together with any older pairs this makes final);
* with a constant offset (RGB 5 ms after thermal) a pair is emitted when the
  next frame of the earlier stream arrives: at most one frame of delay -- unless that
  stream's rate is steady (``rate_aware``, the default): once it has sent
  ``STEP_MIN_SAMPLES`` steps with none much shorter than their median, its next stamp
  is taken to be at least ``STEP_MARGIN`` times its shortest recent step away, and a
  pair whose stamps differ by at most half that is emitted the moment its second
  message arrives (with ``slop_ns`` below half the frame period: every pair).  Only a
  camera that suddenly sends faster than it did can then make a pair the rule above
  would not; ``rate_aware=False`` keeps the rule exact whatever the stamps;
* if one stream goes silent the other waits, bounded by ``queue_size``; when
  the waiting queue overflows while its oldest message is the partner of a pair
  that only waits for the silent stream's next frame (a thermal camera pausing
  for its flat-field correction), that pair is emitted as :meth:`flush` would
  emit it, instead of losing both frames.

Messages are resolved oldest first; if the oldest pending message cannot be
decided yet, no newer one can be either, so nothing is held back needlessly.
Each :meth:`StampPairer.add` is O(queue_size).

Counters
--------
Every received message ends in exactly one bucket: ``paired``,
``dropped_unmatched``, ``dropped_overflow``, ``dropped_out_of_order``,
``duplicates``, ``dropped_reset`` -- or is still pending (:meth:`pending`)::

    received == paired + dropped_* + duplicates + pending
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
import operator
from typing import Generic, TypeVar

T = TypeVar("T")

THERMAL = "thermal"
RGB = "rgb"
STREAMS = (THERMAL, RGB)


@dataclass(frozen=True)
class Pair(Generic[T]):
    """One thermal frame and the RGB frame paired with it."""

    thermal_stamp_ns: int
    thermal: T
    rgb_stamp_ns: int
    rgb: T

    @property
    def skew_ns(self) -> int:
        """RGB stamp minus thermal stamp (positive: RGB is later)."""
        return self.rgb_stamp_ns - self.thermal_stamp_ns


@dataclass
class StreamStats:
    """Counters for one stream; see the module docstring for the invariant."""

    received: int = 0
    paired: int = 0
    dropped_unmatched: int = 0  # nearest partner beyond slop, or it took a closer match
    dropped_overflow: int = 0  # oldest pending message pushed out of a full queue
    dropped_out_of_order: int = 0  # older than the newest accepted stamp of the stream
    duplicates: int = 0  # same stamp as the newest accepted / a queued / the last paired
    dropped_reset: int = 0  # still pending when reset() was called

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


STEP_HISTORY = 16  # stamp steps kept per stream to bound its next step from below
STEP_MIN_SAMPLES = 8  # steps needed before that bound is trusted
STEP_MARGIN = 0.9  # the next step may be this much shorter than the shortest seen (jitter)
STEADY_RATIO = 0.85  # a steady rate: no recent step below this fraction of the median


class _Stream:
    __slots__ = ("name", "queue", "newest", "last_resolved", "last_paired", "steps", "stats")

    def __init__(self, name: str):
        self.name = name
        self.queue: deque[tuple[int, object]] = deque()  # pending, stamps increasing
        self.newest: int | None = None  # newest accepted stamp (L_s)
        self.last_resolved: int | None = None  # newest stamp paired or dropped unmatched
        self.last_paired: int | None = None
        self.steps: deque[int] = deque(maxlen=STEP_HISTORY)  # recent accepted stamp steps
        self.stats = StreamStats()

    def accept(self, stamp_ns: int) -> None:
        if self.newest is not None:
            self.steps.append(stamp_ns - self.newest)
        self.newest = stamp_ns

    def shortest_next_step(self) -> float | None:
        """
        Return a lower bound on the step to this stream's next stamp, or None.

        Only a camera with a steady rate has one (drops only lengthen steps, so the
        shortest recent step is its frame period less jitter; irregular stamps give
        no bound).
        """
        if len(self.steps) < STEP_MIN_SAMPLES:
            return None
        shortest = min(self.steps)
        if shortest < STEADY_RATIO * sorted(self.steps)[len(self.steps) // 2]:
            return None
        return STEP_MARGIN * shortest

    def clear(self) -> None:
        self.stats.dropped_reset += len(self.queue)
        self.queue.clear()
        self.steps.clear()
        self.newest = self.last_resolved = self.last_paired = None


class StampPairer(Generic[T]):
    """
    Pairs thermal and RGB messages by stamp; see the module docstring for the rule.

    Not thread-safe by design (no locks): call it from one thread.
    """

    def __init__(self, slop_ns: int, queue_size: int = 10, rate_aware: bool = True):
        slop_ns = operator.index(slop_ns)
        queue_size = operator.index(queue_size)
        if slop_ns < 0:
            raise ValueError(f"slop_ns must be >= 0, got {slop_ns}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.slop_ns = slop_ns
        self.queue_size = queue_size
        self.rate_aware = rate_aware
        self._streams = {name: _Stream(name) for name in STREAMS}

    # ------------------------------------------------------------------ public
    def add(self, stream: str, stamp_ns: int, item: T) -> list[Pair[T]]:
        """
        Queue one message; return the pairs it made final, in increasing stamp order.

        Out-of-order or duplicate stamps are dropped and counted; if the
        stream's queue then exceeds ``queue_size``, its oldest message is dropped
        (``dropped_overflow``) and forgotten, as if it had never arrived -- unless it
        is the partner of a pair that only waits for the other stream's next frame:
        that pair is then emitted, decided as :meth:`flush` would.
        """
        s = self._stream(stream)
        stamp_ns = operator.index(stamp_ns)
        s.stats.received += 1
        if s.newest is not None and stamp_ns <= s.newest:
            if (
                stamp_ns == s.newest
                or stamp_ns == s.last_paired
                or any(q == stamp_ns for q, _ in s.queue)
            ):
                s.stats.duplicates += 1
            else:
                s.stats.dropped_out_of_order += 1
            return []
        s.accept(stamp_ns)
        s.queue.append((stamp_ns, item))
        out: list[Pair[T]] = []
        waiting_pair = self._resolve(out, final=False)
        while len(s.queue) > self.queue_size:
            if waiting_pair:
                # s's oldest is the partner of the other stream's only pending message,
                # which waits for that stream's next frame: decide it as flush() would
                # rather than drop both.  (The waiting stream holds one message, so
                # the overflowing one is the partner's.)
                self._emit(out)
            else:
                s.queue.popleft()
                s.stats.dropped_overflow += 1
            waiting_pair = self._resolve(out, final=False)
        return out

    def count_duplicate(self, stream: str) -> None:
        """
        Count a message dropped as a duplicate of the stream's newest stamp.

        Count a message dropped before pairing because its stamp repeats the stream's
        newest one (the caller checked stamp order itself), keeping the invariant.
        """
        stats = self._stream(stream).stats
        stats.received += 1
        stats.duplicates += 1

    def flush(self) -> list[Pair[T]]:
        """
        Decide every pending message as if neither stream will send again.

        For the end of an offline bag: the last pair otherwise waits for a next
        frame that never comes.  Returns the final pairs; afterwards nothing is
        pending.  Later messages are still accepted (stamps must keep
        increasing), but the pairs decided here are not revisited.
        """
        out: list[Pair[T]] = []
        self._resolve(out, final=True)
        return out

    def pending(self, stream: str) -> int:
        """Messages of ``stream`` queued and not yet paired or dropped."""
        return len(self._stream(stream).queue)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per-stream counters: ``{"thermal": {...}, "rgb": {...}}`` (a copy)."""
        return {name: s.stats.as_dict() for name, s in self._streams.items()}

    def reset(self) -> None:
        """
        Forget queues and stamp history, e.g. when a bag loops and stamps jump back.

        Pending messages are counted as ``dropped_reset``; all counters persist
        (use :meth:`reset_stats` to zero them).  After a reset any stamp is
        accepted again.
        """
        for s in self._streams.values():
            s.clear()

    def reset_stats(self) -> None:
        """
        Zero all counters; queues and stamp history are kept.

        Messages pending at this moment are counted in a bucket when they
        resolve but not as received, so the invariant holds again once they have.
        """
        for s in self._streams.values():
            s.stats = StreamStats()

    # ---------------------------------------------------------------- internal
    def _stream(self, stream: str) -> _Stream:
        try:
            return self._streams[stream]
        except (KeyError, TypeError):
            raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}") from None

    def _drop_unmatched(self, s: _Stream) -> None:
        stamp, _ = s.queue.popleft()
        s.last_resolved = stamp
        s.stats.dropped_unmatched += 1

    def _emit(self, out: list[Pair[T]]) -> None:
        th, rg = self._streams[THERMAL], self._streams[RGB]
        (ts, ti), (rs, ri) = th.queue.popleft(), rg.queue.popleft()
        for s, stamp in ((th, ts), (rg, rs)):
            s.last_resolved = s.last_paired = stamp
            s.stats.paired += 1
        out.append(Pair(ts, ti, rs, ri))  # type: ignore[arg-type]

    def _resolve(self, out: list[Pair[T]], final: bool) -> bool:
        """
        Decide pending messages oldest first until the oldest cannot be decided.

        Returns True when it stops at a pair (the heads of both queues) that only
        waits for the next frame of the stream of its older stamp, False otherwise.

        Invariant: everything already paired or dropped-unmatched is older than
        (or as old as) everything pending, in both streams.  So for the oldest
        pending stamp ``x`` (stream A), its nearest B-partner is either B's last
        resolved message (<= x) or B's queue head (>= x).
        """
        th, rg = self._streams[THERMAL], self._streams[RGB]
        while th.queue or rg.queue:
            if th.queue and rg.queue and th.queue[0][0] == rg.queue[0][0]:
                self._emit(out)  # exact stamps: nearest possible on both sides
                continue
            if not rg.queue or (th.queue and th.queue[0][0] < rg.queue[0][0]):
                a, b = th, rg
            else:
                a, b = rg, th
            x = a.queue[0][0]
            if not b.queue:
                # The nearest B-partner of x is final once B has reached x; it is
                # then an already-resolved (or forgotten) message: x cannot pair.
                if final or (b.newest is not None and b.newest >= x):
                    self._drop_unmatched(a)
                    continue
                return False
            y = b.queue[0][0]  # y > x
            d = y - x
            if b.last_resolved is not None and x - b.last_resolved <= d:
                self._drop_unmatched(a)  # nearest B is already resolved (tie: earlier)
                continue
            # Now y is x's nearest B (future B messages are beyond y): final.
            if d > self.slop_ns:
                self._drop_unmatched(a)
                continue
            # Is x the nearest A to y?  Older A messages are farther than x.
            if len(a.queue) > 1:
                a1 = a.queue[1][0]
                if a1 - y < d:  # a1 is nearer to y (ties go to the earlier, x)
                    self._drop_unmatched(a)  # y prefers a1; y stays queued
                else:
                    self._emit(out)
                continue
            # A future A message in (x, 2y - x) would be nearer to y.  None can come
            # if A's next step is known to be at least 2d: emit without waiting.
            step = a.shortest_next_step() if self.rate_aware else None
            if final or (step is not None and step >= 2 * d):
                self._emit(out)
                continue
            return True  # wait for A's next message
        return False
