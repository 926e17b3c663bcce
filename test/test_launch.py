"""
fusion.launch.py for real, with ROS's own launch tooling.

Runs test/launch/test_fusion_launch.py with ``launch_test`` (launch_testing) and the
launch file's failure paths with ``ros2 launch``, both in the workspace the README's
robot commands build (conftest ``readme_workspace``: ``colcon build --packages-select
thermal_visible_fusion && source install/setup.bash`` over the launch tooling underlay
that scripts/launch_env.py builds once from ../shared/ros2 and caches in the venv).
Without that tooling the tests skip with the reason; with ``TVF_REQUIRE_ROS=1`` (CI)
they fail.  Run alone::

    .venv/bin/python -m pytest -q test/test_launch.py

On a ROS install, launch_testing's pytest plugin collects test/launch/ itself and the
launch_test run here skips.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import LAUNCH_DOMAIN_ID, REPO_ROOT

LAUNCH_TEST = REPO_ROOT / "test" / "launch" / "test_fusion_launch.py"
LAUNCH = ["ros2", "launch", "thermal_visible_fusion", "fusion.launch.py"]
RUNS = ("true", "True", "1")  # the use_sim_time values test_fusion_launch.py launches with


@pytest.fixture(scope="module")
def launch_environment(readme_workspace, tmp_path_factory) -> dict[str, str]:
    env = dict(readme_workspace)
    env.update(ROS_LOG_DIR=str(tmp_path_factory.mktemp("ros_log")), PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1", RCUTILS_COLORIZED_OUTPUT="0")
    return env


def summary(output: str) -> list[str]:
    return [line for line in output.splitlines()
            if re.match(r"(Starting test run|Ran \d+ tests? in|OK$|FAILED|FAIL:|ERROR:)", line)]


def test_launch_testing_fusion_launch(launch_environment, request, tmp_path):
    """
    Run test/launch/test_fusion_launch.py with launch_test.

    launch_test runs the launch three times (use_sim_time true/True/1); each run's
    active test (fused image, compressed, camera_info, temporal consistency and
    /diagnostics on the namespaced topics, parameters, sim time) and post-shutdown tests
    (exit code 0 after SIGINT, no process left) must pass.
    """
    if request.config.pluginmanager.hasplugin("launch_testing"):
        pytest.skip("launch_testing's pytest plugin runs test/launch/ in this session")
    env = dict(launch_environment, ROS_DOMAIN_ID=str(LAUNCH_DOMAIN_ID))
    result = subprocess.run(["launch_test", str(LAUNCH_TEST)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    lines = summary(output)
    print("\n".join(lines))
    assert result.returncode == 0, f"launch_test failed:\n{output[-12000:]}"
    for value in RUNS:
        assert f"Starting test run test_fusion_launch.test_fusion_launch.launch_tests[{value}]" \
            in lines, output[-6000:]
    ran = [line for line in lines if line.startswith("Ran ")]
    assert len(ran) == 2 * len(RUNS) and lines.count("OK") == 2 * len(RUNS), "\n".join(lines)
    assert not any(line.startswith(("FAIL", "ERROR")) for line in lines), "\n".join(lines)


@pytest.mark.parametrize("arguments, message, node_starts", [
    (["params_file:=/nonexistent/fusion.yaml"],
     "params_file /nonexistent/fusion.yaml does not exist", False),
    (["use_sim_time:=maybe"], "use_sim_time:='maybe' is not a boolean", False),
    (["rviz:=maybe"], "rviz:='maybe' is not a boolean", False),
    # no CUDA device 99 anywhere: the node exits with code 2 at start
    (["device:=cuda:99"], "fusion_node exited with code 2", True),
], ids=["missing-params-file", "bad-use-sim-time", "bad-rviz", "node-exits-2"])
def test_launch_stops_with_the_reason(launch_environment, tmp_path, arguments, message,
                                      node_starts):
    env = dict(launch_environment, ROS_DOMAIN_ID=str(LAUNCH_DOMAIN_ID + 1))
    result = subprocess.run([*LAUNCH, *arguments], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output, output
    assert ("process started" in output) == node_starts, output
