"""
The node's ROS interfaces as a user wires them (issue 18).

Over DDS with real nodes: compressed camera inputs, fused/image_raw +
fused/image_raw/compressed + fused/camera_info, a namespaced node, /diagnostics names and
hardware ids, and the expected-rate check.
"""

from __future__ import annotations

import os
import threading
import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402, I100 (after importorskip)
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from thermal_visible_fusion.data.synthetic import SyntheticScene  # noqa: E402
from thermal_visible_fusion.ros.harness import (  # noqa: E402
    dds_environment, NodeProcess, paced, PairClient)
from thermal_visible_fusion.ros.messages import qos_by_name  # noqa: E402
from thermal_visible_fusion.stream.image_codec import encode_compressed  # noqa: E402

DOMAIN_ID = 101 + os.getpid() % 100 + 20  # test_node_integration +0..3, test_faults +10..14
NS = "/robot1"
NODE = f"{NS}/fusion_node"
THERMAL_FRAME, RGB_FRAME = "flir_boson_optical", "realsense_color_optical"
WIDTH, HEIGHT = 320, 240
RATE = 10.0  # Hz: the cameras' rate in this module, and the node's expected_rate
# The RGB camera's calibration; the thermal camera sees the same field at half the size.
K_RGB = [300.0, 0.0, 159.5, 0.0, 300.0, 119.5, 0.0, 0.0, 1.0]
K_THERMAL = [150.0, 0.0, 79.75, 0.0, 150.0, 59.75, 0.0, 0.0, 1.0]
OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class Cameras:
    """
    Compressed thermal and RGB cameras in /robot1, and recorders of the node's output.

    Compressed thermal (16-bit PNG) and RGB (JPEG) cameras in /robot1, with CameraInfo
    on demand, and recorders of the node's camera_info and compressed output.
    """

    next_ns = 2_000 * 1_000_000_000

    def __init__(self, client: PairClient):
        self.client = client
        node = client.node
        qos = qos_by_name("sensor_data")
        self.thermal_pub = node.create_publisher(CompressedImage, "thermal/image_raw/compressed",
                                                 qos)
        self.rgb_pub = node.create_publisher(CompressedImage, "rgb/image_raw/compressed", qos)
        self.info_pubs = {"thermal": node.create_publisher(CameraInfo, "thermal/camera_info", qos),
                          "rgb": node.create_publisher(CameraInfo, "rgb/camera_info", qos)}
        self.infos: dict[int, CameraInfo] = {}
        self.compressed: dict[int, CompressedImage] = {}
        self._compressed_sub = None
        node.create_subscription(CameraInfo, "fused/camera_info",
                                 lambda m: self.infos.__setitem__(stamp_of(m), m),
                                 qos_by_name("reliable", depth=50))
        scene = SyntheticScene(WIDTH, HEIGHT, thermal_dtype="uint16")
        self.frames = []
        for i in range(10):  # pre-encoded, so publishing keeps its rate
            thermal, rgb = scene.frame(i)
            thermal = cv2.resize(thermal, (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_AREA)
            self.frames.append((encode_compressed(thermal, 90), encode_compressed(rgb, 90)))

    def subscribe_compressed(self) -> None:
        self._compressed_sub = self.client.node.create_subscription(
            CompressedImage, "fused/image_raw/compressed",
            lambda m: self.compressed.__setitem__(stamp_of(m), m),
            qos_by_name("reliable", depth=50))

    def unsubscribe_compressed(self) -> None:
        self.client.node.destroy_subscription(self._compressed_sub)

    def publish(self, count: int, rate: float = RATE, infos: bool = False,
                stop: threading.Event | None = None) -> list[int]:
        stamps = []
        for index in paced(count, rate):
            if stop is not None and stop.is_set():
                break
            Cameras.next_ns += round(1e9 / rate)
            stamp = Cameras.next_ns
            (thermal_format, thermal_data), (rgb_format, rgb_data) = self.frames[index % 10]
            if infos:
                self.info_pubs["thermal"].publish(camera_info(stamp, THERMAL_FRAME, K_THERMAL,
                                                              WIDTH // 2, HEIGHT // 2))
                self.info_pubs["rgb"].publish(camera_info(stamp, RGB_FRAME, K_RGB, WIDTH, HEIGHT))
            self.thermal_pub.publish(CompressedImage(header=header(stamp, THERMAL_FRAME),
                                                     format=thermal_format, data=thermal_data))
            self.rgb_pub.publish(CompressedImage(header=header(stamp, RGB_FRAME),
                                                 format=rgb_format, data=rgb_data))
            stamps.append(stamp)
        return stamps


def header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                  frame_id=frame_id)


def camera_info(stamp_ns, frame_id, k, width, height) -> CameraInfo:
    fx, cx, fy, cy = k[0], k[2], k[4], k[5]
    return CameraInfo(header=header(stamp_ns, frame_id), width=width, height=height,
                      distortion_model="plumb_bob", d=[0.0] * 5, k=k,
                      r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                      p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


def wait_for(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def wait_fused(client, stamps, timeout=10.0) -> list[int]:
    wait_for(lambda: set(stamps) <= set(client.received.fused), timeout)
    return [s for s in stamps if s in client.received.fused]


def statuses_since(client, index: int, suffix: str) -> list:
    return [s for a in list(client.received.diagnostics)[index:] for s in a.status
            if s.name.endswith(suffix)]


def next_diagnostics(client, count: int = 1, timeout: float = 5.0) -> None:
    start = len(client.received.diagnostics)
    wait_for(lambda: len(client.received.diagnostics) >= start + count, timeout)


def fusion_values(client) -> dict[str, str]:
    return client.received.last_status(": fusion")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    env = dds_environment(DOMAIN_ID)
    os.environ.update(env)
    log = tmp_path_factory.mktemp("interfaces") / "node.log"
    process = NodeProcess(env, {"fuser": "average", "thermal_transport": "compressed",
                                "rgb_transport": "compressed", "registration": "camera_info",
                                "expected_rate": RATE, "stall_timeout": 3.0},
                          log_path=log, extra_args=["-r", f"__ns:={NS}"])
    rclpy.init()
    client = PairClient(namespace=NS)
    cameras = Cameras(client)
    ready = wait_for(lambda: not process.alive() or (
        cameras.thermal_pub.get_subscription_count() > 0
        and cameras.rgb_pub.get_subscription_count() > 0
        and client.node.count_publishers(client.fused_topic) > 0), timeout=120)
    assert ready and process.alive(), process.log()
    # Discovery can report both ends before every link matched: one fused image proves it.
    assert any(wait_fused(client, cameras.publish(1), timeout=0.3) for _ in range(100)), \
        process.log()
    yield process, client, cameras
    client.close()
    rclpy.shutdown()
    assert process.stop() == 0, process.log()


def set_parameter(client, name: str, value: float) -> bool:
    setter = client.node.create_client(SetParameters, f"{NODE}/set_parameters")
    try:
        assert setter.wait_for_service(timeout_sec=10.0)
        future = setter.call_async(SetParameters.Request(parameters=[Parameter(
            name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                            double_value=value))]))
        wait_for(future.done, 10.0)
        return future.result().results[0].successful
    finally:
        client.node.destroy_client(setter)


def test_outputs_live_in_the_node_namespace_under_image_pipeline_names(session):
    process, client, _ = session
    expected = {f"{NS}/fused/image_raw": "sensor_msgs/msg/Image",
                f"{NS}/fused/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
                f"{NS}/fused/camera_info": "sensor_msgs/msg/CameraInfo",
                f"{NS}/fused/temporal_consistency": "diagnostic_msgs/msg/DiagnosticArray"}
    wait_for(lambda: all(client.node.count_publishers(t) for t in expected))
    topics = dict(client.node.get_topic_names_and_types())
    for topic, kind in expected.items():
        assert kind in topics.get(topic, []), (topic, sorted(topics))
    assert client.node.count_publishers("/fusion_node/fused") == 0  # the old private name
    assert "/robot1/fusion_node/reset" in dict(client.node.get_service_names_and_types())


def test_compressed_output_is_encoded_only_while_subscribed(session):
    process, client, cameras = session
    next_diagnostics(client)
    before = fusion_values(client)
    assert wait_fused(client, cameras.publish(10))
    next_diagnostics(client, 2)
    after = fusion_values(client)
    assert int(after["fused"]) > int(before["fused"])
    assert after["compressed_encoded"] == before["compressed_encoded"], "encoded for nobody"

    cameras.subscribe_compressed()
    try:
        def first_jpeg() -> bool:  # the node encodes once discovery has matched us
            cameras.publish(1)
            return bool(cameras.compressed)

        assert wait_for(first_jpeg, 30), "no fused/image_raw/compressed"
        stamps = cameras.publish(10)
        assert wait_for(lambda: len(set(stamps) & set(cameras.compressed)) >= 8)
        next_diagnostics(client, 2)
        assert int(fusion_values(client)["compressed_encoded"]) > int(after["compressed_encoded"])
        for stamp in set(stamps) & set(cameras.compressed):
            msg = cameras.compressed[stamp]
            assert "jpeg" in msg.format
            image = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
            assert image.shape == (HEIGHT, WIDTH, 3)
            if stamp in client.received.fused:
                assert msg.header == client.received.fused[stamp].header
    finally:
        cameras.unsubscribe_compressed()


def test_compressed_inputs_and_camera_info_follow_each_fused_frame(session):
    process, client, cameras = session
    # Before any RGB CameraInfo: an uncalibrated one (size only, K = 0), as camera drivers
    # publish before calibration, so consumers that sync image and info keep running.
    stamps = wait_fused(client, cameras.publish(5))
    assert wait_for(lambda: set(stamps) <= set(cameras.infos))
    info = cameras.infos[stamps[-1]]
    assert (info.width, info.height) == (WIDTH, HEIGHT) and not any(info.k)

    stamps = wait_fused(client, cameras.publish(20, infos=True))
    assert len(stamps) >= 15, process.log()
    assert wait_for(lambda: set(stamps) <= set(cameras.infos))
    calibrated = [s for s in stamps if any(cameras.infos[s].k)]
    assert len(calibrated) >= len(stamps) - 3  # the first may precede the info's arrival
    for stamp in calibrated:
        fused, info = client.received.fused[stamp], cameras.infos[stamp]
        assert (fused.width, fused.height, fused.encoding) == (WIDTH, HEIGHT, "bgr8")
        assert info.header == fused.header and fused.header.frame_id == RGB_FRAME
        assert list(info.k) == K_RGB and (info.width, info.height) == (WIDTH, HEIGHT)
    next_diagnostics(client, 2)
    values = fusion_values(client)
    assert values["registration"] == "camera_info", values
    assert values["camera_info"] == "from rgb/camera_info"
    thermal = client.received.last_status("thermal input")
    assert int(thermal["camera_info_received"]) >= 15 and thermal["errors"] == "0"


def test_diagnostics_carry_the_namespaced_node_and_camera_frame_ids(session):
    _, client, cameras = session
    index = len(client.received.diagnostics)
    cameras.publish(10)
    next_diagnostics(client, 2)
    arrays = list(client.received.diagnostics)[index:]
    ours = [s for a in arrays for s in a.status if s.name.startswith(f"{NODE}: ")]
    names = {s.name for s in ours}
    assert {f"{NODE}: thermal input", f"{NODE}: rgb input", f"{NODE}: fusion"} <= names
    hardware = {s.name: s.hardware_id for s in ours}
    assert hardware[f"{NODE}: thermal input"] == THERMAL_FRAME
    assert hardware[f"{NODE}: rgb input"] == RGB_FRAME
    assert hardware[f"{NODE}: fusion"] == RGB_FRAME
    stamp = max(client.received.temporal)
    assert client.received.temporal[stamp]["_frame_id"] == RGB_FRAME
    # Values a plotting tool parses: numbers, or text keys that are always text.
    text_keys = {"topic", "last_error", "fuser", "device", "registration", "camera_info",
                 "restoring", "memory_reset"}
    for status in ours:
        for kv in status.values:
            if kv.key not in text_keys:
                float(kv.value)  # raises on "n/a", "12 ms", ""
                assert kv.value.lower() != "nan", (status.name, kv.key)
    for values in client.received.temporal.values():
        for key, value in values.items():
            if not key.startswith("_") and key not in text_keys:
                float(value)


def test_corrupt_compressed_frames_are_dropped_with_an_error_and_fusion_continues(session):
    process, client, cameras = session
    (thermal_format, thermal_data), (rgb_format, rgb_data) = cameras.frames[0]
    before = client.received.last_status("rgb input")
    for data in (rgb_data[: len(rgb_data) // 2], b"not a jpeg", b""):  # cut, garbage, empty
        Cameras.next_ns += 100_000_000
        stamp = Cameras.next_ns
        cameras.thermal_pub.publish(CompressedImage(header=header(stamp, THERMAL_FRAME),
                                                    format=thermal_format, data=thermal_data))
        cameras.rgb_pub.publish(CompressedImage(header=header(stamp, RGB_FRAME),
                                                format=rgb_format, data=data))
        time.sleep(0.1)
    index = len(client.received.diagnostics)
    next_diagnostics(client, 2)
    errors = [s for s in statuses_since(client, index, "rgb input") if s.level == ERROR]
    assert any("bad frame" in s.message for s in errors), process.log()
    after = client.received.last_status("rgb input")
    assert int(after["errors"]) >= int(before.get("errors", 0)) + 2  # best effort: most arrive
    assert "dropped rgb frame" in process.log() and "Traceback" not in process.log()
    assert len(wait_fused(client, cameras.publish(10))) >= 8, "no fusing after corrupt frames"


def test_expected_rate_bounds_give_ok_warn_and_error(session):
    """
    Cameras at 10 Hz against expected rates of 10, 15 and 30.

    OK against expected_rate 10, WARN against 15 (outside +-10 %), ERROR against 30
    (below half).
    """
    process, client, cameras = session
    stop = threading.Event()
    load = threading.Thread(target=lambda: cameras.publish(100_000, stop=stop), daemon=True)
    load.start()
    seen = {}
    try:
        for expected, level in ((RATE, OK), (1.5 * RATE, WARN), (3 * RATE, ERROR)):
            assert set_parameter(client, "expected_rate", expected)
            next_diagnostics(client, 3, timeout=10)  # the rate window (2 s) refilled
            index = len(client.received.diagnostics)
            next_diagnostics(client, 3, timeout=10)
            found = statuses_since(client, index, "rgb input")
            seen[expected] = [(s.level, s.message) for s in found]
            assert any(s.level == level for s in found), seen
            values = {kv.key: kv.value for kv in found[-1].values}
            assert float(values["expected_rate_hz"]) == expected
            assert float(values["min_rate_hz"]) == pytest.approx(0.9 * expected)
    finally:
        stop.set()
        load.join(timeout=10)
        set_parameter(client, "expected_rate", RATE)
    warn_messages = [m for lvl, m in seen[1.5 * RATE] if lvl == WARN]
    assert any("too low" in m for m in warn_messages), seen
    assert any("below half" in m for lvl, m in seen[3 * RATE] if lvl == ERROR), seen
    assert process.alive()
