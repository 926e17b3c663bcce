"""
InputGate: every check between an input image message and a fusable pair (ROS-free).

The live node (from its subscription callbacks) and ``tvf evaluate`` (from a bag) hand
each image message to an ``InputGate``, so a bag replays exactly like the live node: the
same frames dropped for the same reasons, the same counters, the same restarts of a
looping bag.  Each message, in order:

1. is counted as received (receipt time, ``frame_id``, arrival rate);
2. is decoded with ``max_pixels`` (a bigger frame is refused from its declared size,
   before decoding: an error, also counted as ``oversize``);
3. is refused if degenerate (a side under ``engine.MIN_SIDE``, an aspect ratio over
   ``engine.MAX_ASPECT``) or if it holds NaN/inf pixels;
4. has its stamp checked (``StampOrder``): a repeated stamp is a resent frame, counted
   with the pairing's ``duplicates``; an older one is an error; a jump back by more than
   ``max_stamp_gap`` is a restarted source (a looping bag): the first input to jump
   restarts the pairing once, the other input's frames of the old loop still in flight
   are dropped as ``stale``, and its first frame of the new loop follows (``restarts``
   counts both inputs' jumps);
5. is paired (``StampPairer``): ``offer`` returns the pairs it completed.

Errors are counted per input with the text of the last one; logging is the caller's
(``Offer`` says what happened).  Receipt times are the caller's clock: the node's
monotonic time, the bag's log time offline.  Not thread-safe: one thread calls it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from thermal_visible_fusion.engine import geometry_problem
from thermal_visible_fusion.stream.image_codec import ImageFormatError, OversizeImageError
from thermal_visible_fusion.stream.pairing import Pair, RGB, StampPairer, THERMAL
from thermal_visible_fusion.stream.stamp_order import StampOrder, StampOrderError, Verdict
from thermal_visible_fusion.stream.stats import RateWindow, StampLossEstimator

TEXT_MAX = 300  # characters of message text (an error, a frame_id) kept in counters


@dataclass(frozen=True)
class Frame:
    """One accepted input frame, as paired."""

    image: np.ndarray
    stamp_ns: int
    frame_id: str
    receipt: float  # when it was received, on the caller's clock (seconds)
    meta: Any = None  # the caller's own (the node: the message header)


@dataclass
class InputCounters:
    """What the gate knows about one input stream."""

    received: int = 0
    errors: int = 0  # dropped as bad: decoding, size, NaN/inf, stamp order
    oversize: int = 0  # of the errors: over max_pixels
    last_error: str = ""
    restarts: int = 0  # jumps back of this input's stamps (a looping source)
    stale: int = 0  # frames of a loop that another input had already restarted
    last_receipt: float | None = None
    frame_id: str = ""  # of the last message: the camera
    rate: RateWindow = field(default_factory=RateWindow)
    loss: StampLossEstimator = field(default_factory=StampLossEstimator)


@dataclass(frozen=True)
class Offer:
    """What ``InputGate.offer`` did with one message."""

    pairs: list[Pair[Frame]] = field(default_factory=list)
    dropped: str = ""  # "" (accepted), "error", "duplicate" or "stale"
    error: str = ""  # why, for "error" and "duplicate" (cut to TEXT_MAX)
    restart: Verdict | None = None  # RESTART (the pairing restarted) or FOLLOW

    @property
    def accepted(self) -> bool:
        """Handed to the pairer (paired now, pending, or later dropped by it)."""
        return not self.dropped


Decoder = Callable[[int | None], np.ndarray]  # max_pixels -> image; ImageFormatError


class InputGate:
    """See the module docstring.  ``streams``: thermal and RGB, as the pairer has them."""

    def __init__(self, slop_ns: int, queue_size: int, max_gap_ns: int,
                 max_pixels: int | None = None, follow_s: float = 2.0):
        self.pairer: StampPairer[Frame] = StampPairer(slop_ns, queue_size)
        self.order = StampOrder((THERMAL, RGB), max_gap_ns, follow_s)
        self.max_pixels = max_pixels
        self.inputs = {stream: InputCounters() for stream in (THERMAL, RGB)}
        self.set_max_gap(max_gap_ns)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> InputGate:
        """
        Make a gate with the node parameters of its limits.

        A gate with the node parameters ``sync_slop``, ``queue_size``, ``max_stamp_gap``
        and ``max_pixels``.
        """
        return cls(round(params["sync_slop"] * 1e9), params["queue_size"],
                   round(params["max_stamp_gap"] * 1e9), params["max_pixels"])

    def update(self, params: Mapping[str, Any]) -> None:
        """Apply changed node parameters (those of ``from_params`` that can change)."""
        if "sync_slop" in params:
            self.pairer.slop_ns = round(params["sync_slop"] * 1e9)
        if "max_stamp_gap" in params:
            self.set_max_gap(round(params["max_stamp_gap"] * 1e9))
        if "max_pixels" in params:
            self.max_pixels = params["max_pixels"]

    def set_max_gap(self, max_gap_ns: int) -> None:
        self.order.set_max_gap(max_gap_ns)
        for counters in self.inputs.values():  # a longer step is a stamp jump, not loss
            counters.loss.max_step_ns = int(max_gap_ns)

    # ------------------------------------------------------------------ input
    def offer(self, stream: str, stamp_ns: int, image: np.ndarray | Decoder, *,
              receipt: float, frame_id: str = "", meta: Any = None) -> Offer:
        """
        Offer one image message of ``stream``.

        ``image`` decoded, or a decoder called with ``max_pixels``.  Returns the
        pairs it completed, or why it was dropped.
        """
        counters = self.inputs[stream]
        counters.received += 1
        counters.last_receipt = receipt
        counters.frame_id = frame_id[:TEXT_MAX]  # message text: cut short
        counters.rate.add(receipt)
        try:
            array = self._checked(stream, image)
            verdict = self.order.check(stream, stamp_ns, receipt)
        except StampOrderError as error:
            if error.duplicate:  # a resent frame: counted with the pairing's duplicates
                self.pairer.count_duplicate(stream)
                return Offer(dropped="duplicate", error=_cut(str(error)))
            return self._error(counters, str(error))
        except ImageFormatError as error:
            return self._error(counters, str(error))
        if verdict is Verdict.STALE:
            counters.stale += 1
            return Offer(dropped="stale")
        restart = None
        if verdict is not Verdict.ACCEPT:  # this input's source jumped back
            restart = verdict
            counters.restarts += 1
            counters.loss.reset()
            if verdict is Verdict.RESTART:  # the first input to jump: restart pairing once
                self.pairer.reset()
        counters.loss.add(stamp_ns)
        frame = Frame(array, stamp_ns, frame_id, receipt, meta)
        return Offer(pairs=self.pairer.add(stream, stamp_ns, frame), restart=restart)

    def _checked(self, stream: str, image: np.ndarray | Decoder) -> np.ndarray:
        if callable(image):
            try:
                image = image(self.max_pixels)
            except OversizeImageError:
                self.inputs[stream].oversize += 1
                raise
        elif self.max_pixels is not None and image.shape[0] * image.shape[1] > self.max_pixels:
            self.inputs[stream].oversize += 1
            raise OversizeImageError(f"image {image.shape[1]}x{image.shape[0]} "
                                     f"({image.shape[0] * image.shape[1]} pixels) exceeds "
                                     f"max_pixels={self.max_pixels}")
        if problem := geometry_problem(*image.shape[:2]):  # before any work on it
            raise ImageFormatError(problem)
        if image.dtype.kind == "f" and not np.isfinite(image).all():
            raise ImageFormatError(f"{np.count_nonzero(~np.isfinite(image))} NaN/inf pixels")
        return image

    @staticmethod
    def _error(counters: InputCounters, text: str) -> Offer:
        text = _cut(text)
        counters.errors += 1
        counters.last_error = text
        return Offer(dropped="error", error=text)

    def flush(self) -> list[Pair[Frame]]:
        """Return the pending pairs decided as if neither input will send again (end of a bag)."""
        return self.pairer.flush()

    # --------------------------------------------------------------- counters
    def pending(self, stream: str) -> int:
        return self.pairer.pending(stream)

    def pairing_stats(self) -> dict[str, dict[str, int]]:
        return self.pairer.stats()

    def input_values(self, stream: str) -> dict[str, Any]:
        """
        Return the input's counters under the names the node's /diagnostics uses.

        The input's counters under the names the node's /diagnostics publishes them
        (``tvf evaluate`` reports the same).
        """
        counters = self.inputs[stream]
        return {"received": counters.received, "errors": counters.errors,
                "oversize_frames": counters.oversize, "last_error": counters.last_error,
                "lost_estimate": counters.loss.lost, "stamp_jumps": counters.loss.jumps,
                "source_restarts": counters.restarts, "stale_after_restart": counters.stale,
                **{f"pairing_{k}": v for k, v in self.pairer.stats()[stream].items()}}


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_MAX else text[:TEXT_MAX] + "..."
