#!/usr/bin/env python3
"""
The learned fuser with bfloat16 convolutions against float32, on real degraded video.

For each video pair (``tvf benchmark-quality``'s degradation protocol, seed 0), two
learned fusers run the same stream with memory, one with the denoiser's convolutions in
bfloat16 and one all float32, each frame timed in turn on one torch thread.  Prints per
video the fused frames' mean and largest difference in grey levels, the share of values
more than one level apart, and each fuser's median ms a frame (after the first 10).

    .venv/bin/python scripts/compare_bf16.py ../shared/data/m3svd/videos --frames 300
"""

from __future__ import annotations

import argparse
from pathlib import Path
import time

import numpy as np

from thermal_visible_fusion.data.degradation import VideoDegradation
from thermal_visible_fusion.data.sources import open_pair
from thermal_visible_fusion.fusers.learned import LearnedFuser
from thermal_visible_fusion.tools.quality_videos import find_videos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("videos", help="a folder of <scene>_infrared.mp4 + <scene>_visible.mp4")
    parser.add_argument("--frames", type=int, default=300, help="frames per video")
    args = parser.parse_args()
    for video in find_videos(Path(args.videos)):
        degradation = VideoDegradation(video.name)
        fusers = {"bf16": LearnedFuser(device="cpu", bf16=True, threads=1),
                  "float32": LearnedFuser(device="cpu", bf16=False, threads=1)}
        times: dict[str, list[float]] = {name: [] for name in fusers}
        total, largest, over_one, frames = 0.0, 0, 0.0, 0
        for t, pair in enumerate(open_pair(video.ir, video.vis)):
            if t >= args.frames:
                break
            thermal, rgb = degradation.apply(pair.thermal, pair.rgb, t)
            out = {}
            for name, fuser in fusers.items():
                start = time.perf_counter()
                out[name] = fuser.fuse(thermal, rgb).astype(np.int16)
                times[name].append(time.perf_counter() - start)
            diff = np.abs(out["bf16"] - out["float32"])
            total, largest = total + float(diff.mean()), max(largest, int(diff.max()))
            over_one, frames = over_one + float((diff > 1).mean()), frames + 1
        ms = {name: 1000 * float(np.median(v[10:] or v)) for name, v in times.items()}
        print(f"{video.name}: {frames} frames, mean |diff| {total / frames:.4f} grey levels, "
              f"max {largest}, over 1: {over_one / frames:.2e}; ms a frame: bf16 "
              f"{ms['bf16']:.1f}, float32 {ms['float32']:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
