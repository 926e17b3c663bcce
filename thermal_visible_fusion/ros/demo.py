"""
``tvf demo``: the real node fusing a live scene over DDS, results written to a folder.

Starts ``fusion_node`` in its own process (shipped params and Fast DDS profile,
a private ROS domain), publishes a built-in synthetic thermal + RGB scene (or an
mp4 pair / frame folders given with --ir/--rgb) at the camera rate, records the
fused images and per-frame diagnostics, and writes:
  OUT/fused.mp4        thermal | RGB | fused, side by side
  OUT/preview.png      a strip of sample frames
  OUT/diagnostics.csv  one row of temporal-consistency values per fused frame
  OUT/summary.json     counts, rates, latency and mean temporal errors
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
import time

import cv2
import numpy as np

from thermal_visible_fusion.stream.frame_diagnostics import TEMPORAL_KEYS


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="output/demo",
                        help="output folder (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=150,
                        help="frames to publish (default: 150; all are held in memory)")
    parser.add_argument("--rate", type=float, default=None,
                        help="publish rate in Hz (default: 30, or the video's rate)")
    parser.add_argument("--ir",
                        help="thermal mp4 or frame folder (instead of the synthetic scene)")
    parser.add_argument("--rgb", help="RGB mp4 or frame folder, paired with --ir")
    parser.add_argument("--thermal-16bit", action="store_true",
                        help="publish the synthetic thermal as mono16 (radiometric-like)")
    parser.add_argument("--fuser", default=None, help="fuser parameter of the node")
    parser.add_argument("--device", default=None, help="device parameter of the node")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)


def frame_source(args):
    """(frames, rate): an iterator of (thermal, rgb) and its rate."""
    if bool(args.ir) != bool(args.rgb):
        raise SystemExit("--ir and --rgb go together")
    if args.ir:
        from thermal_visible_fusion.data.sources import open_pair
        source = open_pair(args.ir, args.rgb)
        rate = args.rate or source.fps or 30.0
        count = min(args.frames, len(source))
        return ((p.thermal, p.rgb) for p, _ in zip(source, range(count))), count, rate
    from thermal_visible_fusion.data.synthetic import SyntheticScene
    scene = SyntheticScene(args.width, args.height,
                           thermal_dtype="uint16" if args.thermal_16bit else "uint8")
    frames = (scene.frame(i) for i in range(args.frames))
    return frames, args.frames, args.rate or 30.0


def main(args) -> int:
    from thermal_visible_fusion.ros.harness import NodeProcess, dds_environment, paced

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dds_environment()
    os.environ.update(env)
    import rclpy
    from std_msgs.msg import Header

    from thermal_visible_fusion.ros.harness import PairClient
    from thermal_visible_fusion.ros.messages import image_message

    frames, count, rate = frame_source(args)
    params = {k: v for k, v in (("fuser", args.fuser), ("device", args.device)) if v}
    print(f"[demo] starting fusion_node (ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, "
          f"Fast DDS profile {env['FASTDDS_DEFAULT_PROFILES_FILE']})", flush=True)
    node = NodeProcess(env, params, log_path=out / "node.log")
    rclpy.init()
    client = PairClient()
    try:
        if not client.wait_for_node(timeout=120, process=node):
            print(node.log())
            raise SystemExit("[demo] fusion_node did not come up; see node.log above")
        # Encode every frame first, so the cameras publish on time (like real drivers).
        frames = [(t, r, image_message(t, Header(frame_id="thermal")),
                   image_message(r, Header(frame_id="rgb_camera"))) for t, r in frames]
        print(f"[demo] publishing {count} frame pairs at {rate:g} Hz", flush=True)
        published: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        start = time.monotonic()
        for index in paced(count, rate):
            thermal, rgb, thermal_msg, rgb_msg = frames[index]
            published[client.publish_now(thermal_msg, rgb_msg)] = (thermal, rgb)
        elapsed = time.monotonic() - start
        client.wait_for_count(count, timeout=3.0)
    finally:
        client.close()
        rclpy.try_shutdown()
        node.stop()
    summary = write_outputs(out, published, client.received, rate, elapsed)
    print(json.dumps(summary, indent=2))
    print(f"[demo] wrote {out}/fused.mp4, preview.png, diagnostics.csv, summary.json")
    return 0 if summary["fused_received"] > 0 else 1


def write_outputs(out: Path, published: dict, received, rate: float, elapsed: float) -> dict:
    from thermal_visible_fusion.stream.image_codec import decode_rgb
    from thermal_visible_fusion.ros.harness import rounded_percentile
    from thermal_visible_fusion.data.sources import SideBySideWriter, tile

    stamps = sorted(received.fused)
    writer = SideBySideWriter(out / "fused.mp4", rate)
    samples = []
    for i, stamp in enumerate(stamps):
        msg = received.fused[stamp]
        fused = decode_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian,
                           msg.data)
        thermal, rgb = published[stamp]
        if thermal.dtype != np.uint8:
            thermal = cv2.normalize(thermal, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        writer.write(thermal, rgb, fused)
        if i in {len(stamps) // 4, len(stamps) // 2, 3 * len(stamps) // 4}:
            samples.append(tile(thermal, rgb, fused))
    writer.close()
    if samples:
        cv2.imwrite(str(out / "preview.png"), np.vstack(samples))

    with open(out / "diagnostics.csv", "w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(["stamp_ns", *TEMPORAL_KEYS])
        for stamp in sorted(received.temporal):
            row = received.temporal[stamp]
            table.writerow([stamp, *(row.get(c, "") for c in TEMPORAL_KEYS)])

    def mean(column: str) -> float | None:
        values = [float(r[column]) for r in received.temporal.values()
                  if r.get(column, "nan") not in ("nan", "")]
        return round(float(np.mean(values)), 3) if values else None

    latencies = [float(r["latency_ms"]) for r in received.temporal.values() if "latency_ms" in r]
    summary = {
        "published_pairs": len(published),
        "fused_received": len(stamps),
        "diagnostics_received": len(received.temporal),
        "publish_seconds": round(elapsed, 2),
        "mean_temporal_error": {k: mean(f"temporal_error_{k}")
                                for k in ("fused", "thermal", "rgb")},
        "mean_brightness_flicker": mean("brightness_flicker"),
        "node_latency_ms": {"p50": rounded_percentile(latencies, 50),
                            "p95": rounded_percentile(latencies, 95)},
    }
    fusion = received.last_status()
    if fusion:
        summary["fuser"], summary["device"] = fusion.get("fuser"), fusion.get("device")
        summary["skipped_backpressure"] = fusion.get("skipped_backpressure")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
