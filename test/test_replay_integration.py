"""
``tvf replay`` over DDS.

A bag played to the real fusion node comes out fused, stamped with the bag's RGB
stamps, from raw or compressed images; ``--transport`` converts between Image and
CompressedImage.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rosbags")

from thermal_visible_fusion.data.synthetic import SyntheticScene  # noqa: E402
from thermal_visible_fusion.ros.harness import (  # noqa: E402
    dds_environment, node_session, NodeProcess, PairClient)
from thermal_visible_fusion.stream.image_codec import (  # noqa: E402
    decode_compressed_rgb, decode_rgb)
from thermal_visible_fusion.tools import bag_io  # noqa: E402

DOMAIN_ID = 31 + os.getpid() % 50
FRAMES, FPS = 30, 30.0
START_NS = 1_700_000_000 * 1_000_000_000


def write_bag(path, frames=FRAMES, compressed=False, size=(320, 240)):
    """
    Write 30 frames at 30 fps, thermal stamped 4 ms after RGB (pairing must match).

    ``compressed``: CompressedImage on .../image_raw/compressed.
    """
    scene = SyntheticScene(*size, seed=7)
    suffix = "/compressed" if compressed else ""
    rgb_stamps, rgb_frames = [], []
    with bag_io.BagWriter(path) as writer:
        for i in range(frames):
            thermal, rgb = scene.frame(i)
            stamp = START_NS + round(i * 1e9 / FPS)
            writer.write_image("/rgb/image_raw" + suffix, rgb, stamp, "rgb_optical",
                               compressed=compressed, quality=95)
            writer.write_image("/thermal/image_raw" + suffix, thermal, stamp + 4_000_000,
                               "thermal_optical", compressed=compressed, quality=95)
            writer.write_camera_info("/rgb/camera_info", bag_io.CameraCalibration(*size),
                                     stamp, "rgb_optical")
            rgb_stamps.append(stamp)
            rgb_frames.append(rgb)
    return rgb_stamps, rgb_frames


def run_replay(bag, env, *extra):
    replay = subprocess.run(
        [sys.executable, "-m", "thermal_visible_fusion", "replay", str(bag),
         "--wait-for-subscribers", "30", *extra],
        env=env, capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    return replay


def wait_for_fused(client, node, count):
    # The last pair waits for a next frame that never comes (live pairing, no flush).
    end = time.monotonic() + 10
    while time.monotonic() < end and len(client.received.fused) < count:
        time.sleep(0.05)
    time.sleep(1.5)  # one /diagnostics period, so the skip count covers the whole bag
    received = dict(client.received.fused)
    skipped = int(client.received.last_status().get("skipped_backpressure", 0))
    return received, skipped


def check_fused(received, skipped, rgb_stamps, log):
    assert received, log
    assert set(received) <= set(rgb_stamps), "fused stamps must be the bag's RGB stamps"
    # FRAMES - 1 pairs are expected (the last waits for a frame that never comes). A busy
    # machine may make the node skip pairs (it keeps only the newest, and counts the rest);
    # besides those, at most a couple may be lost in transport.
    assert len(received) + skipped >= FRAMES - 3, (len(received), skipped, log)
    assert len(received) >= FRAMES * 2 // 3, (len(received), skipped, log)
    first = received[min(received)]
    assert first.header.frame_id == "rgb_optical"
    assert (first.width, first.height, first.encoding) == (320, 240, "bgr8")


@pytest.fixture
def dds():
    env = dds_environment(DOMAIN_ID)
    os.environ.update(env)
    return env


def test_replay_feeds_the_fusion_node(tmp_path, dds):
    bag = tmp_path / "bag"
    rgb_stamps, _ = write_bag(bag)
    # the client records fused/image_raw; its own input publishers stay idle
    with node_session(dds, {"fuser": "multiscale"}, tmp_path / "node.log") as session:
        replay = run_replay(bag, dds, "--clock")
        assert "/rgb/camera_info" in replay.stdout and "done: 90 messages" in replay.stdout
        received, skipped = wait_for_fused(session.client, session.node, FRAMES - 1)
    assert session.code == 0, session.node.log()
    check_fused(received, skipped, rgb_stamps, session.node.log())


def test_replay_compressed_feeds_the_node_with_compressed_transports(tmp_path, dds):
    # a raw bag replayed as CompressedImage to a node subscribing .../image_raw/compressed
    bag = tmp_path / "bag"
    rgb_stamps, _ = write_bag(bag)
    node = NodeProcess(dds, params={"fuser": "multiscale", "thermal_transport": "compressed",
                                    "rgb_transport": "compressed"},
                       log_path=tmp_path / "node.log")
    rclpy.init()
    client = None
    try:
        client = PairClient()
        end = time.monotonic() + 60
        while time.monotonic() < end and node.alive() and not (
                client.node.count_publishers(client.fused_topic) > 0
                and client.node.count_subscribers("/thermal/image_raw/compressed") > 0
                and client.node.count_subscribers("/rgb/image_raw/compressed") > 0):
            time.sleep(0.1)
        assert client.node.count_subscribers("/rgb/image_raw/compressed") > 0, node.log()
        replay = run_replay(bag, dds, "--transport", "compressed", "--jpeg-quality", "95")
        assert "/rgb/image_raw/compressed" in replay.stdout, replay.stdout
        received, skipped = wait_for_fused(client, node, FRAMES - 1)
    finally:
        if client is not None:
            client.close()
        rclpy.shutdown()
        assert node.stop() == 0, node.log()
    check_fused(received, skipped, rgb_stamps, node.log())


class Recorder:
    """Records every message of some topics (sensor-data QoS, as camera consumers do)."""

    def __init__(self, topics: dict[str, type]):
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data

        self.node = rclpy.create_node("tvf_replay_recorder")
        self.messages: dict[str, list] = {t: [] for t in topics}
        for topic, kind in topics.items():
            self.node.create_subscription(kind, topic, self.messages[topic].append,
                                          qos_profile_sensor_data)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()


def test_replay_transport_converts_both_ways(tmp_path, dds):
    from sensor_msgs.msg import CompressedImage, Image

    frames = 10
    raw_bag, jpeg_bag = tmp_path / "raw", tmp_path / "jpeg"
    rgb_stamps, rgb_frames = write_bag(raw_bag, frames, size=(160, 120))
    write_bag(jpeg_bag, frames, compressed=True, size=(160, 120))
    expected = dict(zip(rgb_stamps, rgb_frames))
    rclpy.init()
    try:
        # raw bag -> CompressedImage on <topic>/compressed, as image_transport names it
        recorder = Recorder({"/rgb/image_raw/compressed": CompressedImage,
                             "/thermal/image_raw/compressed": CompressedImage})
        try:
            run_replay(raw_bag, dds, "--transport", "compressed", "--jpeg-quality", "95")
            time.sleep(0.5)
        finally:
            recorder.close()
        rgb = recorder.messages["/rgb/image_raw/compressed"]
        thermal = recorder.messages["/thermal/image_raw/compressed"]
        assert len(rgb) >= frames // 2 and len(thermal) >= frames // 2
        assert {m.format for m in rgb} == {"bgr8; jpeg compressed bgr8"}
        assert {m.format for m in thermal} == {"mono8; jpeg compressed mono8"}
        for msg in rgb:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            image = decode_compressed_rgb(msg.format, msg.data)
            assert np.abs(image.astype(int) - expected[stamp]).mean() < 6  # JPEG of noise

        # compressed bag -> Image on the base topic
        recorder = Recorder({"/rgb/image_raw": Image, "/thermal/image_raw": Image})
        try:
            run_replay(jpeg_bag, dds, "--transport", "raw")
            time.sleep(0.5)
        finally:
            recorder.close()
        rgb = recorder.messages["/rgb/image_raw"]
        thermal = recorder.messages["/thermal/image_raw"]
        assert len(rgb) >= frames // 2 and len(thermal) >= frames // 2
        assert {(m.encoding, m.width, m.height) for m in rgb} == {("bgr8", 160, 120)}
        assert {(m.encoding, m.width, m.height) for m in thermal} == {("mono8", 160, 120)}
        for msg in rgb:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            image = decode_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian,
                               msg.data)
            assert np.abs(image.astype(int) - expected[stamp]).mean() < 6
    finally:
        rclpy.shutdown()
