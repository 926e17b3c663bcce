"""
The node's registration: its homography worked out once per change of its inputs.

An in-process node whose ``_homography`` is called as the worker calls it per frame,
with CameraInfo set as its subscriptions set them (a new message per frame, as camera
drivers publish them); no DDS traffic.
"""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402, I100 (after importorskip)
from sensor_msgs.msg import CameraInfo  # noqa: E402

from thermal_visible_fusion.ros import fusion_node  # noqa: E402
from thermal_visible_fusion.ros.harness import in_process_node  # noqa: E402
from thermal_visible_fusion.stream.pairing import RGB, THERMAL  # noqa: E402

THERMAL_HW, RGB_HW = (120, 160), (240, 320)
K_THERMAL = [150.0, 0.0, 79.75, 0.0, 150.0, 59.75, 0.0, 0.0, 1.0]
K_RGB = [300.0, 0.0, 159.5, 0.0, 300.0, 119.5, 0.0, 0.0, 1.0]
# The thermal camera 10 m behind the RGB one and a plane 10 m ahead: the plane passes
# through the thermal camera's centre, so it sees the plane as a line: H is singular.
SINGULAR = {"thermal_to_rgb_translation": [0.0, 0.0, -10.0], "registration_distance": 10.0}


@pytest.fixture
def node():
    with in_process_node({"fuser": "average", "registration": "camera_info",
                          **SINGULAR}) as made:
        yield made


def camera_info(k: list[float], hw: tuple[int, int]) -> CameraInfo:
    return CameraInfo(k=k, width=hw[1], height=hw[0])


def frames(node, count: int) -> list[list[float]]:
    """Call ``_homography`` once per frame, each frame with new CameraInfo messages."""
    homographies = []
    for _ in range(count):
        node.inputs[THERMAL].camera_info = camera_info(K_THERMAL, THERMAL_HW)
        node.inputs[RGB].camera_info = camera_info(K_RGB, RGB_HW)
        homographies.append(node._homography(THERMAL_HW, RGB_HW))
    return homographies


@pytest.fixture
def calls(monkeypatch):
    """Count the node's calls of the registration functions."""
    counts = {"homography": 0, "intrinsics": 0}

    def counted(name, function):
        def call(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)
        return call

    monkeypatch.setattr(fusion_node, "camera_info_homography",
                        counted("homography", fusion_node.camera_info_homography))
    monkeypatch.setattr(fusion_node, "intrinsics_problem",
                        counted("intrinsics", fusion_node.intrinsics_problem))
    return counts


def test_a_singular_camera_info_homography_is_worked_out_once(node, calls):
    assert frames(node, 5) == [[]] * 5  # the homography parameter's plain resize
    assert calls == {"homography": 1, "intrinsics": 2}, "not cached: worked out per frame"
    assert node.registration_state == "resize"
    assert node.registration_problem.startswith("camera_info registration: homography is singular")
    status = {kv.key: kv.value for kv in node._fusion_status(0.0).values}
    assert status["registration"] == "resize"

    # a change of a parameter it reads: worked out again, once
    assert node.set_parameters([Parameter("thermal_to_rgb_translation",
                                          value=[0.1, 0.0, 0.0])])[0].successful
    homographies = frames(node, 5)
    assert calls == {"homography": 2, "intrinsics": 4}
    assert node.registration_state == "camera_info" and not node.registration_problem
    assert homographies[0] and all(h == homographies[0] for h in homographies)


def test_unusable_camera_info_is_checked_once_per_change(node, calls):
    node.inputs[THERMAL].camera_info = camera_info([0.0] * 9, THERMAL_HW)  # uncalibrated
    node.inputs[RGB].camera_info = camera_info(K_RGB, RGB_HW)
    for _ in range(5):
        assert node._homography(THERMAL_HW, RGB_HW) == []
    assert calls == {"homography": 0, "intrinsics": 2}
    assert node.registration_problem == ("thermal/camera_info: K is zero (uncalibrated "
                                         "camera) (registering by resize)")
    node.inputs[THERMAL].camera_info = camera_info([float("nan")] * 9, THERMAL_HW)
    for _ in range(5):  # NaN K: the same K still, though NaN != NaN
        node.inputs[THERMAL].camera_info = camera_info([float("nan")] * 9, THERMAL_HW)
        node._homography(THERMAL_HW, RGB_HW)
    assert calls == {"homography": 0, "intrinsics": 4}
    assert "K is not 9 finite numbers" in node.registration_problem
    # a new image size is a new registration
    node._homography((60, 80), RGB_HW)
    assert calls == {"homography": 0, "intrinsics": 6}


def test_the_homography_parameter_reaches_the_engine_by_one_route(node):
    identity_x2 = [2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 2.0]
    assert node.set_parameters([Parameter("homography", value=identity_x2),
                                Parameter("registration", value="homography")])[1].successful
    assert "homography" not in node._config_request  # not the parameter request's
    assert node._homography(THERMAL_HW, RGB_HW) == identity_x2  # the worker's route
    assert node.registration_state == "homography parameter"
