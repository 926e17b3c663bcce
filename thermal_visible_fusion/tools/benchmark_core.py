"""
``tvf benchmark-core``: speed of the ROS-free core, printed and written as JSON.

  * engine frames/s per fuser at each resolution (median over ``--frames``, after warm-up
    and ``STEADY_FRAMES`` frames: the steady state of a long stream; the learned fuser with
    memory on, as the node runs it), and the learned network's parameter count;
  * the learned fuser again on the same frames degraded (``data.degradation``: IR noise and
    stripes, visible blur), key ``learned@WxH degraded``: it restores only what needs it,
    so a clean camera costs less than a degraded one;
  * the node's per-frame temporal diagnostics (``TemporalMonitor``) in ms at 640x480;
  * all image metrics (``metrics.image.compute_all``) of one 640x480 frame in s;
  * with ``--busy-cores N`` (default 1): the same engines at the first size while N other
    processes keep a core each busy (after ``SETTLE_FRAMES`` frames under that load), and
    the ratio to the quiet figure (how well the thread policy copes with a shared CPU);
  * with ``--compare-cpu N``: how far the learned fuser's output on ``--device``, as it
    runs there, is from the float32 path's over N degraded frames of one stream (memory
    on), in grey levels: this checks that half precision on a GPU, and the bfloat16
    convolutions of a CPU that runs them natively, fuse the same frames.
Inputs are synthetic scene frames, so no data is needed.  On a CUDA machine use
``--device cuda`` (half precision, channels-last): this is the GPU benchmark.
Medians on a shared machine are noisy: compare figures from one run.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import time

import numpy as np


# Frames run under a new load before timing it: the learned fuser's thread tuner notices
# a slowdown within 12 frames and tries its thread counts over the next 24.
SETTLE_FRAMES = 40
# Frames run before timing: past the memory's dense start (64 frames, each estimating the
# camera's stripes and blur), into the steady state a long stream runs in.
STEADY_FRAMES = 70


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_arguments(parser) -> None:
    parser.add_argument("--sizes", default="640x480,320x240", help="WxH list")
    parser.add_argument("--fusers", default="learned,multiscale,average,max")
    parser.add_argument("--frames", type=int, default=40, help="timed frames per case")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights", default="")
    parser.add_argument("--threads", type=int, default=0,
                        help="most torch threads of the learned fuser (0: torch's default)")
    parser.add_argument("--json", default="output/benchmark_core.json")
    parser.add_argument("--busy-cores", type=_count, default=1, metavar="N",
                        help="cores kept busy by other processes for the contention run "
                             "(0: skip it)")
    parser.add_argument("--compare-cpu", type=_count, default=0, metavar="N",
                        help="frames of the learned fuser on --device vs the CPU (0: off)")


def _median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def _spin(stop) -> None:
    """Keep one core busy until ``stop`` is set (another process's load)."""
    while not stop.is_set():
        sum(range(100_000))


class BusyCores:
    """``with BusyCores(n):`` n processes spin, one core each, for the block's duration."""

    def __init__(self, count: int):
        self.count = count
        self._stop = None
        self._workers: list = []

    def __enter__(self) -> "BusyCores":
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no copy of torch's threads
        self._stop = context.Event()
        self._workers = [context.Process(target=_spin, args=(self._stop,), daemon=True)
                         for _ in range(self.count)]
        for worker in self._workers:
            worker.start()
        time.sleep(0.5)  # let them start spinning before timing anything
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.terminate()


def cpu_agreement(weights: str, device: str, frames: list) -> dict:
    """
    Compare the learned fuser's BGR output on ``device`` with the CPU path's.

    The learned fuser's BGR output on ``device`` against the CPU float32 path's, frame by
    frame of one stream (memory on): mean and max absolute difference in grey levels, the
    share of values more than one grey level apart, PSNR.
    """
    from thermal_visible_fusion.fusers.learned import LearnedFuser

    fusers = [LearnedFuser(weights or None, device=device),
              LearnedFuser(weights or None, device="cpu", bf16=False)]
    squared, mean_abs, max_abs, over_one = 0.0, 0.0, 0, 0.0
    for thermal, rgb in frames:
        a, b = (f.fuse(thermal, rgb).astype(np.int16) for f in fusers)
        diff = np.abs(a - b)
        squared += float((diff.astype(np.float64) ** 2).mean()) / len(frames)
        mean_abs += float(diff.mean()) / len(frames)
        max_abs = max(max_abs, int(diff.max()))
        over_one += float((diff > 1).mean()) / len(frames)
    psnr = None if squared == 0 else round(float(10 * np.log10(255.0 ** 2 / squared)), 2)
    return {"device": str(fusers[0].device), "bf16": fusers[0].bf16,  # psnr None: identical
            "frames": len(frames), "mean_abs": round(mean_abs, 4), "max_abs": max_abs,
            "over_one": round(over_one, 7), "psnr_db": psnr}


def _streams(width: int, height: int) -> dict[str, list]:
    """Return the benchmark's frames by key suffix: the synthetic scene, and degraded."""
    from thermal_visible_fusion.data.degradation import VideoDegradation
    from thermal_visible_fusion.data.synthetic import SyntheticScene

    scene = SyntheticScene(width, height)
    frames = [scene.frame(i) for i in range(8)]
    degradation = VideoDegradation("benchmark")
    return {"": frames,
            " degraded": [degradation.apply(t, r, i) for i, (t, r) in enumerate(frames)]}


def _engine_step(engine, frames: list):
    """One timed engine call per call, cycling through ``frames``, stamps 30 Hz apart."""
    import torch

    counter = iter(range(10**9))

    def step():
        i = next(counter)
        thermal, rgb = frames[i % len(frames)]
        engine.process(thermal, rgb, i * 33_333_333)
        if engine.device.startswith("cuda"):
            torch.cuda.synchronize()
    return step


def main(args) -> int:
    import torch

    from thermal_visible_fusion.engine import EngineConfig, FusionEngine
    from thermal_visible_fusion.metrics.image import compute_all
    from thermal_visible_fusion.metrics.temporal import TemporalMonitor
    from thermal_visible_fusion.data.degradation import VideoDegradation
    from thermal_visible_fusion.data.synthetic import SyntheticScene

    if args.threads:
        torch.set_num_threads(args.threads)
    most = torch.get_num_threads()
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                               f"torch {torch.__version__}, at most {most} threads",
                    "engine_fps": {}}
    if torch.cuda.is_available():
        result["gpu"] = torch.cuda.get_device_name(0)
    first = args.sizes.split(",")[0]
    busy_steps = {}  # "name@size" -> its timed step, at the first size: the contention run
    for size in args.sizes.split(","):
        width, height = map(int, size.split("x"))
        streams = _streams(width, height)
        for name in args.fusers.split(","):
            for stream, frames in streams.items():
                if stream and name not in ("learned", "auto"):  # rules: same on any content
                    continue
                key = f"{name}@{size}{stream}"
                engine = FusionEngine(EngineConfig(fuser=name, weights=args.weights,
                                                   device=args.device,
                                                   cpu_threads=args.threads))
                if engine.fuser.name != name and name != "auto":
                    result["engine_fps"][key] = f"unavailable: {engine.fuser_warning}"
                    continue
                engine.warmup(height, width)
                step = _engine_step(engine, frames)
                for _ in range(STEADY_FRAMES):
                    step()
                ms = _median_ms(step, args.frames)
                if size == first:
                    busy_steps[key] = step
                result["engine_fps"][key] = round(1000 / ms, 2)
                result.setdefault("device", engine.device)
                if hasattr(engine.fuser, "model"):
                    result["learned_parameters"] = sum(p.numel()
                                                       for p in engine.fuser.model.parameters())
                print(f"{key:>30}: {1000 / ms:7.2f} fps ({ms:.1f} ms/frame, "
                      f"{engine.device})", flush=True)

    if args.busy_cores and busy_steps:
        busy = result["engine_fps_busy"] = {"busy_cores": args.busy_cores}
        with BusyCores(args.busy_cores):
            for key, step in busy_steps.items():
                for _ in range(SETTLE_FRAMES):  # the load is new: let the engine adapt
                    step()
                fps = busy[key] = round(1000 / _median_ms(step, args.frames), 2)
                ratio = busy[f"{key}_ratio"] = round(fps / result["engine_fps"][key], 3)
                print(f"{key:>30} with {args.busy_cores} core(s) busy: {fps:7.2f} fps, "
                      f"{ratio:.2f} of quiet", flush=True)

    scene = SyntheticScene(640, 480)
    frames = [scene.frame(i) for i in range(8)]
    monitor = TemporalMonitor()
    counter = iter(range(10**9))

    def monitor_step():
        thermal, rgb = frames[next(counter) % len(frames)]
        monitor.update(rgb, thermal, rgb)
    monitor_step()
    result["temporal_diagnostics_ms_640x480"] = round(_median_ms(monitor_step, 100), 3)
    thermal, rgb = frames[0]
    compute_all(rgb, thermal, rgb)
    result["image_metrics_s_640x480"] = round(_median_ms(lambda: compute_all(rgb, thermal, rgb), 7)
                                              / 1000, 4)
    if args.compare_cpu:
        degradation = VideoDegradation("benchmark")
        stream = [degradation.apply(*scene.frame(i), i) for i in range(args.compare_cpu)]
        result["learned_vs_cpu_640x480"] = agreement = cpu_agreement(args.weights, args.device,
                                                                     stream)
        print(f"learned on {agreement['device']} (bf16: {agreement['bf16']}) vs CPU float32, "
              f"{agreement['frames']} degraded frames: mean |diff| {agreement['mean_abs']} "
              f"grey levels, max {agreement['max_abs']}, over 1: {agreement['over_one']}, "
              f"PSNR {agreement['psnr_db'] or 'inf'} dB", flush=True)
    print(json.dumps(result, indent=2))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written to {out}")
    return 0
