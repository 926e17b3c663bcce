"""
The one input front end (stream.gate.InputGate).

Its checks and counters (no ROS needed), and the same message sequence through the
node's callback path and through ``tvf evaluate`` giving the same pairs and the
same counters.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from thermal_visible_fusion.stream.gate import InputGate, Offer
from thermal_visible_fusion.stream.image_codec import OversizeImageError
from thermal_visible_fusion.stream.pairing import RGB, THERMAL
from thermal_visible_fusion.stream.stamp_order import Verdict

W, H = 64, 48
MS = 1_000_000
PERIOD = 33_333_333
START = 1_000 * 1_000_000_000  # stamps of the first loop start here, and loop back to it
LOOP = 12  # frames per loop: 0.37 s, a jump back of more than MAX_GAP
MAX_GAP = 0.1  # s (max_stamp_gap)
PARAMS = {"sync_slop": 0.015, "queue_size": 10, "max_stamp_gap": MAX_GAP,
          "max_pixels": W * H, "fuser": "average"}


def sequence() -> list[tuple[str, int, np.ndarray, int]]:
    """
    Make (stream, stamp_ns, image, log_time_ns) in arrival order.

    Two loops of a bag whose stamps jump back (thermal loops first; two RGB frames of
    the old loop arrive after it), a NaN thermal frame, an oversize RGB frame, an
    out-of-order and a repeated RGB stamp.  Thermal is float (32FC1), RGB bgr8; RGB
    stamps 5 ms after thermal.
    """
    rng = np.random.default_rng(7)
    out: list[tuple[str, int, np.ndarray, int]] = []

    def thermal(i: int, nan: bool = False) -> None:
        image = (290 + 10 * rng.random((H, W))).astype(np.float32)
        if nan:
            image[3, 5] = np.nan
        out.append((THERMAL, START + i * PERIOD, image, 0))

    def rgb(i: int, stamp: int | None = None, size: tuple[int, int] = (H, W)) -> None:
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        out.append((RGB, START + i * PERIOD + 5 * MS if stamp is None else stamp, image, 0))

    for i in range(LOOP - 2):
        thermal(i, nan=i == 3)
        rgb(i, size=(2 * H, 2 * W) if i == 5 else (H, W))
        if i == 7:
            rgb(0, stamp=START + 6 * PERIOD + 5 * MS)  # out of order (within max_stamp_gap)
            rgb(0, stamp=START + 7 * PERIOD + 5 * MS)  # the same stamp again: resent
    thermal(LOOP - 2)
    thermal(LOOP - 1)
    thermal(0)  # the bag loops: thermal first ...
    rgb(LOOP - 2)  # ... while RGB frames of the old loop are still on their way
    rgb(LOOP - 1)
    for i in range(1, 6):
        rgb(i - 1)
        thermal(i)
    rgb(5)
    # log (receipt) times: 2 ms apart, in arrival order
    return [(s, stamp, image, START + k * 2 * MS) for k, (s, stamp, image, _) in
            enumerate(out)]


def offer_all(gate: InputGate, messages) -> tuple[list[tuple[int, int]], list[Offer]]:
    pairs, offers = [], []
    for stream, stamp, image, log_time in messages:
        offer = gate.offer(stream, stamp, image, receipt=log_time / 1e9, frame_id=f"{stream}_cam")
        offers.append(offer)
        pairs += [(p.thermal_stamp_ns, p.rgb_stamp_ns) for p in offer.pairs]
    pairs += [(p.thermal_stamp_ns, p.rgb_stamp_ns) for p in gate.flush()]
    return pairs, offers


def expected_pairs() -> list[tuple[int, int]]:
    first = [i for i in range(LOOP - 2) if i not in (3, 5)]  # NaN thermal, oversize RGB
    second = range(6)
    return [(START + i * PERIOD, START + i * PERIOD + 5 * MS) for i in first + list(second)]


def test_the_gate_drops_counts_and_restarts_like_the_node():
    gate = InputGate.from_params(PARAMS)
    pairs, offers = offer_all(gate, sequence())
    assert pairs == expected_pairs()
    thermal, rgb = gate.input_values(THERMAL), gate.input_values(RGB)
    assert thermal["errors"] == 1 and "NaN/inf" in thermal["last_error"]
    assert rgb["errors"] == 2 and rgb["oversize_frames"] == 1
    assert "out-of-order" in rgb["last_error"]
    assert rgb["pairing_duplicates"] == 1  # the resent frame: not an error
    assert thermal["source_restarts"] == rgb["source_restarts"] == 1
    assert rgb["stale_after_restart"] == 2 and thermal["stale_after_restart"] == 0
    assert thermal["pairing_dropped_reset"] == 2  # thermal 10, 11 waited for RGB at the loop
    assert [o.restart for o in offers if o.restart] == [Verdict.RESTART, Verdict.FOLLOW]
    assert {o.dropped for o in offers} == {"", "error", "duplicate", "stale"}
    for name in (THERMAL, RGB):  # every message in exactly one bucket
        values = gate.input_values(name)
        accounted = sum(values[f"pairing_{k}"] for k in (
            "paired", "dropped_unmatched", "dropped_overflow", "dropped_out_of_order",
            "duplicates", "dropped_reset"))
        assert values["received"] == accounted + values["errors"] + values[
            "stale_after_restart"], (name, values)
        assert gate.inputs[name].frame_id == f"{name}_cam"


def test_decoders_get_max_pixels_and_parameters_apply_at_once():
    gate = InputGate.from_params(PARAMS)
    seen = []

    def decoder(max_pixels, text="image 4000x3000 exceeds max_pixels"):
        seen.append(max_pixels)
        raise OversizeImageError(text)

    offer = gate.offer(THERMAL, START, decoder, receipt=0.0)
    assert seen == [W * H] and offer.dropped == "error" and not offer.accepted
    assert gate.inputs[THERMAL].oversize == gate.inputs[THERMAL].errors == 1
    gate.update({"max_pixels": 4 * W * H, "sync_slop": 0.001, "max_stamp_gap": 2.0})
    assert gate.max_pixels == 4 * W * H and gate.pairer.slop_ns == 1 * MS
    assert gate.order.max_gap_ns == 2 * 10**9
    assert gate.inputs[RGB].loss.max_step_ns == 2 * 10**9
    big = np.zeros((2 * H, 2 * W, 3), np.uint8)
    assert gate.offer(RGB, START, big, receipt=0.1).accepted
    small = gate.offer(RGB, START + PERIOD, np.zeros((8, 400, 3), np.uint8), receipt=0.2)
    assert small.dropped == "error" and "minimum side" in small.error
    long_text = gate.offer(RGB, START + 2 * PERIOD, lambda m: decoder(m, "x" * 1000),
                           receipt=0.3)
    assert len(long_text.error) == 303 and long_text.error.endswith("...")


# ------------------------------------------------- node callback path vs tvf evaluate


def _node_path(messages) -> tuple[list[tuple[int, int]], dict, dict]:
    """
    Feed the messages into a FusionNode's image callback (receipt = log time).

    Returns the pairs it hands its worker (then the rest, flushed as evaluate does at the end
    of a bag), the gate's counters and the values of its /diagnostics input statuses.
    """
    pytest.importorskip("rclpy")
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    from thermal_visible_fusion.ros import fusion_node
    from thermal_visible_fusion.ros.harness import in_process_node
    from thermal_visible_fusion.ros.messages import image_message

    class Recorder(fusion_node.LatestPair):
        """The worker's mailbox, keeping every pair instead of fusing the newest."""

        def __init__(self):
            super().__init__()
            self.pairs = []

        def put(self, pair) -> None:
            self.pairs.append(pair)

    with in_process_node(PARAMS) as node:
        node.mailbox = Recorder()
        for stream, stamp, image, log_time in messages:
            header = Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9),
                            frame_id=f"{stream}_optical")
            node._on_image(stream, image_message(image, header), now=log_time / 1e9)
        pairs = node.mailbox.pairs + node.gate.flush()
        counters = {s: node.gate.input_values(s) for s in (THERMAL, RGB)}
        now = messages[-1][3] / 1e9
        published = {}
        for s in (THERMAL, RGB):
            status = node._input_status(node.inputs[s], now)
            published[s] = {kv.key: kv.value for kv in status.values}
        return [(p.thermal_stamp_ns, p.rgb_stamp_ns) for p in pairs], counters, published


def _evaluate_path(messages, tmp_path) -> tuple[list[tuple[int, int]], dict]:
    pytest.importorskip("rosbags")
    from thermal_visible_fusion.cli import main as tvf
    from thermal_visible_fusion.tools import bag_io

    bag = tmp_path / "bag"
    with bag_io.BagWriter(bag) as writer:
        for stream, stamp, image, log_time in messages:
            writer.write_image(f"/{stream}/image_raw", image, stamp, f"{stream}_optical",
                               log_time_ns=log_time)
    params = tmp_path / "params.yaml"
    params.write_text("fusion_node:\n  ros__parameters:\n" + "".join(
        f"    {name}: {value}\n" for name, value in PARAMS.items()))
    out = tmp_path / "eval"
    assert tvf(["evaluate", str(bag), "--out", str(out), "--params", str(params),
                "--metrics-every", "0", "--samples", "0"]) == 0
    with open(out / "frames.csv") as handle:
        pairs = [(int(row["thermal_stamp_ns"]), int(row["rgb_stamp_ns"]))
                 for row in csv.DictReader(handle)]
    return pairs, json.loads((out / "report.json").read_text())


def test_node_path_and_evaluate_give_the_same_pairs_and_counters(tmp_path):
    from thermal_visible_fusion.stream.frame_diagnostics import diagnostic_values

    messages = sequence()
    eval_pairs, report = _evaluate_path(messages, tmp_path)
    node_pairs, node_counters, published = _node_path(messages)
    assert node_pairs == eval_pairs == expected_pairs()
    assert report["inputs"] == node_counters
    for stream in (THERMAL, RGB):  # and what the node's /diagnostics says
        for key, value in diagnostic_values(report["inputs"][stream]).items():
            assert published[stream][key] == value, (stream, key)
    assert report["input_errors"] == {THERMAL: 1, RGB: 2}
    assert report["oversize_frames"] == {RGB: 1}
    assert report["source_restarts"] == {THERMAL: 1, RGB: 1}
