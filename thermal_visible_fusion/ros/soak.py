"""
``tvf soak``: run the real node for N frames at a rate and size; report what drifted.

The node runs in its own process exactly as deployed (``NodeProcess``); this process
publishes pre-encoded synthetic pairs on an absolute schedule and matches the fused
images coming back by stamp.  It samples the node's resident memory (``/proc``) once a
second and prints one JSON object:

* ``rss_mb``: at start (node ready, before any frame), after warm-up (the first 5 % of
  the frames), at the end, and the largest sample; ``rss_growth_after_warmup_mb``;
* ``published``, ``fused`` (came back), ``missed`` and the node's own counts
  (``skipped_backpressure``, ``fuse_errors``, per-input ``errors``, ``lost_estimate``);
* ``latency_ms`` from publishing a pair to receiving its fused image (p50, p95, p99, max);
* ``node_alive`` and ``node_exit_code``: the node must outlive the run and stop cleanly.

Exit status 0 when the node survived with no fuse errors, else 1.  On a shared machine
read the figures as one run's, not a bound.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import sys
import threading
import time


def add_arguments(parser) -> None:
    parser.add_argument("--frames", type=int, default=10_000, help="pairs to publish")
    parser.add_argument("--rate", type=float, default=30.0, help="pairs per second")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fuser", default=None, help="fuser parameter of the node")
    parser.add_argument("--weights", default=None, help="weights parameter of the node")
    parser.add_argument("--device", default=None, help="device parameter of the node")
    parser.add_argument("--json", default="output/soak.json", help="where to write the result")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID of the run (default: a random private one)")


def main(args) -> int:
    from thermal_visible_fusion.ros.harness import dds_environment

    if args.frames < 1 or args.rate <= 0:
        print("tvf soak: error: --frames must be >= 1 and --rate > 0", file=sys.stderr)
        return 2
    env = dds_environment(args.domain_id)
    os.environ.update(env)
    from thermal_visible_fusion.ros.benchmark import _messages
    from thermal_visible_fusion.ros.harness import node_session

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {k: v for k, v in (("fuser", args.fuser), ("weights", args.weights),
                                ("device", args.device)) if v}
    with node_session(env, params, out.with_suffix(".node.log"), keep=args.frames + 10,
                      keep_images=False) as session:
        client = session.client
        sampler = RssSampler(session.node.process.pid)
        sampler.start()
        try:
            run = _publish(client, _messages(args.width, args.height), args.frames,
                           args.rate, sampler)
            time.sleep(1.5)  # the last fused images and one /diagnostics period
            alive = session.node.alive()
            fusion = client.received.last_status()
            inputs = {s: client.received.last_status(f"{s} input") for s in ("thermal", "rgb")}
        finally:
            sampler.stop()
    code = session.code
    result = _report(args, run, client, sampler, fusion, inputs, alive, code)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if alive and code == 0 and result["node"]["fuse_errors"] == 0 else 1


class RssSampler:
    """The node's resident memory once a second, on a thread (bounded: one per second)."""

    def __init__(self, pid: int, period: float = 1.0):
        self.pid, self.period = pid, period
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> float | None:
        from thermal_visible_fusion.ros.harness import process_rss_mb
        value = process_rss_mb(self.pid)
        if value is not None:
            self.samples.append(value)
        return value

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)


def _publish(client, pairs, count: int, rate: float, sampler: RssSampler) -> dict:
    """Publish ``count`` pairs at ``rate`` (absolute schedule); remember send times."""
    from thermal_visible_fusion.ros.harness import paced

    sent: dict[int, float] = {}
    warm_index = max(1, count // 20)
    warm_rss = None
    start = time.monotonic()
    for index in paced(count, rate):
        sent[client.publish_now(*pairs[index % len(pairs)])] = time.monotonic()
        if index == warm_index:
            warm_rss = sampler.sample()
    return {"sent": sent, "seconds": time.monotonic() - start, "warm_rss": warm_rss}


def _report(args, run: dict, client, sampler: RssSampler, fusion: dict, inputs: dict,
            alive: bool, code: int | None) -> dict:
    from thermal_visible_fusion.ros.harness import rounded_percentile

    receipts = dict(client.received.fused_receipt)
    sent = run["sent"]
    latencies = [(receipts[s] - sent[s]) * 1000 for s in sent if s in receipts]
    samples = sampler.samples
    end_rss = samples[-1] if samples else None
    warm = run["warm_rss"]

    def integer(values: dict, key: str) -> int | None:
        try:
            return int(values[key])
        except (KeyError, ValueError):
            return None

    return {
        "frames": args.frames, "rate_hz": args.rate, "resolution": f"{args.width}x{args.height}",
        "fuser": fusion.get("fuser"), "device": fusion.get("device"),
        "seconds": round(run["seconds"], 1),
        "published": len(sent), "fused": len(latencies), "missed": len(sent) - len(latencies),
        "latency_ms": {f"p{q}": rounded_percentile(latencies, q) for q in (50, 95, 99)}
        | {"max": rounded_percentile(latencies, 100)},
        "rss_mb": {"start": _round(samples[0] if samples else None), "after_warmup": _round(warm),
                   "end": _round(end_rss), "max": _round(max(samples) if samples else None)},
        "rss_growth_after_warmup_mb": _round(end_rss - warm) if end_rss and warm else None,
        "node": {"skipped_backpressure": integer(fusion, "skipped_backpressure"),
                 "fused": integer(fusion, "fused"), "fuse_errors": integer(fusion, "fuse_errors"),
                 "memory_resets": integer(fusion, "memory_resets"),
                 "input_errors": {s: integer(v, "errors") for s, v in inputs.items()},
                 "lost_estimate": {s: integer(v, "lost_estimate") for s, v in inputs.items()}},
        "node_alive": alive, "node_exit_code": code,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
