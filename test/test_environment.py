"""
The test environment itself.

With ``TVF_REQUIRE_ROS=1`` (CI) the ROS 2 Python packages the node needs must
import, so ROS tests cannot silently skip.
"""

from __future__ import annotations

import importlib
import os

import pytest

ROS_MODULES = ("rclpy", "sensor_msgs.msg", "diagnostic_msgs.msg", "std_srvs.srv")


@pytest.mark.parametrize("module", ROS_MODULES)
def test_ros_packages_import_when_required(module):
    if os.environ.get("TVF_REQUIRE_ROS") != "1":
        pytest.skip("TVF_REQUIRE_ROS is not 1")
    try:
        importlib.import_module(module)
    except Exception as error:  # ImportError, or a broken install failing on load
        pytest.fail(f"TVF_REQUIRE_ROS=1 but 'import {module}' failed: {error!r}; install the "
                    "ROS 2 Python packages (requirements.txt) or source a ROS 2 setup",
                    pytrace=False)
