"""
``tvf replay``: publish a bag's images over ROS 2 in real time, without ``ros2 bag play``.

Reads a rosbag2 bag (mcap or sqlite3) with ``rosbags`` and publishes, with
rclpy, every ``sensor_msgs/Image``, ``CompressedImage`` and ``CameraInfo``
topic (or the ``--topics`` given, of any type rclpy can import) at the pace of
the messages' log times, scaled by ``--rate``.  Messages go out exactly as
recorded (serialized bytes, header stamps untouched), images and camera info
with sensor-data QoS (best effort, like camera drivers), anything else
reliable.

``--transport`` chooses how images go out: ``recorded`` (default) as they are in
the bag; ``raw`` every image as ``sensor_msgs/Image`` (a CompressedImage topic
``.../compressed`` is decoded and published on its base topic, as image_transport's
``republish`` does); ``compressed`` every image as ``sensor_msgs/CompressedImage`` on
``<topic>/compressed`` (JPEG "bgr8; jpeg compressed bgr8" or mono8, ``--jpeg-quality``;
16-bit grey as PNG), the topics the node subscribes with ``*_transport: compressed``.
A bag that holds both forms of a camera publishes the recorded one of the chosen
form only; a message that cannot be converted (corrupt data, 32FC1 to compressed)
is skipped and counted.  ``--clock [HZ]`` also publishes ``/clock`` (bag time; before every
message and at HZ, default 40) for nodes with ``use_sim_time``.  ``--loop``
plays the bag again and again (the node sees stamps jump back and restarts its
pairing and temporal memory); otherwise the command exits when the bag ends.

Sets ``FASTDDS_DEFAULT_PROFILES_FILE`` to the shipped large-image profile when
unset (as ``tvf demo`` does), so 640x480 images travel over shared memory.

Example::

    tvf replay scene_bag --rate 0.5 --clock
    tvf replay scene_bag --transport compressed --jpeg-quality 80
    tvf replay eval/scene/fused_bag --topics /fused/image_raw --loop
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import importlib
import os
from pathlib import Path
import sys
import time

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
SENSOR_TYPES = (IMAGE, COMPRESSED_IMAGE, "sensor_msgs/msg/CameraInfo")
TRANSPORTS = ("recorded", "raw", "compressed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 folder (mcap or sqlite3)")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="playback speed factor (default 1.0 = real time)")
    parser.add_argument("--clock", type=float, nargs="?", const=40.0, default=None, metavar="HZ",
                        help="publish /clock with bag time (default 40 Hz when given)")
    parser.add_argument("--loop", action="store_true", help="play again when the bag ends")
    parser.add_argument("--topics", nargs="+", default=None, metavar="TOPIC",
                        help="topics to publish (default: all image and camera_info topics)")
    parser.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS until every image topic has a subscriber")
    parser.add_argument("--delay", type=float, default=0.0, metavar="SECONDS",
                        help="sleep before the first message (after any waiting)")
    parser.add_argument("--transport", choices=TRANSPORTS, default="recorded",
                        help="images as recorded (default), all as Image ('raw') or all as "
                             "CompressedImage on <topic>/compressed ('compressed')")
    parser.add_argument("--jpeg-quality", type=int, default=90,
                        help="JPEG quality 1..100 of --transport compressed (default 90)")


def message_class(msgtype: str):
    """``sensor_msgs/msg/Image`` -> ``sensor_msgs.msg.Image`` (None when not importable)."""
    package, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError):
        return None


def select_connections(reader, topics: list[str] | None):
    """Return (connections to play, skipped topic notes)."""
    available = {c.topic for c in reader.connections}
    if topics:
        missing = [t for t in topics if t not in available]
        if missing:
            raise ValueError(f"topics not in the bag: {', '.join(missing)} "
                             f"(bag topics: {', '.join(sorted(available))})")
        chosen = [c for c in reader.connections if c.topic in set(topics)]
    else:
        chosen = [c for c in reader.connections if c.msgtype in SENSOR_TYPES]
    playable, skipped = [], []
    for connection in chosen:
        if message_class(connection.msgtype) is None:
            skipped.append(f"{connection.topic} ({connection.msgtype} not importable)")
        else:
            playable.append(connection)
    return playable, skipped


@dataclass(frozen=True)
class Route:
    """Where one recorded (topic, type) goes: ``convert`` None publishes the bytes."""

    topic: str
    msgtype: str
    convert: str | None = None  # "raw" or "compressed"


def plan_routes(connections, transport: str) -> tuple[dict, list[str]]:
    """
    Plan the routes of the connections to play.

    ``{(topic, msgtype): Route}`` of the connections to play, and notes on recorded
    topics left out because the bag holds the chosen form already.
    """
    from thermal_visible_fusion.tools.bag_io import base_topic, compressed_topic

    recorded = {(c.topic, c.msgtype) for c in connections}
    routes, notes = {}, []
    for topic, msgtype in sorted(recorded):
        route = Route(topic, msgtype)
        if transport == "raw" and msgtype == COMPRESSED_IMAGE:
            route = Route(base_topic(topic), IMAGE, "raw")
        elif transport == "compressed" and msgtype == IMAGE:
            route = Route(compressed_topic(topic), COMPRESSED_IMAGE, "compressed")
        if route.convert and (route.topic, route.msgtype) in recorded:
            notes.append(f"{topic} (the bag has {route.topic} as {route.msgtype} already)")
            continue
        routes[(topic, msgtype)] = route
    return routes, notes


class Player:
    def __init__(self, node, connections, clock_hz: float | None, transport: str = "recorded",
                 jpeg_quality: int = 90):
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

        self.node = node
        self.publishers = {}
        self.routes, self.notes = plan_routes(connections, transport)
        self.jpeg_quality = jpeg_quality
        self.skipped: dict[str, int] = {}
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for route in self.routes.values():
            if route.topic in self.publishers:
                continue
            qos = qos_profile_sensor_data if route.msgtype in SENSOR_TYPES else reliable
            self.publishers[route.topic] = node.create_publisher(
                message_class(route.msgtype), route.topic, qos)
        self.image_topics = sorted({r.topic for r in self.routes.values()
                                    if r.msgtype in (IMAGE, COMPRESSED_IMAGE)})
        self.clock_period = 1.0 / clock_hz if clock_hz else None
        self.clock_pub = None
        if clock_hz:
            from rosgraph_msgs.msg import Clock
            self._clock_type = Clock
            self.clock_pub = node.create_publisher(
                Clock, "/clock", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self._last_clock = -1.0
        self._store = None  # the rosbags typestore, made on the first conversion
        self.published = 0

    def _convert(self, route: Route, connection, raw) -> bytes | None:
        """
        Return the CDR bytes of the converted message.

        None (counted, the first one said) when the data cannot be converted.
        """
        from thermal_visible_fusion.stream.image_codec import ImageFormatError
        from thermal_visible_fusion.tools import bag_io

        if self._store is None:
            self._store = bag_io.typestore()
        store = self._store
        try:
            msg = store.deserialize_cdr(raw, connection.msgtype)
            out = (bag_io.to_raw(msg) if route.convert == "raw"
                   else bag_io.to_compressed(msg, self.jpeg_quality))
        except ImageFormatError as error:
            count = self.skipped.get(connection.topic, 0)
            if count == 0:
                print(f"[replay] skipping a message of {connection.topic}: {error}",
                      file=sys.stderr, flush=True)
            self.skipped[connection.topic] = count + 1
            return None
        return bytes(store.serialize_cdr(out, route.msgtype))

    def wait_for_subscribers(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        topics = self.image_topics or list(self.publishers)
        while time.monotonic() < end:
            if all(self.publishers[t].get_subscription_count() > 0 for t in topics):
                time.sleep(0.5)  # let discovery settle on the subscriber's side too
                return True
            time.sleep(0.05)
        return False

    def publish_clock(self, bag_time_ns: int) -> None:
        if self.clock_pub is None:
            return
        from builtin_interfaces.msg import Time
        self.clock_pub.publish(self._clock_type(clock=Time(sec=bag_time_ns // 1_000_000_000,
                                                           nanosec=bag_time_ns % 1_000_000_000)))
        self._last_clock = time.monotonic()

    def play(self, messages, rate: float) -> int:
        """Publish ``(connection, log_time, raw)`` paced by log time; returns messages sent."""
        sent = 0
        start_wall = first_log = None
        for connection, log_time, raw in messages:
            if start_wall is None:
                start_wall, first_log = time.monotonic(), log_time
            due = start_wall + (log_time - first_log) / 1e9 / rate
            # convert before waiting, so a converted frame goes out when it is due
            route = self.routes[(connection.topic, connection.msgtype)]
            data = self._convert(route, connection, raw) if route.convert else bytes(raw)
            while True:
                now = time.monotonic()
                if now >= due:
                    break
                if self.clock_period is not None and now - self._last_clock >= self.clock_period:
                    # bag time now, interpolated between messages
                    self.publish_clock(first_log + round((now - start_wall) * rate * 1e9))
                    now = time.monotonic()
                step = due - now
                if self.clock_period is not None:
                    step = min(step, self.clock_period)
                if step > 0:
                    time.sleep(step)
            if data is None:
                continue
            self.publish_clock(log_time)
            self.publishers[route.topic].publish(data)
            sent += 1
        self.published += sent
        return sent


def replay(args) -> int:
    from thermal_visible_fusion.tools.bag_io import open_reader

    if args.rate <= 0:
        raise ValueError("--rate must be > 0")
    if args.clock is not None and args.clock <= 0:
        raise ValueError("--clock HZ must be > 0")
    if not 1 <= args.jpeg_quality <= 100:
        raise ValueError("--jpeg-quality must be in 1..100")
    if "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ:
        try:
            from thermal_visible_fusion.resources import fastdds_profile
            profile = fastdds_profile()
            if profile.is_file():
                os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
        except FileNotFoundError:
            pass

    reader = open_reader(Path(args.bag))
    try:
        connections, skipped = select_connections(reader, args.topics)
        for note in skipped:
            print(f"[replay] skipping {note}", file=sys.stderr)
        if not connections:
            raise ValueError("nothing to publish: no image or camera_info topics in the bag "
                             "(choose some with --topics)")
        import rclpy
        from rclpy.signals import SignalHandlerOptions

        # Keep Python's Ctrl-C (KeyboardInterrupt): there is no executor to stop.
        rclpy.init(args=None, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("tvf_replay")
        try:
            player = Player(node, connections, args.clock, args.transport, args.jpeg_quality)
            for note in player.notes:
                print(f"[replay] not converting {note}", file=sys.stderr)
            connections = [c for c in connections if (c.topic, c.msgtype) in player.routes]
            topics = ", ".join(sorted(player.publishers))
            if args.wait_for_subscribers > 0 and not player.wait_for_subscribers(
                    args.wait_for_subscribers):
                print(f"[replay] no subscriber after {args.wait_for_subscribers:g} s; "
                      "publishing anyway", file=sys.stderr)
            if args.delay > 0:
                time.sleep(args.delay)
            print(f"[replay] publishing {topics} at {args.rate:g}x"
                  + (" with /clock" if args.clock else "") + (" (looping)" if args.loop else ""),
                  flush=True)
            while True:
                player.play(reader.messages(connections=connections), args.rate)
                if not args.loop:
                    break
            time.sleep(0.3)  # let the last messages leave before the publishers go
            skipped = sum(player.skipped.values())
            print(f"[replay] done: {player.published} messages"
                  + (f" ({skipped} not convertible, skipped)" if skipped else ""), flush=True)
        finally:
            node.destroy_node()
            rclpy.try_shutdown()
    finally:
        reader.close()
    return 0


def main(args) -> int:
    try:
        return replay(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError) as error:
        print(f"[replay] error: {error}", file=sys.stderr)
        return 2
