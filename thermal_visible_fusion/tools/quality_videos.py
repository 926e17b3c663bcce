"""
Video mode of ``tvf benchmark-quality``: every fuser over long thermal/visible videos.

Inputs: a folder of ``<scene>_infrared.<ext>`` + ``<scene>_visible.<ext>`` pairs (or
``<scene>_infrared/`` + ``<scene>_visible/`` frame folders) and/or ``--pair IR VIS``
(anything :func:`sources.open_pair` opens).  Each video runs under each of
``--conditions``:

* ``clean``: the raw frames are fused and the metrics compare with them;
* ``degraded``: the frames are degraded by :class:`degradation.VideoDegradation`
  (seeded by ``--seed`` and the scene name; ``--haze``, ``--low-light``) and the
  metrics compare with the clean frames, so restoring the inputs scores.

The rows run in lockstep over the whole video in order, each through its own
``FusionEngine``, so a learned fuser's memory is carried across the whole video.
Every frame is fused; metrics are computed on every frame before ``--first`` (30)
and then on every ``--every``-th frame (counted from ``--steady-from``, 100), as
they cost ~0.15 s a 640x480 frame against ~0.015 s for a non-learned fusion.
flowD at a scored frame ``t`` warps fused ``t-1`` onto fused ``t`` with the flow
of the clean visible frames; ``grid`` is :func:`metrics.artefacts.block_grid_energy`.
Windows: ``first`` = frames before ``--first``, ``steady`` = frames from
``--steady-from`` on.  Floors (:mod:`.quality_floors`) use the steady window.

``--out DIR`` writes ``quality.md`` (the printed tables), ``quality.json`` (all
numbers, per-frame series included; NaN as null) and ``<video>_<condition>.png``
(per-frame VIF, Qabf and flowD of every row, a line where the steady window starts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import json
import math
from pathlib import Path
import sys
import time

import numpy as np

FIRST, STEADY = "first", "steady"
CONDITIONS = ("clean", "degraded")
DEFAULT_METRICS = ("VIF", "Qabf", "SSIM", "flowD", "grid")
PLOTTED = ("VIF", "Qabf", "flowD")
IR_SUFFIXES = ("_infrared", "_thermal", "_ir")
LOWER_IS_BETTER = {"flowD", "Nabf"}


@dataclass(frozen=True)
class VideoPair:
    name: str
    ir: Path
    vis: Path


@dataclass(frozen=True)
class Schedule:
    first: int = 30
    steady_from: int = 100
    every: int = 3

    def scored(self, t: int) -> bool:
        return t < self.first or (t - self.steady_from) % self.every == 0


def _base(path: Path) -> str:
    return path.name if path.is_dir() else path.stem


def find_videos(folder: Path) -> list[VideoPair]:
    """``<scene>_infrared`` files or folders with a ``<scene>_visible`` twin."""
    pairs = []
    for ir in sorted(folder.iterdir()):
        if not _base(ir).endswith("_infrared"):
            continue
        scene = _base(ir)[: -len("_infrared")]
        vis = folder / f"{scene}_visible{'' if ir.is_dir() else ir.suffix}"
        if vis.exists():
            pairs.append(VideoPair(scene, ir, vis))
    return pairs


def explicit_pairs(pairs: list[list[str]]) -> list[VideoPair]:
    """``--pair IR VIS`` items, named after the IR file without a role suffix."""
    out, names = [], set()
    for ir, vis in pairs:
        name = _base(Path(ir))
        for suffix in IR_SUFFIXES:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
        unique, n = name, 2
        while unique in names:
            unique, n = f"{name}-{n}", n + 1
        names.add(unique)
        out.append(VideoPair(unique, Path(ir), Path(vis)))
    return out


def parse_metrics(text: str | None) -> tuple[str, ...]:
    from thermal_visible_fusion.metrics.image import METRICS

    metrics = tuple(m for m in (text.split(",") if text else DEFAULT_METRICS) if m)
    unknown = set(metrics) - set(METRICS) - {"flowD", "grid"}
    if unknown:
        raise SystemExit(f"unknown metrics {sorted(unknown)}; choose from "
                         f"{', '.join((*METRICS, 'flowD', 'grid'))}")
    return metrics


def score_frame(fused: np.ndarray, previous: np.ndarray | None, flow: np.ndarray | None,
                clean_ir: np.ndarray, clean_vis: np.ndarray,
                metrics: tuple[str, ...]) -> dict[str, float]:
    """``metrics`` of one fused frame; flowD is NaN without a previous frame."""
    from thermal_visible_fusion.metrics.artefacts import block_grid_energy
    from thermal_visible_fusion.metrics.image import compute_all
    from thermal_visible_fusion.metrics.temporal import warped_distance

    image_metrics = [m for m in metrics if m not in ("flowD", "grid")]
    values = compute_all(fused, clean_ir, clean_vis, image_metrics) if image_metrics else {}
    if "flowD" in metrics:
        values["flowD"] = (warped_distance(previous, fused, flow)
                           if previous is not None and flow is not None else float("nan"))
    if "grid" in metrics:
        values["grid"] = block_grid_energy(fused)
    return values


def run_video(video: VideoPair, condition: str, rows: list[tuple[str, dict]], args,
              schedule: Schedule, metrics: tuple[str, ...]) -> tuple[dict[str, dict], int, dict]:
    """
    Score one video under one condition.

    Per-row series ``{"frame": [...], metric: [...]}`` over one video under one
    condition, the number of frames fused and the degradation's parameters.
    """
    import cv2

    from thermal_visible_fusion.data.degradation import DegradationConfig, VideoDegradation
    from thermal_visible_fusion.engine import EngineConfig, FusionEngine
    from thermal_visible_fusion.metrics.temporal import visible_flow
    from thermal_visible_fusion.data.sources import open_pair

    engines = {label: FusionEngine(EngineConfig(weights=args.weights, device=args.device,
                                                **overrides))
               for label, overrides in rows}
    degradation = None
    if condition == "degraded":
        degradation = VideoDegradation(video.name, args.seed,
                                       DegradationConfig(haze=args.haze, low_light=args.low_light))
    series = {label: {"frame": [], **{m: [] for m in metrics}} for label in engines}
    previous: dict[str, np.ndarray] = {}  # last fused frame of each row, for flowD
    previous_vis, frames = None, 0
    with open_pair(video.ir, video.vis) as source:
        period = int(1e9 / source.fps) if source.fps else 33_333_333
        for pair in source:
            t = pair.index
            if args.max_frames and t >= args.max_frames:
                break
            clean_ir, clean_vis = pair.thermal, pair.rgb
            if clean_ir.shape != clean_vis.shape[:2]:  # references on the fused (RGB) grid
                clean_ir = cv2.resize(clean_ir, clean_vis.shape[1::-1],
                                      interpolation=cv2.INTER_LINEAR)
            inputs = (degradation.apply(pair.thermal, pair.rgb, t) if degradation
                      else (pair.thermal, pair.rgb))
            scored = schedule.scored(t)
            # one flow of the clean visible frames serves every row
            flow = (visible_flow(previous_vis, clean_vis)
                    if scored and "flowD" in metrics and previous_vis is not None else None)
            for label, engine in engines.items():
                fused = engine.process(*inputs, t * period).fused
                if scored:
                    values = score_frame(fused, previous.get(label), flow, clean_ir, clean_vis,
                                         metrics)
                    series[label]["frame"].append(t)
                    for name in metrics:
                        series[label][name].append(values[name])
                previous[label] = fused
            previous_vis, frames = clean_vis, t + 1
    return series, frames, (degradation.parameters() if degradation else {})


def window_means(series: dict, schedule: Schedule,
                 metrics: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """{window: {metric: mean over the window's scored frames}}; empty windows left out."""
    frames = np.asarray(series["frame"])
    out: dict[str, dict[str, float]] = {}
    masks = ((FIRST, frames < schedule.first), (STEADY, frames >= schedule.steady_from))
    for window, mask in masks:
        means = {}
        for name in metrics:
            values = np.asarray(series[name], dtype=np.float64)[mask]
            values = values[np.isfinite(values)]
            if values.size:
                means[name] = float(values.mean())
        if means:
            out[window] = means
    return out


def average_over_videos(per_video: dict, condition: str,
                        window: str) -> dict[str, dict[str, float]]:
    """{row: {metric: mean over the videos that have the window}}."""
    pooled: dict[str, dict[str, list[float]]] = {}
    for conditions in per_video.values():
        for label, row in conditions.get(condition, {}).get("rows", {}).items():
            for name, value in row["windows"].get(window, {}).items():
                pooled.setdefault(label, {}).setdefault(name, []).append(value)
    return {label: {name: float(np.mean(v)) for name, v in values.items()}
            for label, values in pooled.items()}


def _table(rows: list[tuple[list[str], dict[str, float]]], heads: list[str],
           metrics: tuple[str, ...]) -> list[str]:
    lines = ["| " + " | ".join((*heads, *metrics)) + " |",
             "|" + "---|" * (len(heads) + len(metrics))]
    for labels, values in rows:
        cells = [f"{values[m]:.3f}" if m in values else "" for m in metrics]
        lines.append("| " + " | ".join((*labels, *cells)) + " |")
    return lines


def window_title(window: str, schedule: Schedule) -> str:
    if window == FIRST:
        return f"first {schedule.first} frames (0-{schedule.first - 1}, all scored)"
    return f"steady state (frame {schedule.steady_from} on, 1 frame in {schedule.every} scored)"


def videos_markdown(per_video: dict, summary: dict, schedule: Schedule,
                    metrics: tuple[str, ...]) -> str:
    counts = ", ".join(f"{video} ({next(iter(conditions.values()))['frames']} frames)"
                       for video, conditions in per_video.items())
    lines = [f"Videos: {counts}. flowD lower is better; grid = block-grid energy, 1.0 = no grid."]
    for condition, windows in summary.items():
        what = ("raw inputs, metrics against them" if condition == "clean"
                else "degraded inputs, metrics against the clean frames")
        for window, table in windows.items():
            per_rows = [([video, label], row["windows"][window])
                        for video, conditions in per_video.items()
                        for label, row in conditions.get(condition, {}).get("rows", {}).items()
                        if window in row["windows"]]
            lines += ["", f"### {condition} ({what}): {window_title(window, schedule)}", "",
                      f"Mean over {len({video for (video, _), _ in per_rows})} videos:", ""]
            lines += _table([([label], values) for label, values in table.items()], ["fuser"],
                            metrics)
            lines += ["", "Per video:", ""] + _table(per_rows, ["video", "fuser"], metrics)
    return "\n".join(lines)


def plot_video(path: Path, video: str, condition: str, rows: dict, schedule: Schedule) -> bool:
    """Per-frame VIF, Qabf and flowD of every row; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[benchmark-quality] matplotlib not installed: no plots", file=sys.stderr)
        return False
    panels = [m for m in PLOTTED if all(m in row["series"] for row in rows.values())]
    if not panels:
        return False
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 7), dpi=100, sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], panels):
        for label, row in rows.items():
            ax.plot(row["series"]["frame"], row["series"][name], label=label, linewidth=1)
        ax.axvline(schedule.steady_from, color="grey", linestyle="--", linewidth=1)
        ax.set_ylabel(name + (" (lower is better)" if name in LOWER_IS_BETTER else ""))
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(f"{video}, {condition} inputs (dashed: steady state from frame "
                         f"{schedule.steady_from})")
    axes[0, 0].legend(fontsize=8, ncol=min(5, len(rows)))
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def main_videos(videos: list[VideoPair], rows: list[tuple[str, dict]], args) -> int:
    from thermal_visible_fusion.tools.quality_floors import floor_checks, floors_markdown

    conditions = tuple(args.conditions.split(","))
    if set(conditions) - set(CONDITIONS) or not conditions:
        raise SystemExit(f"--conditions: choose from {', '.join(CONDITIONS)}")
    if args.scenes:
        videos = [v for v in videos if v.name in set(args.scenes.split(","))]
    if not videos:
        raise SystemExit("no video pairs to run")
    metrics = parse_metrics(args.metrics)
    if args.every < 1 or args.first < 0 or args.steady_from < 0:
        raise SystemExit("--every must be >= 1; --first and --steady-from >= 0")
    schedule = Schedule(args.first, args.steady_from, args.every)
    per_video: dict[str, dict] = {}
    for video in videos:
        for condition in conditions:
            start = time.perf_counter()
            series, frames, degradation = run_video(video, condition, rows, args, schedule,
                                                    metrics)
            print(f"[{video.name}] {condition}: {frames} frames, {len(rows)} rows, "
                  f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
            per_video.setdefault(video.name, {})[condition] = {
                "frames": frames, "degradation": degradation,
                "rows": {label: {"series": s, "windows": window_means(s, schedule, metrics)}
                         for label, s in series.items()}}
    summary = {c: {w: average_over_videos(per_video, c, w) for w in (FIRST, STEADY)}
               for c in conditions}
    summary = {c: {w: table for w, table in windows.items() if table}  # drop empty windows
               for c, windows in summary.items()}

    def steady(results: dict) -> dict:  # {condition: {row: {metric: value}}}
        return {c: {label: row["windows"].get(STEADY, {}) for label, row in cond["rows"].items()}
                for c, cond in results.items()}

    overall = {c: summary[c].get(STEADY, {}) for c in conditions}
    by_video = {name: steady(results) for name, results in per_video.items()}
    report = videos_markdown(per_video, summary, schedule, metrics) + "\n\n" \
        + floors_markdown(overall, by_video)
    print(report)
    payload = _json_safe({
        "mode": "videos", "conditions": list(conditions), "metrics": list(metrics),
        "schedule": asdict(schedule), "seed": args.seed, "haze": args.haze,
        "low_light": args.low_light, "max_frames": args.max_frames,
        "videos": {v.name: {"ir": str(v.ir), "vis": str(v.vis)} for v in videos},
        "results": per_video, "summary": summary,
        "floors": {name: [c._asdict() for c in floor_checks(results)]
                   for name, results in {"all": overall, **by_video}.items()}})
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "quality.md").write_text(report + "\n")
        (out / "quality.json").write_text(json.dumps(payload, indent=1))
        for name, results in per_video.items():
            for condition, result in results.items():
                plot_video(out / f"{name}_{condition}.png", name, condition, result["rows"],
                           schedule)
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0
