"""Registration from CameraInfo: a known geometry projected through both cameras."""

from __future__ import annotations

import math

import numpy as np
import pytest

from thermal_visible_fusion.engine import EngineConfig, FusionEngine
from thermal_visible_fusion.stream.registration import (camera_info_homography,
                                                        intrinsics_problem, plane_homography,
                                                        rpy_matrix, scaled_intrinsics,
                                                        scaled_projection)

K_THERMAL = [400.0, 0.0, 160.0, 0.0, 400.0, 120.0, 0.0, 0.0, 1.0]     # 320x240
K_RGB = [800.0, 0.0, 330.0, 0.0, 790.0, 235.0, 0.0, 0.0, 1.0]         # 640x480
# The thermal camera 6 cm right of, 2 cm below and 1 cm behind the RGB one, turned a little.
TRANSLATION = [0.06, 0.02, -0.01]
RPY = [0.01, -0.02, 0.03]


def project(k, point):
    x = np.asarray(k, float).reshape(3, 3) @ point
    return x[:2] / x[2]


def apply(h, pixel):
    x = np.asarray(h, float).reshape(3, 3) @ np.array([*pixel, 1.0])
    return x[:2] / x[2]


def point_on_plane(k_thermal, pixel, distance):
    """Return the 3-D point (thermal frame) seen at ``pixel`` on the plane z = distance."""
    ray = np.linalg.inv(np.asarray(k_thermal, float).reshape(3, 3)) @ np.array([*pixel, 1.0])
    return ray * distance / ray[2]


@pytest.mark.parametrize("distance", [0.5, 3.0, 40.0])
def test_homography_maps_a_plane_point_where_the_rgb_camera_sees_it(distance):
    h = camera_info_homography(K_THERMAL, (320, 240), (320, 240), K_RGB, (640, 480), (640, 480),
                               TRANSLATION, RPY, distance)
    rotation = rpy_matrix(*RPY)
    for pixel in [(0.0, 0.0), (160.0, 120.0), (319.0, 10.0), (37.5, 201.25)]:
        world = point_on_plane(K_THERMAL, pixel, distance)
        in_rgb = rotation @ world + np.asarray(TRANSLATION)   # thermal frame -> RGB frame
        np.testing.assert_allclose(apply(h, pixel), project(K_RGB, in_rgb), atol=1e-6)


def test_parallax_depends_on_the_plane_distance():
    near = camera_info_homography(K_THERMAL, (320, 240), (320, 240), K_RGB, (640, 480),
                                  (640, 480), [0.1, 0.0, 0.0], [0, 0, 0], 1.0)
    far = camera_info_homography(K_THERMAL, (320, 240), (320, 240), K_RGB, (640, 480),
                                 (640, 480), [0.1, 0.0, 0.0], [0, 0, 0], 100.0)
    # 10 cm baseline at fx = 800: 80 px at 1 m, 0.8 px at 100 m, in +x (thermal is right)
    centre = (160.0, 120.0)
    assert apply(near, centre)[0] - apply(far, centre)[0] == pytest.approx(79.2, abs=1e-6)


def test_coincident_cameras_of_the_same_intrinsics_give_the_identity():
    h = plane_homography(np.asarray(K_RGB).reshape(3, 3), np.asarray(K_RGB).reshape(3, 3),
                         np.eye(3), [0, 0, 0], 5.0)
    np.testing.assert_allclose(h, np.eye(3), atol=1e-12)


def test_rpy_follows_the_ros_convention():
    # yaw +90 deg turns x onto y; pitch +90 deg turns x onto -z; roll +90 deg turns y onto z
    np.testing.assert_allclose(rpy_matrix(0, 0, math.pi / 2) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(rpy_matrix(0, math.pi / 2, 0) @ [1, 0, 0], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(rpy_matrix(math.pi / 2, 0, 0) @ [0, 1, 0], [0, 0, 1], atol=1e-12)


def test_intrinsics_are_scaled_to_the_image_they_are_applied_to():
    """A camera publishing 640x480 intrinsics but binned 2x2 images: the same plane point."""
    full = camera_info_homography(K_THERMAL, (320, 240), (320, 240), K_RGB, (640, 480),
                                  (640, 480), TRANSLATION, RPY, 3.0)
    binned = camera_info_homography(K_THERMAL, (320, 240), (320, 240), K_RGB, (640, 480),
                                    (320, 240), TRANSLATION, RPY, 3.0)
    np.testing.assert_allclose(apply(binned, (100.0, 50.0)), apply(full, (100.0, 50.0)) / 2,
                               atol=1e-9)
    np.testing.assert_allclose(scaled_intrinsics(K_RGB, (640, 480), (640, 480)),
                               np.asarray(K_RGB).reshape(3, 3))


def test_the_fused_camera_info_is_rescaled_as_registration_rescales_k():
    """fused/camera_info of an image of another size: K and P scaled per axis, one rule."""
    pytest.importorskip("rclpy")
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    from thermal_visible_fusion.ros.messages import camera_info_for

    p_rgb = [800.0, 0.0, 330.0, 0.5, 0.0, 790.0, 235.0, 0.25, 0.0, 0.0, 1.0, 0.0]
    info = CameraInfo(width=640, height=480, k=K_RGB, p=p_rgb, binning_x=1, binning_y=1)
    out = camera_info_for(info, Header(frame_id="rgb"), 320, 120)  # x / 2, y / 4
    assert (out.width, out.height, out.binning_x, out.binning_y) == (320, 120, 0, 0)
    np.testing.assert_allclose(out.k, [400.0, 0.0, 165.0, 0.0, 197.5, 58.75, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(out.p, [400.0, 0.0, 165.0, 0.25, 0.0, 197.5, 58.75, 0.0625,
                                       0.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(out.k, scaled_intrinsics(K_RGB, (640, 480), (320, 120)).ravel())
    np.testing.assert_allclose(out.p, scaled_projection(p_rgb, (640, 480), (320, 120)).ravel())
    same = camera_info_for(info, Header(frame_id="rgb"), 640, 480)  # its own size: as it is
    np.testing.assert_array_equal(same.k, K_RGB)
    np.testing.assert_array_equal(same.p, p_rgb)
    assert (same.width, same.height, same.binning_x) == (640, 480, 1)


@pytest.mark.parametrize("k,reason", [([0.0] * 9, "uncalibrated"), ([1.0] * 8, "9 finite"),
                                      ([math.nan] + [0.0] * 8, "9 finite"),
                                      ([1, 0, 0, 0, 0, 0, 0, 0, 1], "singular")])
def test_unusable_intrinsics_are_named(k, reason):
    assert reason in intrinsics_problem(k)
    assert intrinsics_problem(K_RGB) is None


def test_the_engine_warps_a_thermal_spot_onto_the_predicted_rgb_pixel():
    """The homography slot's convention end to end: H maps thermal pixels to RGB pixels."""
    distance = 2.0
    h = camera_info_homography(K_THERMAL, (320, 240), (320, 240), K_RGB, (640, 480), (640, 480),
                               TRANSLATION, RPY, distance)
    thermal = np.zeros((240, 320), np.uint8)
    thermal[98:103, 198:203] = 255      # a hot spot centred on (200, 100)
    engine = FusionEngine(EngineConfig(fuser="average", homography=h, thermal_smoothing=0.0))
    result = engine.process(thermal, np.zeros((480, 640, 3), np.uint8), 0)
    ys, xs = np.nonzero(result.thermal > 128)
    expected = project(K_RGB, rpy_matrix(*RPY) @ point_on_plane(K_THERMAL, (200, 100), distance)
                       + np.asarray(TRANSLATION))
    assert abs(xs.mean() - expected[0]) < 1.0 and abs(ys.mean() - expected[1]) < 1.0
