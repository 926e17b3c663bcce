"""A learned fuser whose weights cannot load: the node falls back and says so."""

from __future__ import annotations

import os
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from test_node_integration import DOMAIN_ID, publish_good_pairs, wait_for_stamps  # noqa: E402

from thermal_visible_fusion.data.synthetic import SyntheticScene  # noqa: E402
from thermal_visible_fusion.ros.harness import (  # noqa: E402
    dds_environment, NodeProcess, PairClient)


def test_corrupt_weights_fall_back_to_multiscale_with_warn_diagnostic(tmp_path):
    weights = tmp_path / "broken.pt"
    weights.write_bytes(b"not a weights file")
    env = dds_environment(DOMAIN_ID + 2)
    os.environ.update(env)
    process = NodeProcess(env, {"fuser": "learned", "weights": str(weights)},
                          log_path=tmp_path / "log")
    rclpy.init()
    client = PairClient()
    try:
        assert client.wait_for_node(timeout=90, process=process), process.log()
        stamps = publish_good_pairs(client, 10, SyntheticScene(320, 240))
        assert wait_for_stamps(client, stamps), "no fused image after the fallback"
        time.sleep(1.5)
        fusion = [s for a in client.received.diagnostics for s in a.status
                  if s.name.endswith(": fusion")]
        assert fusion and fusion[-1].level == b"\x01"
        assert "broken.pt" in fusion[-1].message
        assert {kv.key: kv.value for kv in fusion[-1].values}["fuser"] == "multiscale"
    finally:
        client.close()
        rclpy.shutdown()
        process.stop()
