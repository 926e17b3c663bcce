"""
The package as a ROS 2 user gets it: ``colcon build``, then the installed node.

Builds the repository with colcon into a temporary workspace (nothing is written
into the repository), checks the install tree (``ros2 run`` / ``ros2 launch``
look for the executable in ``lib/<package>`` and the files in ``share/<package>``,
found through the ament index), then starts the *installed* ``fusion_node``
with the *installed* params file, in an environment made by sourcing the
workspace's ``local_setup.sh``, and checks it fuses images sent over DDS.

Then the README's robot commands themselves (conftest ``readme_workspace``: the
``git clone`` and ``colcon build --packages-select ... && source install/setup.bash``
lines run in bash over the launch tooling underlay) and its ``ros2 launch`` line: as
written (``rviz:=true``) it must stop with a message and start nothing where rviz2 is
not installed; with ``rviz:=false`` it must fuse and end cleanly on SIGINT.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import clean_environment, LAUNCH_DOMAIN_ID, readme_command

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "thermal_visible_fusion"
COLCON = Path(sys.executable).parent / "colcon"
PYTHON_DIR = f"python{sys.version_info.major}.{sys.version_info.minor}"
DOMAIN_ID = 1 + os.getpid() % 99  # test_node_integration uses 101..201

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("colcon_core") is None
    or importlib.util.find_spec("colcon_ros") is None or not COLCON.is_file(),
    reason="colcon (colcon-core, colcon-ros) is not installed beside this Python")

INSTALLED_FILES = [
    f"share/{PACKAGE}/package.xml",
    f"share/{PACKAGE}/launch/fusion.launch.py",
    f"share/{PACKAGE}/config/fusion.yaml",
    f"share/{PACKAGE}/config/fastdds_large_images.xml",
    f"share/{PACKAGE}/rviz/fusion.rviz",
    f"share/ament_index/resource_index/packages/{PACKAGE}",
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Run colcon build --merge-install of the repository; return the install folder."""
    root = tmp_path_factory.mktemp("colcon_ws")
    before = {name: (REPO / name).exists() for name in ("build", "install", "log")}
    env = clean_environment()
    env["COLCON_HOME"] = str(root / "colcon_home")  # no user defaults/mixins
    env["COLCON_LOG_PATH"] = str(root / "log")
    command = [str(COLCON), "--log-base", str(root / "log"), "build",
               "--base-paths", str(REPO), "--packages-select", PACKAGE,
               "--build-base", str(root / "build"), "--install-base", str(root / "install"),
               "--merge-install", "--event-handlers", "console_direct+"]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"colcon build failed:\n{result.stdout}\n{result.stderr}"
    assert f"Finished <<< {PACKAGE}" in result.stdout + result.stderr, result.stdout
    after = {name: (REPO / name).exists() for name in before}
    assert after == before, "colcon wrote build/, install/ or log/ into the repository"
    return root / "install"


@pytest.fixture(scope="module")
def sourced_environment(workspace) -> dict[str, str]:
    """Return the environment after ``. install/local_setup.sh``, as a user's shell has it."""
    setup = workspace / "local_setup.sh"
    assert setup.is_file()
    result = subprocess.run(["bash", "-c", f'. "{setup}" && env -0'], cwd=workspace.parent,
                            env=clean_environment(), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return dict(entry.split("=", 1) for entry in result.stdout.decode().split("\0")
                if "=" in entry)


def header(stamp_ns: int, frame_id: str):
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    return Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                  frame_id=frame_id)


def site_packages(install: Path) -> Path:
    return install / "lib" / PYTHON_DIR / "site-packages"


def test_install_tree(workspace):
    executable = workspace / "lib" / PACKAGE / "fusion_node"
    assert executable.is_file() and os.access(executable, os.X_OK), executable
    for relative in INSTALLED_FILES:
        assert (workspace / relative).is_file(), f"{relative} not installed"
    package = site_packages(workspace) / PACKAGE
    assert (package / "ros" / "fusion_node.py").is_file()
    assert (site_packages(workspace) / f"{PACKAGE}-0.1.0-py{sys.version_info.major}."
            f"{sys.version_info.minor}.egg-info").is_dir()


def test_sourced_workspace_finds_the_installed_package(workspace, sourced_environment, tmp_path):
    env = sourced_environment
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(site_packages(workspace))
    assert env["AMENT_PREFIX_PATH"].split(os.pathsep)[0] == str(workspace)
    probe = (
        "import sys, importlib.metadata as md, thermal_visible_fusion as t\n"
        "from ament_index_python.packages import get_package_share_directory as share\n"
        "from thermal_visible_fusion.resources import share_dir\n"
        "print(t.__file__)\n"
        f"print(md.distribution('{PACKAGE}').locate_file(''))\n"
        f"print(share('{PACKAGE}'))\n"
        "print(share_dir())\n"
        "print(any(p and __import__('pathlib').Path(p).resolve() == "
        f"__import__('pathlib').Path({str(REPO)!r}) for p in sys.path))\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    module, dist, share, resources_share, repo_on_path = result.stdout.split("\n")[:5]
    assert Path(module) == site_packages(workspace) / PACKAGE / "__init__.py"
    assert Path(dist) == site_packages(workspace)
    assert Path(share) == workspace / "share" / PACKAGE
    assert Path(resources_share) == workspace / "share" / PACKAGE
    assert repo_on_path == "False"


def test_installed_node_fuses_images(workspace, sourced_environment, tmp_path, monkeypatch):
    rclpy = pytest.importorskip("rclpy")
    from thermal_visible_fusion.ros.harness import NodeProcess, PairClient, dds_environment, paced
    from thermal_visible_fusion.ros.messages import image_message

    share = workspace / "share" / PACKAGE
    profile = share / "config" / "fastdds_large_images.xml"
    env = dict(sourced_environment)
    env.update({key: value for key, value in dds_environment(DOMAIN_ID).items()
                if key in ("ROS_DOMAIN_ID", "RMW_IMPLEMENTATION", "PYTHONUNBUFFERED")})
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)  # the installed profile, both sides
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    for key in ("ROS_DOMAIN_ID", "RMW_IMPLEMENTATION", "FASTDDS_DEFAULT_PROFILES_FILE"):
        monkeypatch.setenv(key, env[key])  # this process joins the same private domain

    # Python writes bytecode beside the modules it imports: a fresh .pyc of the
    # installed fusion_node module proves the node process ran the installed code.
    installed_module = site_packages(workspace) / PACKAGE / "ros" / "fusion_node.py"
    pyc = Path(importlib.util.cache_from_source(str(installed_module)))
    shutil.rmtree(pyc.parent, ignore_errors=True)

    executable = workspace / "lib" / PACKAGE / "fusion_node"
    monkeypatch.chdir(tmp_path)  # the node's working directory: not the repository
    node = NodeProcess(env, params_file=share / "config" / "fusion.yaml",
                       executable=[str(executable)], log_path=tmp_path / "node.log")
    assert node.command[:3] == [str(executable), "--ros-args", "--params-file"]
    rclpy.init()
    client = None
    try:
        client = PairClient()
        assert client.wait_for_node(timeout=60, process=node), f"node did not start:\n{node.log()}"
        assert pyc.is_file(), "the node did not import the installed thermal_visible_fusion"

        rng = np.random.default_rng(0)
        height, width = 240, 320
        published = {}
        for index in paced(20, 15.0):
            thermal = np.full((height, width), 40, np.uint8)
            x = 10 + 12 * index
            thermal[80:160, x:x + 40] = 220  # a warm object moving right
            rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            stamp = client.node.get_clock().now().nanoseconds
            thermal_stamp = stamp - 5_000_000  # within sync_slop: the pair takes the RGB stamp
            client.publish_pair(image_message(thermal, header(thermal_stamp, "thermal_optical")),
                                image_message(rgb, header(stamp, "rgb_optical")))
            published[stamp] = thermal_stamp
        client.wait_for_count(1, timeout=10.0)
        time.sleep(0.5)
        fused = dict(client.received.fused)
        assert fused, f"no fused image from the installed node:\n{node.log()}"
        assert set(fused) <= set(published), "fused stamps are not the RGB stamps"
        for msg in fused.values():
            assert (msg.height, msg.width) == (height, width)
            assert msg.header.frame_id == "rgb_optical"
            assert len(msg.data) == msg.step * msg.height
    finally:
        if client is not None:
            client.close()
        rclpy.try_shutdown()
        code = node.stop()
    assert code == 0, f"node exit code {code}:\n{node.log()}"


# ----------------------------------------------------------------------------- README commands

def _has_rviz2(env: dict[str, str]) -> bool:
    return any((Path(prefix) / "lib" / "rviz2" / "rviz2").is_file()
               for prefix in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if prefix)


def test_readme_launch_line_without_rviz2_stops_and_starts_nothing(readme_workspace):
    command = readme_command("ros2 launch")
    assert "rviz:=true" in command
    if _has_rviz2(readme_workspace):
        pytest.skip("rviz2 is installed: the README line opens RViz")
    env = dict(readme_workspace, ROS_DOMAIN_ID=str(LAUNCH_DOMAIN_ID + 2))
    result = subprocess.run(["bash", "-c", command], cwd=Path(env["HOME"]) / "ros2_ws",
                            env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "rviz:=true but rviz2 is not installed" in output, output
    assert "process started" not in output, output


def _feed_pairs(thermal_topic: str, rgb_topic: str, fused_topic: str, pairs: int,
                process: subprocess.Popen, log: Path) -> int:
    """Publish image pairs once the node subscribes; return how many fused images came."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("tvf_readme_client")
    try:
        fused = []
        node.create_subscription(Image, fused_topic, fused.append, 10)
        thermal_pub = node.create_publisher(Image, thermal_topic, qos_profile_sensor_data)
        rgb_pub = node.create_publisher(Image, rgb_topic, qos_profile_sensor_data)
        end = time.monotonic() + 180
        while not (thermal_pub.get_subscription_count() and rgb_pub.get_subscription_count()):
            assert process.poll() is None, f"ros2 launch ended:\n{log.read_text()}"
            assert time.monotonic() < end, f"the node never subscribed:\n{log.read_text()}"
            rclpy.spin_once(node, timeout_sec=0.1)
        rng = np.random.default_rng(0)
        height, width = 120, 160
        for index in range(pairs):
            stamp_ns = node.get_clock().now().nanoseconds
            thermal = image_message_for(np.full((height, width), 40 + 9 * index, np.uint8),
                                        "mono8", stamp_ns, "thermal_optical")
            rgb = image_message_for(rng.integers(0, 255, (height, width, 3), dtype=np.uint8),
                                    "bgr8", stamp_ns, "rgb_optical")
            thermal_pub.publish(thermal)
            rgb_pub.publish(rgb)
            stop = time.monotonic() + 0.15
            while time.monotonic() < stop:
                rclpy.spin_once(node, timeout_sec=0.03)
        end = time.monotonic() + 30
        while not fused and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        return len(fused)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def image_message_for(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
    from sensor_msgs.msg import Image

    height, width = array.shape[:2]
    return Image(header=header(stamp_ns, frame_id), height=height, width=width,
                 encoding=encoding, step=array.strides[0], data=array.tobytes())


def test_readme_launch_line_fuses_and_stops_on_sigint(readme_workspace, tmp_path, monkeypatch):
    """
    Run the README's ros2 launch line with rviz:=false, then stop it with SIGINT.

    The node fuses the remapped topics, and SIGINT to ros2 launch (kill -INT, as
    Ctrl-C) ends it with code 0, the node gone.
    """
    pytest.importorskip("rclpy")
    command = readme_command("ros2 launch").replace("rviz:=true", "rviz:=false")
    topics = dict(re.findall(r"(thermal_topic|rgb_topic):=(\S+)", command))
    env = dict(readme_workspace, ROS_DOMAIN_ID=str(LAUNCH_DOMAIN_ID + 3),
               PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    share = next(Path(p) for p in env["AMENT_PREFIX_PATH"].split(os.pathsep)
                 if (Path(p) / "share" / PACKAGE / "config").is_dir()) / "share" / PACKAGE
    for key, value in (("ROS_DOMAIN_ID", env["ROS_DOMAIN_ID"]),
                       ("FASTDDS_DEFAULT_PROFILES_FILE",
                        str(share / "config" / "fastdds_large_images.xml"))):
        monkeypatch.setenv(key, value)  # this process joins the launch's domain
    log = tmp_path / "launch.log"
    with log.open("w") as out:
        process = subprocess.Popen(["bash", "-c", f"exec {command}"],
                                   cwd=Path(env["HOME"]) / "ros2_ws", env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        fused = _feed_pairs(topics["thermal_topic"], topics["rgb_topic"], "/fused/image_raw",
                            15, process, log)
        node_pids = [int(pid) for pid in re.findall(r"process started with pid \[(\d+)\]",
                                                    log.read_text())]
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    assert fused, f"no /fused/image_raw from the README launch line:\n{output}"
    assert code == 0, f"ros2 launch exit code {code} after SIGINT:\n{output}"
    assert "process has finished cleanly" in output, output
    assert node_pids, output
    for pid in node_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
