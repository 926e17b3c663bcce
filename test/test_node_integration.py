"""
The real fusion node over DDS.

The real fusion node in its own process, talking over DDS with default QoS and the
shipped Fast DDS profile, driven by a real publisher node in this process.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402, I100 (after importorskip)
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from thermal_visible_fusion.data.synthetic import SyntheticScene  # noqa: E402
from thermal_visible_fusion.ros.harness import (  # noqa: E402
    dds_environment, NodeProcess, paced, PairClient)
from thermal_visible_fusion.ros.messages import image_message  # noqa: E402

DOMAIN_ID = 101 + os.getpid() % 100


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    env = dds_environment(DOMAIN_ID)
    os.environ.update(env)
    log = tmp_path_factory.mktemp("node") / "node.log"
    # The non-learned fuser keeps up with 30 Hz on any CPU, so this exercises transport,
    # pairing and robustness; the learned fuser's speed is measured by the benchmarks.
    process = NodeProcess(env, {"fuser": "multiscale"}, log_path=log)
    rclpy.init()
    client = PairClient()
    assert client.wait_for_node(timeout=90, process=process), process.log()
    # Discovery can report both ends before the node's fused publisher has matched our
    # subscription (the first images then vanish): one fused image back proves every link.
    assert prime(client), process.log()
    yield process, client
    client.close()
    rclpy.shutdown()
    assert process.stop() == 0, process.log()


class Stamps:
    """Monotonically increasing stamps that never repeat across tests."""

    next_ns = 1_000 * 1_000_000_000

    @classmethod
    def take(cls, period_s: float = 1 / 30) -> int:
        cls.next_ns += round(period_s * 1e9)
        return cls.next_ns


def header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                  frame_id=frame_id)


def pair_messages(thermal, rgb, stamp_ns):
    return (image_message(thermal, header(stamp_ns, "thermal_optical")),
            image_message(rgb, header(stamp_ns, "rgb_optical")))


def publish_good_pairs(client, count, scene, rate=30.0):
    frames = [scene.frame(i) for i in range(count)]
    stamps = [Stamps.take() for _ in range(count)]
    messages = [pair_messages(t, r, s) for (t, r), s in zip(frames, stamps)]
    for index in paced(count, rate):
        client.publish_pair(*messages[index])
    return stamps


def prime(client, attempts=100) -> bool:
    scene = SyntheticScene(160, 120)
    for _ in range(attempts):
        if wait_for_stamps(client, publish_good_pairs(client, 1, scene), timeout=0.2):
            return True
    return False


def wait_for_stamps(client, stamps, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not set(stamps) <= set(client.received.fused):
        time.sleep(0.05)
    return [s for s in stamps if s in client.received.fused]


def raw_image(encoding, height, width, step, data, stamp_ns, frame_id="thermal_optical"):
    msg = Image(encoding=encoding, height=height, width=width, step=step)
    msg.header = header(stamp_ns, frame_id)
    msg.data = bytes(data)
    return msg


def latest_input_status(client, stream):
    """Return the newest status of one input stream, and its values as a dict."""
    suffix = f"{stream} input"
    return client.received.newest_status(suffix), client.received.last_status(suffix)


def skipped_backpressure(client) -> int:
    """Return the node's running count of pairs replaced before it could fuse them."""
    return int(client.received.last_status().get("skipped_backpressure", 0))


def test_fuses_sixty_vga_pairs_at_30hz_with_matching_stamps_and_diagnostics(node):
    _, client = node
    scene = SyntheticScene(640, 480)
    time.sleep(1.5)  # one /diagnostics period: the skip count before
    skipped_before = skipped_backpressure(client)
    stamps = publish_good_pairs(client, 60, scene)
    received = wait_for_stamps(client, stamps)
    time.sleep(1.5)
    skipped = skipped_backpressure(client) - skipped_before
    # Every pair is fused, or counted as skipped when a busy CPU let the next one replace
    # it (the node never queues stale frames); at most two may vanish in transport.
    assert len(received) + skipped >= 58, f"{len(received)} fused + {skipped} skipped of 60"
    assert len(received) >= 45, f"only {len(received)} of 60 fused images arrived"
    for stamp in received:
        fused = client.received.fused[stamp]
        assert fused.header.frame_id == "rgb_optical"
        assert (fused.width, fused.height, fused.encoding) == (640, 480, "bgr8")
    time.sleep(0.3)
    with_diagnostics = [s for s in received if s in client.received.temporal]
    assert len(with_diagnostics) >= len(received) - 1
    values = client.received.temporal[received[-1]]
    assert values["_frame_id"] == "rgb_optical"
    for key in ("temporal_error_fused", "temporal_error_thermal", "temporal_error_rgb",
                "brightness_flicker", "latency_ms", "stamp_skew_ms"):
        assert math.isfinite(float(values[key])), key
    assert int(values["frames_since_reset"]) > 0


def test_bad_input_is_dropped_with_error_diagnostic_and_fusion_continues(node):
    process, client = node
    scene = SyntheticScene(320, 240)
    rgb = scene.frame(0)[1]
    bad_thermal = [
        raw_image("nv21", 240, 320, 320, bytes(320 * 360), Stamps.take()),         # unknown
        raw_image("mono8", 0, 0, 0, b"", Stamps.take()),                             # empty
        raw_image("mono8", 240, 320, 320, bytes(1000), Stamps.take()),               # short data
        raw_image("mono8", 3000, 3000, 3000, bytes(3000 * 3000), Stamps.take()),     # oversize
        raw_image("32FC1", 240, 320, 1280,
                  np.full((240, 320), np.nan, np.float32).tobytes(), Stamps.take()),  # NaN
    ]
    for msg in bad_thermal:
        client.thermal_pub.publish(msg)
        client.rgb_pub.publish(image_message(rgb, msg.header))
        time.sleep(0.05)
    # Duplicate and out-of-order stamps on a well-formed stream.
    stamp = Stamps.take()
    good = pair_messages(scene.frame(1)[0], rgb, stamp)
    client.publish_pair(*good)
    time.sleep(0.05)
    client.thermal_pub.publish(good[0])                                               # duplicate
    client.thermal_pub.publish(image_message(scene.frame(2)[0], header(stamp - 10_000_000,
                                                                       "thermal_optical")))
    time.sleep(1.5)  # one /diagnostics period
    assert process.alive(), process.log()
    stamps = publish_good_pairs(client, 20, scene)
    received = wait_for_stamps(client, stamps)
    assert len(received) >= 18, "the node stopped fusing good pairs after bad input"

    errors = [s for a in client.received.diagnostics for s in a.status
              if s.name.endswith("thermal input") and s.level == b"\x02"]
    assert errors, "no ERROR diagnostic for the bad thermal frames"
    _, values = latest_input_status(client, "thermal")
    # most of the 6 bad frames arrive best-effort (the duplicate is counted as such)
    assert int(values["errors"]) >= 5
    log = process.log()
    for reason in ("unsupported", "empty", "max_pixels", "NaN", "duplicate", "out-of-order"):
        assert reason in log, f"no log line about {reason}"


def test_silent_stream_is_reported_stalled_and_queues_stay_bounded(node):
    _, client = node
    rgb = SyntheticScene(320, 240).frame(0)[1]
    for _ in paced(40, 30.0):
        client.rgb_pub.publish(image_message(rgb, header(Stamps.take(), "rgb_optical")))
    time.sleep(2.2)
    status, values = latest_input_status(client, "thermal")
    assert status.level == b"\x01" and "stalled" in status.message
    _, rgb_values = latest_input_status(client, "rgb")
    assert int(rgb_values["pairing_dropped_overflow"]) \
        + int(rgb_values["pairing_dropped_unmatched"]) >= 25


def test_reset_service_clears_temporal_memory(node):
    _, client = node
    scene = SyntheticScene(320, 240)
    wait_for_stamps(client, publish_good_pairs(client, 10, scene))  # none left in flight
    reset = client.node.create_client(Trigger, "/fusion_node/reset")
    assert reset.wait_for_service(timeout_sec=5.0)
    future = reset.call_async(Trigger.Request())
    end = time.monotonic() + 5
    while not future.done() and time.monotonic() < end:
        time.sleep(0.02)
    assert future.result().success
    stamps = publish_good_pairs(client, 5, scene)
    received = wait_for_stamps(client, stamps)
    time.sleep(0.3)
    first = client.received.temporal[received[0]]
    assert first["frames_since_reset"] == "0"
    assert "reset service" in first["memory_reset"]


def _set_parameter(client, name, value, kind):
    setter = client.node.create_client(SetParameters, "/fusion_node/set_parameters")
    assert setter.wait_for_service(timeout_sec=5.0)
    field = {ParameterType.PARAMETER_DOUBLE: "double_value",
             ParameterType.PARAMETER_STRING: "string_value"}[kind]
    parameter_value = ParameterValue(type=kind, **{field: value})
    future = setter.call_async(SetParameters.Request(
        parameters=[Parameter(name=name, value=parameter_value)]))
    end = time.monotonic() + 5
    while not future.done() and time.monotonic() < end:
        time.sleep(0.02)
    return future.result().results[0]


def test_invalid_parameter_change_is_rejected_with_reason(node):
    _, client = node
    result = _set_parameter(client, "sync_slop", -1.0, ParameterType.PARAMETER_DOUBLE)
    assert not result.successful and "sync_slop" in result.reason
    result = _set_parameter(client, "fuser", "average", ParameterType.PARAMETER_STRING)
    assert not result.successful  # read-only after start
    result = _set_parameter(client, "sync_slop", 0.01, ParameterType.PARAMETER_DOUBLE)
    assert result.successful


def test_invalid_parameters_at_start_stop_the_node_with_the_reason(tmp_path):
    env = dds_environment(DOMAIN_ID + 1)
    process = NodeProcess(env, {"sync_slop": -0.5, "device": "gpu"}, log_path=tmp_path / "log")
    assert process.process.wait(timeout=60) != 0
    log = process.log()
    assert "sync_slop" in log and "device" in log
    process.stop()


def test_runtime_parameters_accept_ros_typed_values(node):
    _, client = node
    setter = client.node.create_client(SetParameters, "/fusion_node/set_parameters")
    assert setter.wait_for_service(timeout_sec=5.0)

    def set_values(*parameters):
        future = setter.call_async(SetParameters.Request(parameters=list(parameters)))
        end = time.monotonic() + 5
        while not future.done() and time.monotonic() < end:
            time.sleep(0.02)
        return future.result().results

    shift = [1.0, 0.0, 8.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    homography = Parameter(name="homography", value=ParameterValue(
        type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=shift))
    integer_gap = Parameter(name="max_stamp_gap", value=ParameterValue(
        type=ParameterType.PARAMETER_INTEGER, integer_value=2))
    sim_time = Parameter(name="use_sim_time", value=ParameterValue(
        type=ParameterType.PARAMETER_BOOL, bool_value=False))
    results = set_values(homography, integer_gap, sim_time)
    assert all(r.successful for r in results), [r.reason for r in results]
    singular = Parameter(name="homography", value=ParameterValue(
        type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=[0.0] * 9))
    assert not set_values(singular)[0].successful
    stamps = publish_good_pairs(client, 10, SyntheticScene(320, 240))
    assert len(wait_for_stamps(client, stamps)) >= 9  # still fusing with the homography
    identity = Parameter(name="homography", value=ParameterValue(
        type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=[]))
    assert set_values(identity)[0].successful


def test_stamps_jumping_back_restart_memory_and_keep_fusing(node):
    process, client = node
    scene = SyntheticScene(320, 240)
    publish_good_pairs(client, 10, scene)
    Stamps.next_ns -= 20 * 1_000_000_000  # the bag loops: stamps go 20 s back
    stamps = publish_good_pairs(client, 15, scene)
    received = wait_for_stamps(client, stamps)
    assert len(received) >= 14, process.log()  # one restart: no frame of the new loop lost
    time.sleep(0.3)
    first = client.received.temporal[received[0]]
    assert first["frames_since_reset"] == "0" and "backwards" in first["memory_reset"]
    Stamps.next_ns += 40 * 1_000_000_000  # stay clear of stamps used before the jump
    time.sleep(1.2)
    _, values = latest_input_status(client, "rgb")
    assert int(values["source_restarts"]) >= 1


def test_bad_rgb_frames_are_counted_on_the_rgb_input(node):
    _, client = node
    scene = SyntheticScene(320, 240)
    _, before = latest_input_status(client, "rgb")
    stamp = Stamps.take()
    client.thermal_pub.publish(image_message(scene.frame(0)[0], header(stamp, "thermal_optical")))
    client.rgb_pub.publish(raw_image("bgr8", 240, 320, 960, bytes(10), stamp, "rgb_optical"))
    time.sleep(1.5)
    _, after = latest_input_status(client, "rgb")
    assert int(after["errors"]) > int(before.get("errors", 0))
    assert "step*height" in after["last_error"] or "bytes" in after["last_error"]
    stamps = publish_good_pairs(client, 10, scene)
    assert len(wait_for_stamps(client, stamps)) >= 9


def test_params_file_with_homography_and_integer_values_starts(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    fuser: multiscale\n    max_stamp_gap: 1\n"
                      "    homography: [1, 0, 4, 0, 1, 0, 0, 0, 1]\n")
    process = NodeProcess(dds_environment(DOMAIN_ID + 3), params_file=params,
                          log_path=tmp_path / "log")
    try:
        end = time.monotonic() + 60
        while process.alive() and "fusing with" not in process.log() and time.monotonic() < end:
            time.sleep(0.2)
        assert process.alive() and "fusing with" in process.log(), process.log()
    finally:
        assert process.stop() == 0, process.log()
