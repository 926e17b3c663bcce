"""Start the thermal + visible fusion node (and optionally RViz).

  ros2 launch thermal_visible_fusion fusion.launch.py \
      thermal_topic:=/thermal/image_raw rgb_topic:=/camera/color/image_raw rviz:=true

The node gets the shipped Fast DDS profile (32 MB shared-memory segment) unless
FASTDDS_DEFAULT_PROFILES_FILE is already set: without it, 640x480 images sent
best-effort between processes are mostly lost.  Camera drivers that publish to
the node need the same profile (see README, "Large images between processes").
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "thermal_visible_fusion"


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    config = LaunchConfiguration

    arguments = [
        DeclareLaunchArgument("thermal_topic", default_value="thermal/image_raw",
                              description="thermal sensor_msgs/Image topic"),
        DeclareLaunchArgument("rgb_topic", default_value="rgb/image_raw",
                              description="RGB sensor_msgs/Image topic"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "fusion.yaml"),
                              description="node parameters (YAML)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when replaying bags)"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu or cuda[:N]"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with the fusion view"),
    ]
    profile = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or os.path.join(
        share, "config", "fastdds_large_images.xml")

    fusion_node = Node(
        package=PACKAGE,
        executable="fusion_node",
        name="fusion_node",
        namespace=config("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[config("params_file"),
                    # launch_ros parses the 'true'/'false' strings as YAML booleans
                    {"use_sim_time": config("use_sim_time"), "device": config("device")}],
        remappings=[("thermal/image_raw", config("thermal_topic")),
                    ("rgb/image_raw", config("rgb_topic"))],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="fusion_rviz",
        arguments=["-d", os.path.join(share, "rviz", "fusion.rviz")],
        parameters=[{"use_sim_time": config("use_sim_time")}],
        condition=IfCondition(config("rviz")),
    )
    return LaunchDescription([
        *arguments,
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile),
        fusion_node,
        rviz,
    ])
