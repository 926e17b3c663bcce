#!/usr/bin/env python3
"""
Block-grid energy of the *clean input* frames of the long-stream videos.

The long-stream floor "degraded block grid" compares the fused frames with and without
memory.  The shared M3SVD videos are codec-compressed in 8x8 blocks, so their clean frames
carry a block grid of their own, which noise hides and restoration uncovers.  This prints
that source grid per block size over the benchmark's steady-state window, next to which
the fused figures read.  ``--fused`` adds the learned fuser's output on the degraded
frames (``tvf benchmark-quality``'s protocol, seed 0), with and without memory, so the
grid the memory adds shows per block size.

    .venv/bin/python scripts/source_block_grid.py ../shared/data/m3svd/videos [--fused]
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

import numpy as np

from thermal_visible_fusion.data.sources import open_pair
from thermal_visible_fusion.metrics.artefacts import block_grid_profile
from thermal_visible_fusion.tools.quality_videos import find_videos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("videos", type=Path, help="folder of <scene>_infrared/_visible.mp4")
    parser.add_argument("--steady-from", type=int, default=100)
    parser.add_argument("--max-frames", type=int, default=400)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--fused", action="store_true",
                        help="also the learned fuser on the degraded frames, memory on and off")
    args = parser.parse_args()
    print("| video | input | grid 2 px | grid 4 px | grid 8 px |")
    print("|---|---|---|---|---|")
    for video in find_videos(args.videos):
        profiles: dict[str, list[dict[int, float]]] = {"IR": [], "visible": []}
        fusers = _fusers(video.name) if args.fused else {}
        for t, pair in enumerate(open_pair(video.ir, video.vis)):
            if t >= args.max_frames:
                break
            fused = {name: fuse(pair.thermal, pair.rgb, t) for name, fuse in fusers.items()}
            if t >= args.steady_from and (t - args.steady_from) % args.every == 0:
                profiles["IR"].append(block_grid_profile(pair.thermal))
                profiles["visible"].append(block_grid_profile(pair.rgb))
                for name, frame in fused.items():
                    profiles.setdefault(name, []).append(block_grid_profile(frame))
        for name, values in profiles.items():
            means = [np.mean([p[b] for p in values]) for b in (2, 4, 8)]
            print(f"| {video.name} | {name} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    return 0


def _fusers(scene: str) -> dict:
    """Fuse functions (thermal, rgb, index) of the degraded frames, memory on and off."""
    from thermal_visible_fusion.data.degradation import VideoDegradation
    from thermal_visible_fusion.fusers.learned import LearnedFuser

    degradation = VideoDegradation(scene, 0)

    def fuser(use_memory: bool):
        learned = LearnedFuser(use_memory=use_memory)

        def fuse(thermal, rgb, index):
            thermal = thermal if thermal.ndim == 2 else thermal[..., 0]
            return learned.fuse(*degradation.apply(thermal, rgb, index))
        return fuse
    return {"learned, degraded": fuser(True), "learned-no-memory, degraded": fuser(False)}


if __name__ == "__main__":
    sys.exit(main())
