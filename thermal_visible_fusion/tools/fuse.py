"""
``tvf fuse``: fuse an mp4 pair or two frame folders offline, one PNG per frame.

Runs the same ``FusionEngine`` as the live node, frame by frame in order, so
what you see here is what the node publishes for the same input.  Writes
``OUT/NNNN.png`` for every input pair, named by the pair's index.  ``OUT`` is written
beside and renamed into place when every frame is done; an existing non-empty ``OUT`` is
refused unless ``--force`` (which replaces it whole).  An unreadable frame, or a video
that decodes fewer frames than it holds, is an error (exit status 2) naming the frame,
and leaves no output.

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

from pathlib import Path
import sys
import time

import cv2

from thermal_visible_fusion.fusers import CLASSIC_FUSERS, FALLBACK_FUSER, FUSER_NAMES
from thermal_visible_fusion.learned.lookahead import DelayedEngine, lookahead_problem
from thermal_visible_fusion.tools.output_dir import check_output, staged_output


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
    parser.add_argument("--force", action="store_true",
                        help="replace an existing non-empty OUT whole")


def _fail(message: str) -> int:
    print(f"tvf fuse: error: {message}", file=sys.stderr)
    return 2


def main(args) -> int:
    from thermal_visible_fusion.engine import EngineConfig, FusionEngine
    from thermal_visible_fusion.data.sources import open_pair

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
        check_output(out, args.force, (args.ir, args.rgb))
        source = open_pair(args.ir, args.rgb)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        return _fail(str(error))
    runner = DelayedEngine(engine, args.lookahead)
    count = written = 0

    def write(folder: Path, done) -> None:
        nonlocal written
        for index, result in done:
            if not cv2.imwrite(str(folder / f"{index:04d}.png"), result.fused):
                raise OSError(f"cannot write {out / f'{index:04d}.png'}")
            written += 1

    try:
        with source, staged_output(out, args.force, (args.ir, args.rgb)) as folder:
            if len(source) == 0:
                raise ValueError(f"no frame pairs decoded from {args.ir} and {args.rgb}")
            period_ns = round(1e9 / (source.fps or 30.0))
            print(f"fusing {len(source)} frames with {engine.describe()}"
                  + (f", look-ahead {args.lookahead}" if args.lookahead else ""),
                  file=sys.stderr)
            start = time.perf_counter()
            for pair in source:
                write(folder, runner.push(pair.thermal, pair.rgb, pair.index * period_ns,
                                          pair.index))
                count += 1
            if source.incomplete:  # a video stopped decoding early: not a finished output
                raise ValueError(source.incomplete)
            write(folder, runner.flush())
    except (ValueError, OSError) as error:
        return _fail(f"{error}; nothing written to {out}")
    seconds = time.perf_counter() - start
    assert written == count, f"wrote {written} frames for {count} pairs"
    print(f"wrote {count} frames to {out} ({count / max(seconds, 1e-9):.1f} fps)", file=sys.stderr)
    return 0
