"""``tvf fuse``: fuse an mp4 pair or two frame folders offline, one PNG per frame.

Runs the same ``FusionEngine`` as the live node, frame by frame in order, so
what you see here is what the node publishes for the same input.  Writes
``OUT/NNNN.png`` for every input pair, named by the pair's index.

Weights asked for explicitly (``--fuser learned`` or ``--weights FILE``) must
load: unlike the live node, which falls back to the multi-scale fuser so it
keeps publishing, a failure here is an error (exit status 2).  ``--fuser auto``
without ``--weights`` quietly uses the multi-scale fuser when no trained
weights are shipped.

``--lookahead K`` (learned fuser with memory only) lets the network see K
future frames; the fuser then answers K frames late, which
:class:`DelayedEngine` undoes, so every PNG still holds its own frame.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from thermal_visible_fusion.fusers import CLASSIC_FUSERS, FALLBACK_FUSER, FUSER_NAMES


def add_arguments(parser) -> None:
    parser.add_argument("--ir", required=True, help="thermal mp4 or frame folder")
    parser.add_argument("--rgb", required=True, help="RGB mp4 or frame folder")
    parser.add_argument("--out", required=True, help="output folder for NNNN.png")
    parser.add_argument("--fuser", default="auto", choices=FUSER_NAMES)
    parser.add_argument("--weights", default="", help="weights of the learned fuser")
    parser.add_argument("--no-memory", action="store_true",
                        help="reset the temporal memory before every frame (still-image fusion)")
    parser.add_argument("--lookahead", type=int, default=0,
                        help="frames of look-ahead for the learned fuser with memory "
                             "(adds latency)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")


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
    """``FusionEngine.process`` with each fused frame handed back with ITS pair.

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
        self._last_shapes: tuple | None = None
        self._last_stamp: int | None = None
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
        """The pairs still held back, with their frames (empty without look-ahead)."""
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
        """The engine's reset rules (see ``engine.py``), checked before the pair is fused."""
        shapes, last = (thermal.shape, rgb.shape), self._last_stamp
        changed = self._last_shapes is not None and shapes != self._last_shapes
        self._last_shapes, self._last_stamp = shapes, stamp_ns
        return changed or (last is not None and (
            stamp_ns < last or stamp_ns - last > self.engine.config.max_stamp_gap * 1e9))

    def _emit(self, entry, fused: np.ndarray):
        info, result, rgb = entry
        if result.frames_since_reset == 0:
            self._monitor.reset()
        sample = self._monitor.update(fused, result.thermal, rgb)
        return info, replace(result, fused=fused, temporal=sample)


def _fail(message: str) -> int:
    print(f"tvf fuse: error: {message}", file=sys.stderr)
    return 2


def main(args) -> int:
    from thermal_visible_fusion.engine import EngineConfig, FusionEngine
    from thermal_visible_fusion.sources import open_pair

    problem = lookahead_problem(args.lookahead, args.fuser, not args.no_memory)
    if problem:
        return _fail(problem)
    config = EngineConfig(fuser=args.fuser, weights=args.weights, device=args.device,
                          use_memory=not args.no_memory, lookahead=args.lookahead)
    engine = FusionEngine(config)
    if engine.fuser_warning:
        if args.fuser == "learned" or args.weights:
            # asked for by name: no silent fallback (that is for the live node only)
            return _fail(engine.fuser_warning.removesuffix(f"; falling back to {FALLBACK_FUSER}"))
        print(f"warning: {engine.fuser_warning}", file=sys.stderr)
    if args.weights and args.fuser in CLASSIC_FUSERS:
        print(f"warning: --weights is ignored by the {args.fuser} fuser", file=sys.stderr)
    if args.lookahead and engine.fuser.name != "learned":
        return _fail(f"--lookahead needs the learned fuser, but --fuser {args.fuser} found no "
                     f"learned weights and uses {engine.fuser.name}; pass --weights FILE")
    out = Path(args.out)
    try:
        source = open_pair(args.ir, args.rgb)
    except (FileNotFoundError, ValueError) as error:
        return _fail(str(error))
    out.mkdir(parents=True, exist_ok=True)
    runner = DelayedEngine(engine, args.lookahead)
    count = written = 0

    def write(done) -> None:
        nonlocal written
        for index, result in done:
            if not cv2.imwrite(str(out / f"{index:04d}.png"), result.fused):
                raise OSError(f"cannot write {out / f'{index:04d}.png'}")
            written += 1

    with source:
        period_ns = round(1e9 / (source.fps or 30.0))
        print(f"fusing {len(source)} frames with {engine.describe()}"
              + (f", look-ahead {args.lookahead}" if args.lookahead else ""), file=sys.stderr)
        start = time.perf_counter()
        for pair in source:
            write(runner.push(pair.thermal, pair.rgb, pair.index * period_ns, pair.index))
            count += 1
        write(runner.flush())
    seconds = time.perf_counter() - start
    assert written == count, f"wrote {written} frames for {count} pairs"
    print(f"wrote {count} frames to {out} ({count / max(seconds, 1e-9):.1f} fps)", file=sys.stderr)
    return 0
