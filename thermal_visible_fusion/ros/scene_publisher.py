"""
scene_publisher: stand-in cameras publishing the synthetic scene (or files) over ROS.

    ros2 run thermal_visible_fusion scene_publisher --ros-args -p rate:=30.0
    ros2 run thermal_visible_fusion scene_publisher --ros-args -p ir:=a.mp4 -p rgb:=b.mp4

Publishes ``thermal/image_raw`` and ``rgb/image_raw`` with identical stamps (sensor
data QoS), looping forever, so the fusion node and RViz can be tried on a machine
without cameras.  Frames are generated (or read) and encoded ahead of publishing.
``thermal/camera_info`` and ``rgb/camera_info`` go with each frame: nominal pinhole
intrinsics of the same field of view (parameter ``hfov_deg``, no distortion), which is how
the synthetic pair is registered, so ``registration: camera_info`` works on it too.
"""

from __future__ import annotations

import math

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from thermal_visible_fusion.ros.messages import image_message, qos_by_name


class ScenePublisher(Node):

    def __init__(self):
        super().__init__("scene_publisher")
        rate = float(self.declare_parameter("rate", 30.0).value)
        frames = int(self.declare_parameter("frames", 90).value)
        ir = self.declare_parameter("ir", "").value
        rgb = self.declare_parameter("rgb", "").value
        thermal_16bit = bool(self.declare_parameter("thermal_16bit", False).value)
        hfov = float(self.declare_parameter("hfov_deg", 60.0).value)
        if rate <= 0 or frames <= 0 or not 0 < hfov < 180:
            raise ValueError("rate and frames must be positive, hfov_deg in (0, 180)")
        self.messages = [(image_message(t, Header(frame_id="thermal")),
                          image_message(r, Header(frame_id="rgb_camera")))
                         for t, r in _frames(ir, rgb, frames, thermal_16bit)]
        thermal, rgb_msg = self.messages[0]
        self.infos = (nominal_camera_info(thermal.width, thermal.height, hfov, "thermal"),
                      nominal_camera_info(rgb_msg.width, rgb_msg.height, hfov, "rgb_camera"))
        qos = qos_by_name("sensor_data")
        self.thermal_pub = self.create_publisher(Image, "thermal/image_raw", qos)
        self.rgb_pub = self.create_publisher(Image, "rgb/image_raw", qos)
        self.info_pubs = (self.create_publisher(CameraInfo, "thermal/camera_info", qos),
                          self.create_publisher(CameraInfo, "rgb/camera_info", qos))
        self.index = 0
        self.create_timer(1.0 / rate, self._publish)
        self.get_logger().info(
            f"publishing {len(self.messages)} looping frame pairs at {rate:g} Hz")

    def _publish(self) -> None:
        thermal, rgb = self.messages[self.index % len(self.messages)]
        stamp = self.get_clock().now().to_msg()
        thermal.header.stamp = rgb.header.stamp = stamp
        for info, publisher in zip(self.infos, self.info_pubs):
            info.header.stamp = stamp
            publisher.publish(info)
        self.thermal_pub.publish(thermal)
        self.rgb_pub.publish(rgb)
        self.index += 1


def nominal_camera_info(width: int, height: int, hfov_deg: float, frame_id: str) -> CameraInfo:
    """Return an ideal pinhole camera: square pixels, centred principal point, no distortion."""
    f = width / 2 / math.tan(math.radians(hfov_deg) / 2)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return CameraInfo(header=Header(frame_id=frame_id), width=width, height=height,
                      distortion_model="plumb_bob", d=[0.0] * 5,
                      k=[f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0],
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


def _frames(ir: str, rgb: str, count: int, thermal_16bit: bool):
    if ir or rgb:
        from thermal_visible_fusion.data.sources import open_pair
        source = open_pair(ir, rgb)
        return [(p.thermal, p.rgb) for p, _ in zip(source, range(count))]
    from thermal_visible_fusion.data.synthetic import SyntheticScene
    scene = SyntheticScene(thermal_dtype="uint16" if thermal_16bit else "uint8")
    return [scene.frame(i) for i in range(count)]


def main(args=None) -> int:
    rclpy.init(args=args)
    try:
        node = ScenePublisher()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
