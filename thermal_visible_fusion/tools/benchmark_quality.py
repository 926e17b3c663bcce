"""
``tvf benchmark-quality``: every fuser over clips, long videos or VIFB stills.

The layout of DATA picks the mode:

* **clips** (a folder of scene folders with ``ir/`` and ``vis/``, clean frames, and
  for ``--degraded`` ``ir_degraded/`` and ``vis_degraded/``, as M3SVD's clips): below.
* **videos** (``<scene>_infrared.mp4`` + ``<scene>_visible.mp4`` pairs, and/or
  ``--pair IR VIS``): each video clean and degraded by a seeded protocol, every
  fuser over the whole video with its memory; first-30-frame and steady-state
  tables, per-frame plots and pass/fail floors (:mod:`.quality_videos`).
* **VIFB** (``ir/``, ``vi/``, ``metrics.json``): each fuser ranked among VIFB's
  published methods on its 21 stills (:mod:`.quality_vifb`).

Clips mode: each fuser runs through ``FusionEngine`` (as in the node) over each
scene in order; image
metrics (``metrics.image``) compare the fused frame with the *clean* frames,
so with ``--degraded`` a fuser that restores its input scores higher.  flowD
uses the optical flow of the clean visible frames (the best motion estimate
available); feaCD (``--features``) uses the pretrained backbone and is slower.
Rows: the learned network with and without memory (when its weights load) and
the non-learned fusers.  ``--bounds`` (with ``--degraded``) adds reference rows that
show what restoration is worth: the multi-scale fuser given the *clean* IR frame, the
clean visible frame, or both, in place of the degraded one.  Prints Markdown;
``--json`` writes the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
import sys
import time

import numpy as np

CLASSIC = ("average", "max", "multiscale")
IMAGE_METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "PSNR", "CC", "Nabf")


def add_arguments(parser) -> None:
    parser.add_argument("clips", nargs="?", metavar="DATA",
                        help="clips folder (scene folders with ir/, vis/[, *_degraded/]), videos "
                             "folder (<scene>_infrared.mp4 + <scene>_visible.mp4) or VIFB folder "
                             "(ir/, vi/, metrics.json)")
    parser.add_argument("--degraded", action="store_true",
                        help="clips: fuse ir_degraded/vis_degraded, score against clean ir/vis")
    parser.add_argument("--fusers", default=None,
                        help="comma-separated rows, e.g. learned,learned-no-memory,multiscale "
                             "(default: all available)")
    parser.add_argument("--weights", default="", help="weights of the learned fuser")
    parser.add_argument("--features", action="store_true",
                        help="clips: also compute feaCD (slower)")
    parser.add_argument("--bounds", action="store_true",
                        help="clips, with --degraded: add multiscale rows given clean IR, clean "
                             "visible or both (what perfect restoration of each is worth)")
    parser.add_argument("--scenes", default=None,
                        help="comma-separated scene, video or VIFB image names (default: all)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None, help="write results here")
    videos = parser.add_argument_group("videos")
    videos.add_argument("--pair", nargs=2, action="append", default=[], metavar=("IR", "VIS"),
                        help="a video pair or two frame folders "
                             "(repeatable; with or without DATA)")
    videos.add_argument("--conditions", default="clean,degraded",
                        help="clean, degraded or both (default)")
    videos.add_argument("--metrics", default=None,
                        help="comma-separated: image metrics (metrics.image), flowD, grid "
                             "(default VIF,Qabf,SSIM,flowD,grid)")
    videos.add_argument("--every", type=int, default=3,
                        help="score every Nth frame after the first window (default 3)")
    videos.add_argument("--max-frames", type=int, default=0, help="stop each video after N frames")
    videos.add_argument("--first", type=int, default=30, help="frames in the first window (30)")
    videos.add_argument("--steady-from", type=int, default=100,
                        help="first frame of the steady-state window (100)")
    videos.add_argument("--seed", type=int, default=0, help="degradation seed (default 0)")
    videos.add_argument("--haze", action="store_true", help="degraded: add haze to visible")
    videos.add_argument("--low-light", action="store_true",
                        help="degraded: add low light to visible")
    parser.add_argument("--out", default=None,
                        help="videos, VIFB: write quality.md, quality.json (and plots) here")


def scene_folders(clips: Path, names: str | None) -> list[Path]:
    scenes = sorted(p for p in clips.iterdir() if (p / "ir").is_dir() and (p / "vis").is_dir())
    if names:
        wanted = set(names.split(","))
        scenes = [s for s in scenes if s.name in wanted]
    if not scenes:
        raise SystemExit(f"no scene folders with ir/ and vis/ in {clips}")
    return scenes


BOUNDS = (("bound: clean IR", (True, False)), ("bound: clean visible", (False, True)),
          ("bound: clean both", (True, True)))


def rows(args) -> list[tuple[str, dict]]:
    """
    Return (row label, FusionEngine config overrides) for every fuser to compare.

    Bound rows also carry ``clean``: (clean IR?, clean visible?) input choice.
    """
    from thermal_visible_fusion.fusers import create_fuser

    wanted = args.fusers.split(",") if args.fusers else None
    available = []
    if wanted is None or {"learned", "learned-no-memory"} & set(wanted):
        learned, warning = create_fuser("learned", weights=args.weights or None, device="cpu")
        if warning:
            print(f"note: learned fuser unavailable ({warning})", file=sys.stderr)
        else:
            available = [("learned", {"fuser": "learned", "use_memory": True}),
                         ("learned-no-memory", {"fuser": "learned", "use_memory": False})]
    available += [(name, {"fuser": name}) for name in CLASSIC]
    if wanted:
        available = [row for row in available if row[0] in wanted]
    if getattr(args, "bounds", False):
        available += [(label, {"fuser": "multiscale", "clean": clean}) for label, clean in BOUNDS]
    return available


def evaluate_scene(scene: Path, overrides: dict, args) -> dict[str, list[float]]:
    from thermal_visible_fusion.engine import EngineConfig, FusionEngine
    from thermal_visible_fusion.metrics.image import compute_all
    from thermal_visible_fusion.metrics.temporal import flow_distance
    from thermal_visible_fusion.data.sources import open_pair

    overrides = dict(overrides)
    clean_ir, clean_vis = overrides.pop("clean", (not args.degraded, not args.degraded))
    engine = FusionEngine(EngineConfig(weights=args.weights, device=args.device, **overrides))
    clean = list(open_pair(scene / "ir", scene / "vis"))
    inputs = list(open_pair(scene / ("ir" if clean_ir else "ir_degraded"),
                            scene / ("vis" if clean_vis else "vis_degraded")))
    values: dict[str, list[float]] = {name: [] for name in (*IMAGE_METRICS, "flowD", "fps")}
    features = None
    if args.features:
        from thermal_visible_fusion.metrics.features import FeatureConsistency
        features, values["feaCD"] = FeatureConsistency(), []
    previous = None
    for index, (source, reference) in enumerate(zip(inputs, clean)):
        start = time.perf_counter()
        fused = engine.process(source.thermal, source.rgb, index * 33_333_333).fused
        values["fps"].append(1.0 / max(time.perf_counter() - start, 1e-9))
        for name, value in compute_all(fused, reference.thermal, reference.rgb).items():
            if name in values:
                values[name].append(value)
        if previous is not None:
            values["flowD"].append(flow_distance(previous[0], fused, previous[1], reference.rgb))
        if features is not None:
            fea = features.update(fused, reference.thermal, reference.rgb)
            if fea is not None and np.isfinite(fea):
                values["feaCD"].append(fea)
        previous = (fused, reference.rgb)
    return values


def layout(data: Path | None) -> str:
    """``clips``, ``videos`` or ``vifb`` from what the folder holds."""
    from thermal_visible_fusion.tools.quality_videos import find_videos
    from thermal_visible_fusion.tools.quality_vifb import is_vifb_folder

    if data is None:
        return "videos"  # --pair only
    if not data.is_dir():
        raise SystemExit(f"not a folder: {data}")
    if is_vifb_folder(data):
        return "vifb"
    if any((p / "ir").is_dir() and (p / "vis").is_dir() for p in data.iterdir()):
        return "clips"
    if find_videos(data):
        return "videos"
    raise SystemExit(f"{data}: no scene folders (ir/, vis/), <scene>_infrared/_visible pairs "
                     "or VIFB layout (ir/, vi/, metrics.json)")


def main(args) -> int:
    if args.clips is None and not args.pair:
        raise SystemExit("give DATA (clips, videos or VIFB folder) or --pair IR VIS")
    data = Path(args.clips) if args.clips else None
    mode = layout(data)
    if args.pair and mode != "videos":
        raise SystemExit(f"--pair runs video mode, but {data} is a {mode} folder")
    if mode == "videos":
        from thermal_visible_fusion.tools import quality_videos

        videos = quality_videos.find_videos(data) if data else []
        return quality_videos.main_videos(videos + quality_videos.explicit_pairs(args.pair),
                                          rows(args), args)
    if mode == "vifb":
        from thermal_visible_fusion.tools.quality_vifb import main_vifb

        return main_vifb(data, rows(args), args)
    return main_clips(args)


def main_clips(args) -> int:
    if args.bounds and not args.degraded:
        raise SystemExit("--bounds compares against degraded inputs: add --degraded")
    clips = Path(args.clips)
    scenes = scene_folders(clips, args.scenes)
    results: dict[str, dict[str, float]] = {}
    for label, overrides in rows(args):
        pooled: dict[str, list[float]] = {}
        for scene in scenes:
            print(f"[{label}] {scene.name}", file=sys.stderr, flush=True)
            for name, series in evaluate_scene(scene, overrides, args).items():
                pooled.setdefault(name, []).extend(series)
        results[label] = {name: float(np.median(v)) if name == "fps" else float(np.mean(v))
                          for name, v in pooled.items() if v}
    print(markdown_table(results, scenes, args.degraded))
    if args.json:
        Path(args.json).write_text(json.dumps({"scenes": [s.name for s in scenes],
                                               "degraded": args.degraded,
                                               "results": results}, indent=2))
    return 0


def markdown_table(results: dict[str, dict[str, float]], scenes, degraded: bool) -> str:
    columns = [c for c in (*IMAGE_METRICS, "flowD", "feaCD", "fps")
               if any(c in r for r in results.values())]
    lines = [f"Scenes: {', '.join(s.name for s in scenes)}; inputs: "
             f"{'degraded, metrics against clean frames' if degraded else 'clean'}; "
             "flowD/feaCD/Nabf lower is better; fps = median engine frames/s on this machine.",
             "",
             "| fuser | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    for label, values in results.items():
        cells = [f"{values[c]:.3f}" if c in values else "" for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
