"""
``tvf benchmark``: throughput and latency of the running node, ros2_benchmark style.

The node runs in its own process exactly as deployed; this process publishes
pre-encoded synthetic pairs (``--degraded``: with IR noise and stripes and visible blur,
which the learned fuser restores; a clean camera costs it far less) and times the fused
images coming back.
  1. latency at a fixed input rate (default 30 Hz): end-to-end latency from
     publishing a pair to receiving its fused image (p50, p95, max), and missed
     frames (published pairs that never came back fused);
  2. peak throughput: pairs offered at rising rates (``--peak-rates``); the node
     fuses the newest pair and skips the rest, and the best fused images per
     second over those runs is its peak rate.  (Offering far faster than that
     only measures how much CPU the publisher takes from the node on 2 cores.)
  3. ~/reset under load: while pairs arrive at the latency run's rate, a burst of
     ``--reset-calls`` calls sent at once, then ten single calls; how many were answered
     and the answer times (p50, max).
Figures are printed and written as JSON.  This is not a test: the machine is
shared and noisy, so read medians and compare runs made on one machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import platform
import time


def add_arguments(parser) -> None:
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rate", type=float, default=30.0, help="input rate of the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--fuser", default=None, help="fuser parameter of the node")
    parser.add_argument("--device", default=None, help="device parameter of the node")
    parser.add_argument("--weights", default=None, help="weights parameter of the node")
    parser.add_argument("--cpu-threads", type=int, default=None,
                        help="cpu_threads parameter of the node (default: the node's, 0)")
    parser.add_argument("--peak-rates", default="30,45,60,90,120",
                        help="input rates (Hz) tried for peak throughput")
    parser.add_argument("--degraded", action="store_true",
                        help="publish the frames degraded (IR noise and stripes, visible blur): "
                             "the learned fuser's full restoration, not a clean camera's")
    parser.add_argument("--reset-calls", type=int, default=100,
                        help="~/reset calls sent at once under load (0: skip)")
    parser.add_argument("--json", default="output/benchmark.json", help="where to write results")


def main(args) -> int:
    from thermal_visible_fusion.ros.harness import dds_environment, rounded_percentile

    env = dds_environment()
    os.environ.update(env)
    from thermal_visible_fusion.ros.harness import node_session

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {k: v for k, v in (("fuser", args.fuser), ("device", args.device),
                                ("weights", args.weights), ("cpu_threads", args.cpu_threads))
              if v is not None and v != ""}
    with node_session(env, params, out.with_suffix(".node.log"), keep_images=False) as session:
        client = session.client
        pairs = _messages(args.width, args.height, args.degraded)
        latency = _run(client, pairs, args.rate, args.seconds)
        rates = [float(r) for r in args.peak_rates.split(",")]
        peaks = [_run(client, pairs, rate, args.seconds / 2) for rate in rates]
        peak = max(peaks, key=lambda run: run["fused"] / run["seconds"])
        resets = _reset_under_load(client, pairs, args.rate, args.reset_calls)
        status = client.received.last_status()
    result = {
        "resolution": f"{args.width}x{args.height}",
        "input": "degraded" if args.degraded else "clean",
        "fuser": status.get("fuser"), "device": status.get("device"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        f"latency_at_{args.rate:g}hz": {
            "published": latency["published"], "fused": latency["fused"],
            "missed_frames": latency["published"] - latency["fused"],
            "latency_ms_p50": rounded_percentile(latency["latencies"], 50),
            "latency_ms_p95": rounded_percentile(latency["latencies"], 95),
            "latency_ms_max": rounded_percentile(latency["latencies"], 100),
            "fuse_ms_p50": rounded_percentile(latency["fuse_ms"], 50),
            "output_fps": round(latency["fused"] / latency["seconds"], 2),
        },
        "peak_throughput": {
            "offered_fps": round(peak["published"] / peak["seconds"], 1),
            "fused_fps_by_offered_rate": {f"{r:g}": round(p["fused"] / p["seconds"], 2)
                                          for r, p in zip(rates, peaks)},
            "fused_fps": round(peak["fused"] / peak["seconds"], 2),
            "latency_ms_p50": rounded_percentile(peak["latencies"], 50),
        },
        "reset_under_load": resets,
        "node_reported": {k: status.get(k) for k in ("latency_p50_ms", "latency_p95_ms",
                                                     "skipped_backpressure", "fuse_errors")},
    }
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {out}")
    return 0


def _messages(width: int, height: int, degraded: bool = False, count: int = 30):
    """Pre-encoded frames so publishing costs the benchmark as little as possible."""
    from thermal_visible_fusion.data.degradation import VideoDegradation
    from thermal_visible_fusion.data.synthetic import SyntheticScene
    from thermal_visible_fusion.ros.messages import image_message

    scene = SyntheticScene(width, height)
    frames = [scene.frame(i) for i in range(count)]
    if degraded:
        degradation = VideoDegradation("benchmark")
        frames = [degradation.apply(t, r, i) for i, (t, r) in enumerate(frames)]
    return [(image_message(t), image_message(r)) for t, r in frames]


def _reset_under_load(client, pairs, rate: float, calls: int) -> dict | None:
    """Send a burst of ~/reset calls and ten single ones while pairs arrive at ``rate``."""
    import threading

    from thermal_visible_fusion.ros.harness import reset_storm, rounded_percentile

    if calls <= 0:
        return None
    stop = threading.Event()
    load = threading.Thread(target=lambda: _run(client, pairs, rate, 60.0, stop), daemon=True)
    load.start()
    try:
        time.sleep(1.0)
        burst = reset_storm(client, calls=calls, timeout=30.0)
        single = [reset_storm(client, calls=1, timeout=10.0)[0] for _ in range(10)]
    finally:
        stop.set()
        load.join(timeout=10.0)
    answered = [t for t in burst if t is not None]
    answered_single = [t for t in single if t is not None]
    return {"burst_calls": calls, "burst_answered": len(answered),
            "burst_ms_p50": rounded_percentile(answered, 50),
            "burst_ms_max": rounded_percentile(answered, 100),
            "single_calls": len(single), "single_answered": len(answered_single),
            "single_ms_p50": rounded_percentile(answered_single, 50),
            "single_ms_max": rounded_percentile(answered_single, 100)}


def _run(client, pairs, rate: float, seconds: float, stop=None) -> dict:
    """Publish for ``seconds`` at ``rate``; match fused images back by stamp."""
    client.received.fused.clear()
    client.received.fused_receipt.clear()
    client.received.temporal.clear()
    sent: dict[int, float] = {}
    start = time.monotonic()
    index = 0
    while time.monotonic() - start < seconds and not (stop and stop.is_set()):
        due = start + index / rate
        if (delay := due - time.monotonic()) > 0:
            time.sleep(delay)
        sent[client.publish_now(*pairs[index % len(pairs)])] = time.monotonic()
        index += 1
    elapsed = time.monotonic() - start
    time.sleep(1.0)  # let the last fused images arrive
    receipts = dict(client.received.fused_receipt)
    latencies = [(receipts[s] - sent[s]) * 1000 for s in sent if s in receipts]
    # the node's own time in the fuser per frame (its temporal diagnostics' fuse_ms)
    fuse_ms = [float(v["fuse_ms"]) for s, v in list(client.received.temporal.items())
               if s in sent and "fuse_ms" in v]
    return {"published": len(sent), "fused": len(latencies), "latencies": latencies,
            "fuse_ms": fuse_ms, "seconds": elapsed}
