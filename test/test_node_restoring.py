"""
The node says in its fusion status what the learned fuser restores.

An in-process node (no DDS traffic) whose engine fuses a clean and then a noisy thermal
stream, as its worker would; ``/diagnostics`` fusion values are read from the status it
publishes.
"""

from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from thermal_visible_fusion.data.synthetic import SyntheticScene  # noqa: E402, I100
from thermal_visible_fusion.ros.harness import in_process_node  # noqa: E402


def restoring(node) -> str | None:
    values = {kv.key: kv.value for kv in node._fusion_status(0.0).values}
    return values.get("restoring")


def test_the_fusion_status_says_whether_the_thermal_camera_is_being_restored():
    scene = SyntheticScene(64, 48)
    frames = [scene.frame(i) for i in range(6)]
    with in_process_node({"fuser": "learned", "device": "cpu"}) as node:
        assert restoring(node) is None  # nothing fused yet: the key is left out
        for i, (thermal, rgb) in enumerate(frames):
            node.engine.process(thermal, rgb, i * 33_000_000)
        assert restoring(node) in ("none", "visible")  # a clean thermal camera
        noise = np.random.default_rng(0).normal(0, 12, frames[0][0].shape)
        for i, (thermal, rgb) in enumerate(frames, start=len(frames)):
            noisy = np.clip(thermal + noise, 0, 255).astype(np.uint8)
            node.engine.process(noisy, rgb, i * 33_000_000)
        assert restoring(node).startswith("thermal")
