"""
VIFB mode of ``tvf benchmark-quality``: our fusers among VIFB's published methods.

A VIFB folder holds ``ir/<image>.jpg``, ``vi/<image>.jpg`` and ``metrics.json``
(``{method: {image: {metric: value}}}``, the toolbox's numbers for the published
methods).  Each of our fusers fuses every pair (the learned one without memory:
these are stills; each image starts from a reset engine) and is scored with
:mod:`metrics.vifb` (VIFB's conventions, the references read from the image files
as the toolbox reads them).  The table gives Qabf, Ssim and Mutinf averaged over
the images, the published methods' averages over the same images, and each of our
rows' rank among the published methods (1 = better than all of them).
"""

from __future__ import annotations

import json
from pathlib import Path
import sys

import numpy as np

VIFB_KEYS = ("Qabf", "Ssim", "Mutinf")  # all higher is better


def is_vifb_folder(folder: Path) -> bool:
    return ((folder / "ir").is_dir() and (folder / "vi").is_dir()
            and (folder / "metrics.json").is_file())


def images(folder: Path, names: str | None) -> list[str]:
    from thermal_visible_fusion.data.sources import IMAGE_EXTENSIONS

    found = sorted(p.stem for p in (folder / "ir").iterdir()
                   if p.suffix.lower() in IMAGE_EXTENSIONS)
    if names:
        wanted = set(names.split(","))
        found = [n for n in found if n in wanted]
    if not found:
        raise SystemExit(f"no VIFB images in {folder / 'ir'}")
    return found


def _path(folder: Path, stem: str) -> Path:
    from thermal_visible_fusion.data.sources import IMAGE_EXTENSIONS

    return next(p for p in sorted(folder.iterdir())
                if p.stem == stem and p.suffix.lower() in IMAGE_EXTENSIONS)


def score_fuser(folder: Path, names: list[str], overrides: dict, args) -> dict[str, float]:
    import cv2

    from thermal_visible_fusion.engine import EngineConfig, FusionEngine
    from thermal_visible_fusion.metrics import vifb

    engine = FusionEngine(EngineConfig(weights=args.weights, device=args.device,
                                       **{**overrides, "use_memory": False}))
    values: dict[str, list[float]] = {key: [] for key in VIFB_KEYS}
    for name in names:
        ir_path, vi_path = _path(folder / "ir", name), _path(folder / "vi", name)
        engine.reset("new image")
        fused = engine.process(cv2.imread(str(ir_path), cv2.IMREAD_GRAYSCALE),
                               cv2.imread(str(vi_path), cv2.IMREAD_COLOR), 0).fused
        ir_ref, vi_ref = vifb.read_image(ir_path), vifb.read_image(vi_path)  # as the toolbox reads
        for key, func in (("Qabf", vifb.qabf), ("Ssim", vifb.ssim), ("Mutinf", vifb.mutinf)):
            values[key].append(func(fused, ir_ref, vi_ref))
    return {key: float(np.mean(v)) for key, v in values.items()}


def published_means(folder: Path, names: list[str]) -> dict[str, dict[str, float]]:
    table = json.loads((folder / "metrics.json").read_text())
    return {method: {key: float(np.mean([per_image[n][key] for n in names])) for key in VIFB_KEYS}
            for method, per_image in table.items() if all(n in per_image for n in names)}


def rank(value: float, published: dict[str, dict[str, float]], key: str) -> int:
    """1 + the number of published methods scoring higher on ``key``."""
    return 1 + sum(p[key] > value for p in published.values())


def vifb_markdown(ours: dict, published: dict, names: list[str]) -> str:
    n = len(published)
    lines = [f"VIFB: {len(names)} image pairs, VIFB metric conventions (higher is better); "
             f"rank among the {n} published methods (1 = above all, {n + 1} = below all)."
             + (" Learned fuser without memory (stills)." if "learned" in ours else ""), "",
             "| method | " + " | ".join((*VIFB_KEYS, *(f"rank {k}" for k in VIFB_KEYS))) + " |",
             "|---|" + "---|" * (2 * len(VIFB_KEYS))]
    for label, values in ours.items():
        cells = [f"{values[k]:.4f}" for k in VIFB_KEYS]
        cells += [f"{rank(values[k], published, k)}/{n + 1}" for k in VIFB_KEYS]
        lines.append(f"| **{label}** (ours) | " + " | ".join(cells) + " |")
    for method, values in sorted(published.items()):
        lines.append(f"| {method} | " + " | ".join(f"{values[k]:.4f}" for k in VIFB_KEYS)
                     + " |" + " |" * len(VIFB_KEYS))
    return "\n".join(lines)


def main_vifb(folder: Path, rows: list[tuple[str, dict]], args) -> int:
    names = images(folder, args.scenes)
    published = published_means(folder, names)
    # Stills: with and without memory are the same run, so one learned row.
    labels = [label for label, _ in rows]
    rows = [("learned" if label == "learned-no-memory" else label, overrides)
            for label, overrides in rows
            if label != "learned-no-memory" or "learned" not in labels]
    ours = {}
    for label, overrides in rows:
        print(f"[{label}] {len(names)} VIFB images", file=sys.stderr, flush=True)
        ours[label] = score_fuser(folder, names, overrides, args)
    report = vifb_markdown(ours, published, names)
    print(report)
    payload = {"mode": "vifb", "images": names, "ours": ours, "published": published,
               "ranks": {label: {k: rank(v[k], published, k) for k in VIFB_KEYS}
                         for label, v in ours.items()}}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "quality.md").write_text(report + "\n")
        (out / "quality.json").write_text(json.dumps(payload, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0
