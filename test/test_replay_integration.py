"""``tvf replay`` feeding the real fusion node: a bag played over DDS comes out fused,
stamped with the bag's RGB stamps."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rosbags")

from thermal_visible_fusion.ros.harness import (NodeProcess, PairClient,  # noqa: E402
                                                dds_environment)
from thermal_visible_fusion.synthetic import SyntheticScene  # noqa: E402
from thermal_visible_fusion.tools import bag_io  # noqa: E402

DOMAIN_ID = 31 + os.getpid() % 50
FRAMES, FPS = 30, 30.0
START_NS = 1_700_000_000 * 1_000_000_000


def write_bag(path):
    """320x240, 30 frames at 30 fps, thermal stamped 4 ms after RGB (pairing must match)."""
    scene = SyntheticScene(320, 240, seed=7)
    rgb_stamps = []
    with bag_io.BagWriter(path) as writer:
        for i in range(FRAMES):
            thermal, rgb = scene.frame(i)
            stamp = START_NS + round(i * 1e9 / FPS)
            writer.write_image("/rgb/image_raw", rgb, stamp, "rgb_optical")
            writer.write_image("/thermal/image_raw", thermal, stamp + 4_000_000, "thermal_optical")
            writer.write_camera_info("/rgb/camera_info", bag_io.CameraCalibration(320, 240),
                                     stamp, "rgb_optical")
            rgb_stamps.append(stamp)
    return rgb_stamps


def test_replay_feeds_the_fusion_node(tmp_path):
    bag = tmp_path / "bag"
    rgb_stamps = write_bag(bag)
    env = dds_environment(DOMAIN_ID)
    os.environ.update(env)
    node = NodeProcess(env, params={"fuser": "multiscale"}, log_path=tmp_path / "node.log")
    rclpy.init()
    client = None
    try:
        client = PairClient()  # records /fusion_node/fused (its own input publishers stay idle)
        assert client.wait_for_node(timeout=60, process=node), node.log()
        replay = subprocess.run(
            [sys.executable, "-m", "thermal_visible_fusion", "replay", str(bag), "--clock",
             "--wait-for-subscribers", "30"],
            env=env, capture_output=True, text=True, timeout=90)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "/rgb/camera_info" in replay.stdout and "done: 90 messages" in replay.stdout
        # The last pair waits for a next frame that never comes (live pairing, no flush).
        end = time.monotonic() + 10
        while time.monotonic() < end and len(client.received.fused) < FRAMES - 1:
            time.sleep(0.05)
        time.sleep(1.5)  # one /diagnostics period, so the skip count covers the whole bag
        received = dict(client.received.fused)
        skipped = int(client.received.last_status().get("skipped_backpressure", 0))
    finally:
        if client is not None:
            client.close()
        rclpy.shutdown()
        assert node.stop() == 0, node.log()

    assert received, node.log()
    assert set(received) <= set(rgb_stamps), "fused stamps must be the bag's RGB stamps"
    # FRAMES - 1 pairs are expected (the last waits for a frame that never comes). A busy
    # machine may make the node skip pairs (it keeps only the newest, and counts the rest);
    # besides those, at most a couple may be lost in transport.
    assert len(received) + skipped >= FRAMES - 3, (len(received), skipped, node.log())
    assert len(received) >= FRAMES * 2 // 3, (len(received), skipped, node.log())
    first = received[min(received)]
    assert first.header.frame_id == "rgb_optical"
    assert (first.width, first.height, first.encoding) == (320, 240, "bgr8")
