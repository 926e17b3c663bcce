"""
``tvf metrics``: fusion quality metrics of fused images or frame folders.

    tvf metrics --ir IR --rgb RGB --fused FUSED [--ref-ir REF_IR] [--ref-rgb REF_RGB]
                [--convention {standard,vifb}] [--metrics EN,MI,...]
                [--temporal] [--feacd] [--json OUT]

``IR``, ``RGB`` and ``FUSED`` are single images or folders of frames; folders are
paired by natural sort of the file names (``2.png`` before ``10.png``) and must
hold the same number of images.  Each fused frame is scored against the IR and
RGB frames -- or, with ``--ref-ir`` / ``--ref-rgb`` (clean frames, same pairing),
against those references instead: degraded-input evaluation, where the fusion saw
noisy/blurred inputs but is judged against the clean scene.

Conventions: ``standard`` (default) is :mod:`thermal_visible_fusion.metrics.image`
(EN SD SF AG MI SCD VIF Qabf SSIM PSNR CC Nabf); ``vifb`` reproduces the VIFB
MATLAB toolbox (:mod:`thermal_visible_fusion.metrics.vifb`) and reports VIFB's
metric names.  Sequence metrics (folders only, from the second frame on):
``--temporal`` adds flowD (the fused video against the motion of the visible
video) and ``--feacd`` the deep-feature consistency feaCD (needs torch); both
use the references in place of the inputs when they are given.

Prints a table of per-metric means and, with ``--json``, writes
``{"mean": {metric: value}, "frames": {frame_name: {metric: value}}}`` where a
frame's name is its fused file name; values that are not finite (PSNR of
identical images) are written as ``null``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import re
import sys

import numpy as np

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


class InputError(ValueError):
    """A user-facing problem with the command's inputs."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ir", required=True, type=Path, help="infrared image or folder")
    parser.add_argument("--rgb", required=True, type=Path, help="visible (colour) image or folder")
    parser.add_argument("--fused", required=True, type=Path, help="fused image or folder")
    parser.add_argument("--ref-ir", type=Path, default=None,
                        help="clean infrared reference(s): score against these instead of --ir")
    parser.add_argument("--ref-rgb", type=Path, default=None,
                        help="clean visible reference(s): score against these instead of --rgb")
    parser.add_argument("--convention", choices=("standard", "vifb"), default="standard",
                        help="metric definitions: standard IVIF (default) or the VIFB toolbox")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated subset of metrics (standard convention only)")
    parser.add_argument("--temporal", action="store_true",
                        help="also compute flowD between consecutive fused frames (folders)")
    parser.add_argument("--feacd", action="store_true",
                        help="also compute deep-feature consistency feaCD (folders; needs torch)")
    parser.add_argument("--json", type=Path, default=None,
                        help="write per-frame and mean values here")


# --------------------------------------------------------------------------- inputs
def natural_key(name: str) -> list:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def list_images(path: Path, label: str) -> list[Path]:
    """List a single image, or the images of a folder in natural order."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise InputError(f"--{label}: no images in folder {path}")
        return sorted(files, key=lambda p: natural_key(p.name))
    raise InputError(f"--{label}: {path} does not exist")


def _collect(args: argparse.Namespace) -> dict[str, list[Path]]:
    streams = {"fused": list_images(args.fused, "fused"),
               "ir": list_images(args.ir, "ir"),
               "rgb": list_images(args.rgb, "rgb")}
    if args.ref_ir is not None:
        streams["ref-ir"] = list_images(args.ref_ir, "ref-ir")
    if args.ref_rgb is not None:
        streams["ref-rgb"] = list_images(args.ref_rgb, "ref-rgb")
    counts = {k: len(v) for k, v in streams.items()}
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"--{k}: {n}" for k, n in counts.items())
        raise InputError(f"image counts differ ({detail}); folders are paired by sorted file name "
                         "and must hold the same number of images")
    return streams


def _read(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"cannot read image {path}")
    return img


def _frame_names(paths: list[Path]) -> list[str]:
    names = [p.name for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


# --------------------------------------------------------------------------- evaluation
def evaluate(args: argparse.Namespace) -> dict:
    """Run the metrics; returns ``{"mean": ..., "frames": ...}``."""
    streams = _collect(args)
    n = len(streams["fused"])
    if (args.temporal or args.feacd) and n < 2:
        raise InputError("--temporal/--feacd need folders with at least two frames")

    if args.convention == "vifb":
        if args.metrics:
            raise InputError("--metrics selects standard-convention metrics; "
                             "VIFB mode computes all")
        from thermal_visible_fusion.metrics.vifb import compute_vifb

        def score(f, i, v):
            return compute_vifb(f, i, v)
    else:
        from thermal_visible_fusion.metrics.image import METRICS, compute_all

        subset = None
        if args.metrics:
            subset = [m.strip() for m in args.metrics.split(",") if m.strip()]
            lookup = {m.lower(): m for m in METRICS}
            bad = [m for m in subset if m.lower() not in lookup]
            if bad:
                raise InputError(f"unknown metrics {bad}; choose from {', '.join(METRICS)}")
            subset = [lookup[m.lower()] for m in subset]

        def score(f, i, v):
            return compute_all(f, i, v, subset)

    flow_distance = None
    if args.temporal:
        from thermal_visible_fusion.metrics.temporal import flow_distance
    feacd = None
    if args.feacd:
        from thermal_visible_fusion.metrics.features import FeatureConsistency

        feacd = FeatureConsistency()

    names = _frame_names(streams["fused"])
    frames: dict[str, dict[str, float]] = {}
    prev_fused = prev_vis = None
    for k in range(n):
        fused = _read(streams["fused"][k])
        ir = _read(streams["ref-ir"][k] if "ref-ir" in streams else streams["ir"][k])
        vis = _read(streams["ref-rgb"][k] if "ref-rgb" in streams else streams["rgb"][k])
        try:
            values = dict(score(fused, ir, vis))
        except ValueError as exc:
            raise InputError(f"frame {names[k]}: {exc}") from exc
        if flow_distance is not None and prev_fused is not None:
            values["flowD"] = float(flow_distance(prev_fused, fused, prev_vis, vis))
        if feacd is not None:
            value = feacd.update(fused, ir, vis)
            if value is not None:
                values["feaCD"] = float(value)
        prev_fused, prev_vis = fused, vis
        frames[names[k]] = values

    keys: list[str] = []
    for values in frames.values():
        keys.extend(m for m in values if m not in keys)
    mean = {}
    for m in keys:
        vals = np.array([v[m] for v in frames.values() if m in v], dtype=np.float64)
        vals = vals[~np.isnan(vals)]
        mean[m] = float(vals.mean()) if vals.size else float("nan")
    return {"mean": mean, "frames": frames}


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_table(result: dict, convention: str) -> str:
    mean = result["mean"]
    n = len(result["frames"])
    width = max([len(m) for m in mean] + [6])
    lines = [f"{n} frame{'s' if n != 1 else ''}, {convention} convention",
             f"{'metric':<{width}}  {'mean':>12}", f"{'-' * width}  {'-' * 12}"]
    for m, v in mean.items():
        lines.append(f"{m:<{width}}  {v:>12.4f}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        result = evaluate(args)
    except InputError as exc:
        print(f"tvf metrics: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result, args.convention))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_jsonable(result), indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 0
