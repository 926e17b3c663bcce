"""
Start the thermal + visible fusion node (and optionally RViz).

  ros2 launch thermal_visible_fusion fusion.launch.py \
      thermal_topic:=/thermal/image_raw rgb_topic:=/camera/color/image_raw rviz:=true

The node reads ``thermal/image_raw``, ``rgb/image_raw`` and their ``camera_info``
topics, remapped here to the arguments (each camera's ``camera_info`` defaults to the
one beside its image topic), and publishes ``fused/image_raw`` (and ``/compressed``),
``fused/camera_info`` and ``fused/temporal_consistency`` in its namespace.

The launch stops with a non-zero exit code and a message naming the problem when
``params_file`` does not exist, a boolean argument is not one, ``rviz:=true`` is asked
for without RViz installed (nothing is started then), or the node exits on its own
(for example ``device:=cuda`` without CUDA).

The node gets the shipped Fast DDS profile (32 MB shared-memory segment) unless
FASTDDS_DEFAULT_PROFILES_FILE is already set: without it, 640x480 images sent
best-effort between processes are mostly lost.  Camera drivers that publish to
the node need the same profile (see README, "Large images between processes").
"""

import os
import posixpath

from ament_index_python.packages import get_package_prefix
from ament_index_python.packages import get_package_share_directory
from ament_index_python.packages import PackageNotFoundError
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.actions import EmitEvent
from launch.actions import OpaqueFunction
from launch.actions import RegisterEventHandler
from launch.actions import SetEnvironmentVariable
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.utilities.type_utils import coerce_to_type
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import Parameter

PACKAGE = "thermal_visible_fusion"
NODE_NAME = "fusion_node"
# The topics rviz/fusion.rviz displays: the node's own names in the root namespace.
RVIZ_TOPICS = ("/thermal/image_raw", "/rgb/image_raw", "/fused/image_raw")


class LaunchArgumentError(RuntimeError):
    """A launch argument that cannot work; launch prints the message and exits with 1."""


def _flag(name, text):
    """Parse a boolean launch argument as launch parses typed values (true/True/1/yes)."""
    value = text.strip()
    if value in ("0", "1"):  # older launch releases read them as integers
        return value == "1"
    try:
        result = coerce_to_type(value, bool)
    except ValueError:
        result = None
    if not isinstance(result, bool):
        raise LaunchArgumentError(
            f"{name}:={text!r} is not a boolean (use true/false, True/False, 1/0 or yes/no)")
    return result


def _absolute(topic, namespace):
    if topic.startswith("/"):
        return topic
    return "/" + "/".join(part.strip("/") for part in (namespace, topic) if part.strip("/"))


def _camera_info(image_topic):
    """Return the camera_info topic beside an image topic: /cam/image_raw -> /cam/camera_info."""
    return posixpath.join(posixpath.dirname(image_topic), "camera_info")


def _rviz2_installed():
    try:
        prefix = get_package_prefix("rviz2")
    except PackageNotFoundError:
        return False
    return os.access(os.path.join(prefix, "lib", "rviz2", "rviz2"), os.X_OK)


def _on_node_exit(event, context):
    """End the launch with the node: a non-zero code makes the launch exit non-zero."""
    if event.returncode == 0:
        return [EmitEvent(event=Shutdown(reason=f"{NODE_NAME} exited"))]
    # launch ends the run on an exception from an event handler, logs it as an error
    # and returns 1; a Shutdown event alone would return 0
    raise RuntimeError(f"{NODE_NAME} exited with code {event.returncode}")


def _launch_setup(context):
    share = get_package_share_directory(PACKAGE)
    arg = {name: context.launch_configurations[name] for name in
           ("thermal_topic", "rgb_topic", "thermal_info_topic", "rgb_info_topic",
            "params_file", "use_sim_time", "device", "namespace", "rviz")}
    use_sim_time = _flag("use_sim_time", arg["use_sim_time"])
    rviz = _flag("rviz", arg["rviz"])
    params_file = os.path.abspath(os.path.expanduser(arg["params_file"]))
    if not os.path.isfile(params_file):
        raise LaunchArgumentError(f"params_file {params_file} does not exist")
    if rviz and not _rviz2_installed():  # checked before anything starts
        raise LaunchArgumentError(
            "rviz:=true but rviz2 is not installed (no rviz2 in the ament index): install "
            "ros-$ROS_DISTRO-rviz2 or launch with rviz:=false")

    thermal = arg["thermal_topic"]
    rgb = arg["rgb_topic"]
    thermal_info = arg["thermal_info_topic"] or _camera_info(thermal)
    rgb_info = arg["rgb_info_topic"] or _camera_info(rgb)
    parameters = [params_file, Parameter("use_sim_time", use_sim_time)]
    if arg["device"]:  # empty: keep the params file's device
        parameters.append(Parameter("device", arg["device"]))
    node = Node(
        package=PACKAGE,
        executable="fusion_node",
        name=NODE_NAME,
        namespace=arg["namespace"],
        output="screen",
        emulate_tty=True,
        parameters=parameters,
        remappings=[(name, topic) for name, topic in (
            ("thermal/image_raw", thermal),
            ("thermal/image_raw/compressed", f"{thermal}/compressed"),
            ("thermal/camera_info", thermal_info),
            ("rgb/image_raw", rgb),
            ("rgb/image_raw/compressed", f"{rgb}/compressed"),
            ("rgb/camera_info", rgb_info)) if name != topic],
    )
    actions = [node, RegisterEventHandler(OnProcessExit(target_action=node,
                                                        on_exit=_on_node_exit))]
    if rviz:
        # The shipped layout shows the default names; remap them to this launch's topics.
        namespace = arg["namespace"]
        actual = (_absolute(thermal, namespace), _absolute(rgb, namespace),
                  _absolute("fused/image_raw", namespace))
        actions.append(Node(package="rviz2", executable="rviz2", name="fusion_rviz",
                            arguments=["-d", os.path.join(share, "rviz", "fusion.rviz")],
                            parameters=[Parameter("use_sim_time", use_sim_time)],
                            remappings=[pair for pair in zip(RVIZ_TOPICS, actual)
                                        if pair[0] != pair[1]]))
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
        DeclareLaunchArgument("thermal_info_topic", default_value="",
                              description="thermal CameraInfo topic; empty: camera_info "
                                          "beside thermal_topic"),
        DeclareLaunchArgument("rgb_info_topic", default_value="",
                              description="RGB CameraInfo topic (republished as "
                                          "fused/camera_info); empty: camera_info beside "
                                          "rgb_topic"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "fusion.yaml"),
                              description="node parameters (YAML); must exist"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when replaying bags); "
                                          "true/false, 1/0, yes/no"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto, cpu or cuda[:N]; empty keeps the params file's"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="start RViz with thermal, RGB and fused views "
                                          "(needs rviz2)"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile),
        OpaqueFunction(function=_launch_setup),
    ])
