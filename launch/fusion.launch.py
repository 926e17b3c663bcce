"""Start the thermal + visible fusion node (and optionally RViz).

  ros2 launch thermal_visible_fusion fusion.launch.py \
      thermal_topic:=/thermal/image_raw rgb_topic:=/camera/color/image_raw rviz:=true

The node gets the shipped Fast DDS profile (32 MB shared-memory segment) unless
FASTDDS_DEFAULT_PROFILES_FILE is already set: without it, 640x480 images sent
best-effort between processes are mostly lost.  Camera drivers that publish to
the node need the same profile (see README, "Large images between processes").
"""

import os
import tempfile

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch_ros.actions import Node

PACKAGE = "thermal_visible_fusion"
NODE_NAME = "fusion_node"


def _absolute(topic, namespace):
    if topic.startswith("/"):
        return topic
    return "/" + "/".join(part.strip("/") for part in (namespace, topic) if part.strip("/"))


def _rviz_config(share, thermal, rgb, fused):
    """The shipped RViz layout with the topics this launch actually uses."""
    with open(os.path.join(share, "rviz", "fusion.rviz")) as handle:
        text = handle.read()
    for default, actual in (("/thermal/image_raw", thermal), ("/rgb/image_raw", rgb),
                            (f"/{NODE_NAME}/fused", fused)):
        text = text.replace(f"Value: {default}\n", f"Value: {actual}\n")
    handle = tempfile.NamedTemporaryFile("w", prefix="fusion_", suffix=".rviz", delete=False)
    with handle:
        handle.write(text)
    return handle.name


def _launch_setup(context):
    share = get_package_share_directory(PACKAGE)
    arg = {name: context.launch_configurations[name] for name in
           ("thermal_topic", "rgb_topic", "params_file", "use_sim_time", "device", "namespace",
            "rviz")}
    use_sim_time = arg["use_sim_time"].lower() == "true"
    overrides = {"use_sim_time": use_sim_time}
    if arg["device"]:  # empty: keep the params file's device
        overrides["device"] = arg["device"]
    actions = [Node(
        package=PACKAGE,
        executable="fusion_node",
        name=NODE_NAME,
        namespace=arg["namespace"],
        output="screen",
        emulate_tty=True,
        parameters=[arg["params_file"], overrides],
        remappings=[("thermal/image_raw", arg["thermal_topic"]),
                    ("rgb/image_raw", arg["rgb_topic"])],
    )]
    if arg["rviz"].lower() == "true":
        namespace = arg["namespace"]
        config = _rviz_config(share, _absolute(arg["thermal_topic"], namespace),
                              _absolute(arg["rgb_topic"], namespace),
                              _absolute(f"{NODE_NAME}/fused", namespace))
        actions.append(Node(package="rviz2", executable="rviz2", name="fusion_rviz",
                            arguments=["-d", config],
                            parameters=[{"use_sim_time": use_sim_time}]))
    return actions


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    profile = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or os.path.join(
        share, "config", "fastdds_large_images.xml")
    return LaunchDescription([
        DeclareLaunchArgument("thermal_topic", default_value="thermal/image_raw",
                              description="thermal sensor_msgs/Image topic"),
        DeclareLaunchArgument("rgb_topic", default_value="rgb/image_raw",
                              description="RGB sensor_msgs/Image topic"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "fusion.yaml"),
                              description="node parameters (YAML)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when replaying bags)"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto, cpu or cuda[:N]; empty keeps the params file's"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="start RViz with thermal, RGB and fused views"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile),
        OpaqueFunction(function=_launch_setup),
    ])
