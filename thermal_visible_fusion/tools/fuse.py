"""``tvf fuse``: fuse an mp4 pair or two frame folders offline, one PNG per frame.

Runs the same ``FusionEngine`` as the live node, frame by frame in order, so
what you see here is what the node publishes for the same input.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2

from thermal_visible_fusion.fusers import FUSER_NAMES


def add_arguments(parser) -> None:
    parser.add_argument("--ir", required=True, help="thermal mp4 or frame folder")
    parser.add_argument("--rgb", required=True, help="RGB mp4 or frame folder")
    parser.add_argument("--out", required=True, help="output folder for NNNN.png")
    parser.add_argument("--fuser", default="auto", choices=FUSER_NAMES)
    parser.add_argument("--weights", default="", help="weights of the learned fuser")
    parser.add_argument("--no-memory", action="store_true",
                        help="reset the temporal memory before every frame (still-image fusion)")
    parser.add_argument("--lookahead", type=int, default=0,
                        help="frames of look-ahead for the learned fuser (adds latency)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")


def main(args) -> int:
    from thermal_visible_fusion.engine import EngineConfig, FusionEngine
    from thermal_visible_fusion.sources import open_pair

    if args.lookahead < 0:
        raise SystemExit("--lookahead must be >= 0")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = EngineConfig(fuser=args.fuser, weights=args.weights, device=args.device,
                          use_memory=not args.no_memory, lookahead=args.lookahead)
    engine = FusionEngine(config)
    if engine.fuser_warning:
        print(f"warning: {engine.fuser_warning}", file=sys.stderr)
    with open_pair(args.ir, args.rgb) as source:
        period_ns = round(1e9 / (source.fps or 30.0))
        print(f"fusing {len(source)} frames with {engine.describe()}", file=sys.stderr)
        start = time.perf_counter()
        lookahead = args.lookahead
        for pair in source:
            result = engine.process(pair.thermal, pair.rgb, pair.index * period_ns)
            # With look-ahead the fuser answers k frames late: output i is frame i - k.
            if pair.index >= lookahead:
                cv2.imwrite(str(out / f"{pair.index - lookahead:04d}.png"), result.fused)
        count = len(source)
        if lookahead:
            for index, fused in enumerate(engine.fuser.flush(), start=max(count - lookahead, 0)):
                cv2.imwrite(str(out / f"{index:04d}.png"), fused)
    seconds = time.perf_counter() - start
    print(f"wrote {count} frames to {out} ({count / max(seconds, 1e-9):.1f} fps)", file=sys.stderr)
    return 0
