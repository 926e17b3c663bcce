"""
launch_testing test of the installed ``fusion.launch.py``, run by ROS's launch_testing.

    launch_test test/launch/test_fusion_launch.py      # in a sourced workspace

(``python3 bootstrap.py test`` runs it through test/test_launch.py, which builds the
workspace and the launch tooling first; on a ROS install launch_testing's pytest plugin
collects it directly.)  The launch gets a namespace, remapped image topics (the
camera_info topics follow them), a params file, ``device:=cpu`` and ``use_sim_time`` as
``true``, ``True`` and ``1`` (one launch each).  The test publishes image pairs, the RGB
CameraInfo and /clock, and checks the fused image, its JPEG copy, ``fused/camera_info``,
``fused/temporal_consistency`` and /diagnostics in the namespace, the parameters the
node got, and that /diagnostics is stamped with /clock time.  After the launch's own
shutdown (SIGINT to the node) the node must have exited 0 and be gone.
"""

import os
import time
import unittest

from ament_index_python.packages import get_package_share_directory
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
import launch
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
import launch_testing
import launch_testing.actions
import launch_testing.asserts
import numpy as np
import pytest
from rcl_interfaces.srv import GetParameters
import rclpy
from rclpy.qos import qos_profile_sensor_data
from rclpy.qos import QoSProfile
from rclpy.qos import ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo
from sensor_msgs.msg import CompressedImage
from sensor_msgs.msg import Image

PACKAGE = "thermal_visible_fusion"
NAMESPACE = "tvf_launch"
THERMAL_TOPIC = "/cams/lwir/image"  # not the node's names: only a remapping connects them
RGB_TOPIC = "/cams/color/image"
RGB_INFO_TOPIC = "/cams/color/camera_info"  # derived by the launch file from rgb_topic
PARAMS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fusion_launch.yaml")
PARAMS_FROM_FILE = {"fuser": "multiscale", "jpeg_quality": 61}  # as in PARAMS_FILE
CLOCK_START = 1000  # s: sim time, far from the wall clock
WIDTH, HEIGHT = 160, 120
PAIRS = 12
START_TIMEOUT = 180.0  # a loaded machine may take long to start the node
WAIT = 60.0


@pytest.mark.launch_test
@launch_testing.parametrize("use_sim_time", ["true", "True", "1"])
def generate_test_description(use_sim_time):
    launch_file = os.path.join(get_package_share_directory(PACKAGE), "launch",
                               "fusion.launch.py")
    fusion = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file),
        launch_arguments={"namespace": NAMESPACE, "thermal_topic": THERMAL_TOPIC,
                          "rgb_topic": RGB_TOPIC, "params_file": PARAMS_FILE,
                          "use_sim_time": use_sim_time, "device": "cpu"}.items())
    return launch.LaunchDescription([fusion, launch_testing.actions.ReadyToTest()])


def _stamp(seconds_ns):
    return Time(sec=seconds_ns // 1_000_000_000, nanosec=seconds_ns % 1_000_000_000)


class TestFusionLaunch(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("tvf_launch_test")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def spin_until(self, condition, timeout):
        end = time.monotonic() + timeout
        while not condition() and time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.1)
        return condition()

    def parameters(self, names):
        client = self.node.create_client(GetParameters,
                                         f"/{NAMESPACE}/fusion_node/get_parameters")
        try:
            self.assertTrue(client.wait_for_service(timeout_sec=WAIT), "no parameter service")
            future = client.call_async(GetParameters.Request(names=names))
            self.spin_until(future.done, WAIT)
            self.assertTrue(future.done(), "get_parameters did not answer")
            values = future.result().values
        finally:
            self.node.destroy_client(client)
        from rclpy.parameter import parameter_value_to_python
        return dict(zip(names, (parameter_value_to_python(v) for v in values)))

    def test_fuses_on_remapped_topics_in_namespace(self, proc_output, use_sim_time):
        node = self.node
        received = {name: [] for name in ("image", "compressed", "info", "temporal",
                                          "diagnostics")}
        best_effort = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
        for key, kind, topic in (
                ("image", Image, "fused/image_raw"),
                ("compressed", CompressedImage, "fused/image_raw/compressed"),
                ("info", CameraInfo, "fused/camera_info"),
                ("temporal", DiagnosticArray, "fused/temporal_consistency")):
            node.create_subscription(kind, f"/{NAMESPACE}/{topic}", received[key].append,
                                     best_effort)
        node.create_subscription(DiagnosticArray, "/diagnostics", received["diagnostics"].append,
                                 best_effort)
        thermal_pub = node.create_publisher(Image, THERMAL_TOPIC, qos_profile_sensor_data)
        rgb_pub = node.create_publisher(Image, RGB_TOPIC, qos_profile_sensor_data)
        info_pub = node.create_publisher(CameraInfo, RGB_INFO_TOPIC, qos_profile_sensor_data)
        clock_pub = node.create_publisher(Clock, "/clock", 10)

        # the node subscribes to the remapped names (and nothing else connects them)
        publishers = (thermal_pub, rgb_pub, info_pub)
        started = self.spin_until(
            lambda: all(p.get_subscription_count() for p in publishers), START_TIMEOUT)
        self.assertTrue(started, "fusion_node never subscribed to "
                        f"{THERMAL_TOPIC}, {RGB_TOPIC} and {RGB_INFO_TOPIC}")

        rng = np.random.default_rng(0)
        sent = []
        for index in range(PAIRS):
            stamp_ns = (CLOCK_START + index) * 1_000_000_000
            clock_pub.publish(Clock(clock=_stamp(stamp_ns)))
            thermal = np.full((HEIGHT, WIDTH), 30, np.uint8)
            thermal[40:80, 10 + 8 * index:40 + 8 * index] = 220
            rgb = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model="plumb_bob",
                              k=[100.0, 0.0, WIDTH / 2, 0.0, 100.0, HEIGHT / 2, 0.0, 0.0, 1.0],
                              d=[0.0] * 5,
                              p=[100.0, 0.0, WIDTH / 2, 0.0, 0.0, 100.0, HEIGHT / 2, 0.0,
                                 0.0, 0.0, 1.0, 0.0])
            info.header.stamp = _stamp(stamp_ns)
            info.header.frame_id = "rgb_optical"
            info_pub.publish(info)
            thermal_msg = Image(height=HEIGHT, width=WIDTH, encoding="mono8", step=WIDTH,
                                data=thermal.tobytes())
            rgb_msg = Image(height=HEIGHT, width=WIDTH, encoding="bgr8", step=3 * WIDTH,
                            data=rgb.tobytes())
            thermal_msg.header.stamp = rgb_msg.header.stamp = _stamp(stamp_ns)
            thermal_msg.header.frame_id = "thermal_optical"
            rgb_msg.header.frame_id = "rgb_optical"
            thermal_pub.publish(thermal_msg)
            rgb_pub.publish(rgb_msg)
            sent.append(stamp_ns)
            self.spin_until(lambda: False, 0.2)

        def ours(array):
            return any("fusion_node" in status.name for status in array.status)

        self.spin_until(lambda: all(received[k] for k in ("image", "compressed", "info",
                                                          "temporal"))
                        and any(ours(a) for a in received["diagnostics"]), WAIT)
        for key in ("image", "compressed", "info", "temporal"):
            self.assertTrue(received[key], f"nothing on /{NAMESPACE}/fused ({key})")
        for image in received["image"]:
            self.assertEqual((image.width, image.height), (WIDTH, HEIGHT))
            self.assertIn(image.header.stamp.sec * 1_000_000_000 + image.header.stamp.nanosec,
                          sent)
        self.assertEqual(received["compressed"][0].format.split(";")[0].strip(), "bgr8")
        info = received["info"][0]
        self.assertEqual((info.width, info.height, info.header.frame_id),
                         (WIDTH, HEIGHT, "rgb_optical"))

        # /diagnostics of this node, stamped from /clock: use_sim_time took effect
        diagnostics = [a for a in received["diagnostics"] if ours(a)]
        self.assertTrue(diagnostics, "no /diagnostics from fusion_node")
        self.spin_until(lambda: any(a.header.stamp.sec >= CLOCK_START for a in
                                    received["diagnostics"] if ours(a)), WAIT)
        stamps = {a.header.stamp.sec for a in received["diagnostics"] if ours(a)}
        self.assertTrue(stamps and CLOCK_START <= max(stamps) < CLOCK_START + PAIRS,
                        f"/diagnostics stamps {sorted(stamps)} are not /clock time "
                        f"(use_sim_time:={use_sim_time})")

        # the parameters the launch gave
        values = self.parameters(["use_sim_time", "device", *PARAMS_FROM_FILE])
        self.assertIs(values["use_sim_time"], True, f"use_sim_time:={use_sim_time}")
        self.assertEqual(values["device"], "cpu")
        for name, value in PARAMS_FROM_FILE.items():
            self.assertEqual(values[name], value, f"{name} from params_file")


@launch_testing.post_shutdown_test()
class TestFusionLaunchShutdown(unittest.TestCase):

    def test_node_exited_cleanly_on_sigint(self, proc_info):
        names = proc_info.process_names()
        self.assertTrue(any("fusion_node" in name for name in names), names)
        launch_testing.asserts.assertExitCodes(proc_info)  # 0: a clean exit on SIGINT

    def test_no_process_left(self, proc_info):
        for action in proc_info.processes():
            pid = proc_info[action].pid
            with self.assertRaises(ProcessLookupError, msg=f"pid {pid} still running"):
                os.kill(pid, 0)
