"""
Thermal -> RGB pixel homography from two cameras' intrinsics and their extrinsic (ROS-free).

For points on a plane, two pinhole views are related by a homography.  With the
thermal camera's optical frame (x right, y down, z forward) and the plane
``n . X = d`` in it, a point ``X_t`` on the plane maps into the RGB optical frame as
``X_r = R X_t + t = (R + t n^T / d) X_t``, so thermal pixels map to RGB pixels by

    H = K_rgb (R + t n^T / d) K_thermal^-1

``R, t`` transform thermal-frame points into the RGB frame: they are the thermal
camera's pose in the RGB optical frame, what ``tf2_echo rgb_optical thermal_optical``
prints.  Lens distortion is ignored (K of the raw image): good enough for fusion,
where a pixel or two of residual does not show.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Rotation of fixed-axis roll, pitch, yaw (URDF and tf): Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr, cp, sp = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def scaled_intrinsics(k: Sequence[float], info_size: tuple[int, int],
                      image_size: tuple[int, int]) -> np.ndarray:
    """
    Return K (row-major 9) scaled to an image of another size, same field of view.

    K (row-major 9) of a CameraInfo of ``info_size`` (w, h), for an image of
    ``image_size`` (w, h) of the same field of view (binned or resized), as image_proc's
    resize scales it.
    """
    return _scaled_camera_matrix(k, 3, info_size, image_size)


def scaled_projection(p: Sequence[float], info_size: tuple[int, int],
                      image_size: tuple[int, int]) -> np.ndarray:
    """Return P (row-major 12, 3x4) scaled as :func:`scaled_intrinsics` scales K."""
    return _scaled_camera_matrix(p, 4, info_size, image_size)


def _scaled_camera_matrix(values: Sequence[float], columns: int, info_size: tuple[int, int],
                          image_size: tuple[int, int]) -> np.ndarray:
    """
    Return a camera matrix (3 rows of ``columns``) scaled to an image of another size.

    Its x row scaled by the width ratio, its y row by the height ratio; unchanged when
    the sizes are equal or ``info_size`` is unknown (0).
    """
    matrix = np.asarray(values, np.float64).reshape(3, columns).copy()
    (info_w, info_h), (image_w, image_h) = info_size, image_size
    if info_w > 0 and info_h > 0 and (info_w, info_h) != (image_w, image_h):
        matrix[0] *= image_w / info_w
        matrix[1] *= image_h / info_h
    return matrix


def intrinsics_problem(k: Sequence[float]) -> str | None:
    """Why a CameraInfo K cannot register, or None (K = 0 is an uncalibrated camera)."""
    values = list(k)
    if len(values) != 9 or not all(math.isfinite(v) for v in values):
        return "K is not 9 finite numbers"
    if values[0] == 0.0:
        return "K is zero (uncalibrated camera)"
    if abs(np.linalg.det(np.asarray(values).reshape(3, 3))) < 1e-12:
        return "K is singular"
    return None


def plane_homography(k_thermal: np.ndarray, k_rgb: np.ndarray, rotation: np.ndarray,
                     translation: Sequence[float], distance: float,
                     normal: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """
    Return the homography mapping thermal to RGB pixels for points on a plane.

    H (3x3) mapping thermal pixels to RGB pixels for points on the plane ``normal . X =
    distance`` in the thermal frame (default: fronto-parallel at ``distance`` metres).
    """
    if not distance > 0:
        raise ValueError(f"plane distance must be positive, got {distance}")
    t = np.asarray(translation, np.float64).reshape(3, 1)
    n = np.asarray(normal, np.float64).reshape(1, 3)
    h = k_rgb @ (np.asarray(rotation, np.float64) + t @ n / distance) @ np.linalg.inv(k_thermal)
    return h / h[2, 2] if abs(h[2, 2]) > 1e-12 else h


def camera_info_homography(k_thermal: Sequence[float], thermal_info_size: tuple[int, int],
                           thermal_size: tuple[int, int], k_rgb: Sequence[float],
                           rgb_info_size: tuple[int, int], rgb_size: tuple[int, int],
                           translation: Sequence[float], rpy: Sequence[float],
                           distance: float) -> list[float]:
    """
    Return the row-major 9-element homography for the ``homography`` parameter's slot.

    Each K scaled to the image it is applied to (sizes are (width, height)).
    """
    h = plane_homography(scaled_intrinsics(k_thermal, thermal_info_size, thermal_size),
                         scaled_intrinsics(k_rgb, rgb_info_size, rgb_size),
                         rpy_matrix(*rpy), translation, distance)
    return [float(v) for v in h.reshape(-1)]
