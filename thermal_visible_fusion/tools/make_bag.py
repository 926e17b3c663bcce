r"""
``tvf make-bag``: turn an mp4 pair or two frame folders into a rosbag2 bag.

Writes a thermal and an RGB ``sensor_msgs/Image`` topic (default
``/thermal/image_raw`` mono8 -- mono16 for 16-bit frame files -- and
``/rgb/image_raw`` bgr8, frame_ids ``thermal_optical`` / ``rgb_optical``), so a
recording without ROS can be replayed (``tvf replay``, ``ros2 bag play``) or
evaluated (``tvf evaluate``).  No ROS installation is needed (``rosbags``).

Stamps: frame ``i`` of RGB is stamped ``start + i / fps`` (the video's frame
rate, else ``--fps``, default 30); the thermal frame of the same index is
stamped ``--offset-ms`` later (negative: earlier).  ``--jitter-ms J`` adds an
independent uniform random error in [-J, +J] ms to every stamp (``--seed``),
to exercise the stamp pairing; J must stay below half a frame period so stamps
keep increasing.  The log time of every message is its header stamp, and
messages are written in log-time order.

``--compressed`` writes ``sensor_msgs/CompressedImage`` instead, on
``<topic>/compressed`` (image_transport's name): colour and 8-bit thermal as JPEG
(``--jpeg-quality``, default 90), 16-bit thermal as lossless PNG, with the formats
image_transport's ``compressed`` plugin writes ("bgr8; jpeg compressed bgr8", ...).

Calibration: ``--calibration FILE`` is a camera_info YAML (as
``camera_calibration`` writes it) with a ``thermal:`` and an ``rgb:`` section;
``--thermal-calibration`` / ``--rgb-calibration`` take the usual one-camera
files instead.  Each given camera gets a ``sensor_msgs/CameraInfo`` topic beside
its image topic (``/thermal/camera_info``, ``/rgb/camera_info``), one message
per image with the image's stamp and frame_id.

Example::

    tvf make-bag --ir scene_infrared.mp4 --rgb scene_visible.mp4 --out scene_bag
    tvf make-bag --ir clip/ir --rgb clip/vis --out clip_bag --fps 30 \
        --offset-ms 5 --jitter-ms 2 --storage sqlite3 --calibration cameras.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

import numpy as np

DEFAULT_THERMAL_TOPIC = "/thermal/image_raw"
DEFAULT_RGB_TOPIC = "/rgb/image_raw"
THERMAL_FRAME_ID = "thermal_optical"
RGB_FRAME_ID = "rgb_optical"
DEFAULT_START_SEC = 1_700_000_000.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ir", required=True, help="thermal video or folder of frames")
    parser.add_argument("--rgb", required=True, help="RGB video or folder of frames")
    parser.add_argument("--out", required=True,
                        help="bag folder to create (an existing non-empty one needs --force)")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT whole")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                        help="rosbag2 storage (default mcap)")
    parser.add_argument("--fps", type=float, default=None,
                        help="frame rate of the stamps (default: the video's, else 30)")
    parser.add_argument("--jitter-ms", type=float, default=0.0,
                        help="uniform random stamp error in [-J, +J] ms per message (default 0)")
    parser.add_argument("--offset-ms", type=float, default=0.0,
                        help="thermal stamps minus RGB stamps, ms (default 0)")
    parser.add_argument("--calibration", default=None,
                        help="camera_info YAML with 'thermal:' and 'rgb:' sections")
    parser.add_argument("--thermal-calibration", default=None,
                        help="one-camera camera_info YAML for the thermal camera")
    parser.add_argument("--rgb-calibration", default=None,
                        help="one-camera camera_info YAML for the RGB camera")
    parser.add_argument("--compressed", action="store_true",
                        help="write CompressedImage on <topic>/compressed (JPEG; 16-bit: PNG)")
    parser.add_argument("--jpeg-quality", type=int, default=90,
                        help="JPEG quality 1..100 of --compressed (default 90)")
    parser.add_argument("--thermal-topic", default=DEFAULT_THERMAL_TOPIC)
    parser.add_argument("--rgb-topic", default=DEFAULT_RGB_TOPIC)
    parser.add_argument("--frames", type=int, default=None, help="at most this many frame pairs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stamp jitter (default 0)")
    parser.add_argument("--start-sec", type=float, default=DEFAULT_START_SEC,
                        help=f"stamp of the first RGB frame, s (default {DEFAULT_START_SEC:.0f})")


def camera_info_topic(image_topic: str) -> str:
    """``/ns/image_raw`` -> ``/ns/camera_info`` (the image_transport convention)."""
    parent = image_topic.rstrip("/").rsplit("/", 1)[0]
    return f"{parent}/camera_info" if parent else f"{image_topic.rstrip('/')}/camera_info"


def calibrations(args) -> dict:
    from thermal_visible_fusion.tools.bag_io import load_calibrations

    found = {}
    if args.calibration:
        found = load_calibrations(args.calibration)
        if "camera" in found:
            raise ValueError(f"{args.calibration} holds one camera; give it as "
                             "--thermal-calibration or --rgb-calibration, or use a file with "
                             "'thermal:' and 'rgb:' sections")
    for role, path in (("thermal", args.thermal_calibration), ("rgb", args.rgb_calibration)):
        if path:
            loaded = load_calibrations(path)
            found[role] = loaded.get(role) or loaded.get("camera")
            if found[role] is None:
                raise ValueError(f"{path} has no {role} camera")
    return found


def stamp_plan(count: int, fps: float, offset_ms: float, jitter_ms: float, seed: int,
               start_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """(thermal stamps, RGB stamps) in ns, int64, strictly increasing per stream."""
    period_ms = 1000.0 / fps
    if jitter_ms < 0 or jitter_ms >= period_ms / 2:
        raise ValueError(f"--jitter-ms must be in [0, {period_ms / 2:.3f}) at {fps:g} fps "
                         "so that stamps keep increasing")
    nominal = start_ns + np.round(np.arange(count) * 1e9 / fps).astype(np.int64)
    rng = np.random.default_rng(seed)
    jitter = np.round(rng.uniform(-jitter_ms, jitter_ms, size=(2, count)) * 1e6).astype(np.int64)
    if jitter_ms == 0:
        jitter[:] = 0
    rgb = nominal + jitter[1]
    thermal = nominal + round(offset_ms * 1e6) + jitter[0]
    return thermal, rgb


def make_bag(args) -> dict:
    from thermal_visible_fusion.data.sources import open_pair
    from thermal_visible_fusion.tools.bag_io import BagWriter, progress
    from thermal_visible_fusion.tools.output_dir import check_output, staged_output

    if not 1 <= args.jpeg_quality <= 100:
        raise ValueError("--jpeg-quality must be in 1..100")
    cameras = calibrations(args)
    out = Path(args.out)
    inputs = [p for p in (args.ir, args.rgb, args.calibration, args.thermal_calibration,
                          args.rgb_calibration) if p]
    check_output(out, args.force, inputs)
    # written beside and renamed when complete: a bad input leaves no partial bag
    with open_pair(args.ir, args.rgb) as source, \
            staged_output(out, args.force, inputs, create=False) as partial:
        fps = args.fps or source.fps or 30.0
        if fps <= 0:
            raise ValueError("--fps must be > 0")
        count = len(source)
        if args.frames is not None:
            count = min(count, max(0, args.frames))
        if count == 0:
            raise ValueError("no frame pairs to write")
        start_ns = round(args.start_sec * 1e9)
        thermal_stamps, rgb_stamps = stamp_plan(count, fps, args.offset_ms, args.jitter_ms,
                                                args.seed, start_ns)
        slack_ns = round(args.jitter_ms * 1e6) + max(0, -round(args.offset_ms * 1e6))
        streams = (("thermal", args.thermal_topic, THERMAL_FRAME_ID, thermal_stamps),
                   ("rgb", args.rgb_topic, RGB_FRAME_ID, rgb_stamps))
        written = 0
        sizes = {}
        with BagWriter(partial, storage=args.storage, reorder=True) as writer:
            for pair in progress(source, total=count, desc="make-bag"):
                i = pair.index
                if i >= count:
                    break
                for role, topic, frame_id, stamps in streams:
                    image = pair.thermal if role == "thermal" else pair.rgb
                    sizes[role] = (int(image.shape[1]), int(image.shape[0]))
                    if args.compressed:
                        writer.write_image(f"{topic.rstrip('/')}/compressed", image,
                                           int(stamps[i]), frame_id, compressed=True,
                                           quality=args.jpeg_quality)
                    else:
                        writer.write_image(topic, image, int(stamps[i]), frame_id)
                    if role in cameras:
                        writer.write_camera_info(camera_info_topic(topic), cameras[role],
                                                 int(stamps[i]), frame_id)
                written += 1
                # No later frame can be stamped before its nominal time minus the slack.
                writer.release_before(start_ns + round((i + 1) * 1e9 / fps) - slack_ns)
            if source.incomplete:  # a video stopped decoding early: not a finished bag
                raise ValueError(source.incomplete)
        counts = dict(writer.counts)  # after close: every held message is written
    for role, camera in cameras.items():
        if role in sizes and sizes[role] != (camera.width, camera.height):
            print(f"[make-bag] warning: {role} calibration is for {camera.width}x{camera.height} "
                  f"but the images are {sizes[role][0]}x{sizes[role][1]}", file=sys.stderr)
    return {"bag": str(out), "storage": args.storage, "frames": written, "fps": fps,
            "offset_ms": args.offset_ms, "jitter_ms": args.jitter_ms, "topics": counts}


def main(args) -> int:
    try:
        summary = make_bag(args)
    except (ValueError, OSError) as error:  # bad input, unreadable frame, existing output
        print(f"[make-bag] error: {error}; no bag written", file=sys.stderr)
        return 2
    topics = ", ".join(f"{t} ({n})" for t, n in summary["topics"].items())
    print(f"[make-bag] wrote {summary['bag']} ({summary['storage']}): {summary['frames']} pairs "
          f"at {summary['fps']:g} fps; topics {topics}")
    return 0
