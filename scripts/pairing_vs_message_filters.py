#!/usr/bin/env python3
"""
Our StampPairer against ROS 2's message_filters.ApproximateTimeSynchronizer.

    .venv/bin/python scripts/pairing_vs_message_filters.py [--message-filters DIR]

Both pairers get the same simulated camera streams, message by message in arrival order,
with the same slop and queue size, and the table shows per scenario how many pairs each
emits that are correct and wrong, and how long after the arrival of a pair's later
message the pair comes out (the reference emits on that arrival; ours once the pair is
mutual-nearest, which for a camera with a steady rate is on that arrival too).  ``DIR``
is the message_filters source checkout (default ``../shared/ros2/message_filters``
beside the repository); it is imported from there, it needs rclpy.
test/test_pairing_reference.py runs the same scenarios.

The simulation (see :func:`simulate`)
-------------------------------------
* True capture instants: camera ``c`` at rate ``f_c`` captures the scene at
  ``k / f_c`` seconds, k = 0, 1, ...; both cameras start at the same instant, so at
  equal rates they capture the same instants, at 9 Hz vs 30 Hz every third thermal
  instant is an RGB one, at 60 Hz vs 30 Hz every other thermal instant is.
* Stamp = true instant + the camera's constant stamp offset (``thermal_offset_ms``:
  thermal stamped that much later than it captured) + uniform jitter within
  +-``jitter_ms``.  Each frame is dropped before transport with probability ``drop``;
  the thermal camera captures nothing for ``thermal_pause_ms`` from 0.25 s into every 3 s
  (thermal cameras pause like this for their flat-field correction).
* Arrival = stamp + transport delay (the camera's base delay + uniform extra in
  [0, ``delay_spread_ms``]).  Each topic is delivered in order (as one DDS writer to one
  reader is): a frame never arrives before the previous frame of its own camera, so
  only the two cameras interleave differently from their stamps.
* **Correct pair**: the true instants of its thermal and RGB frame differ by less than
  half the faster camera's period.  At equal rates that means the same instant; with
  different rates it means the slower camera's frame and the faster camera's frame
  captured nearest to it (an open window one fast period wide holds at most one fast
  frame, so each slower frame has at most one correct partner).  Any other emitted pair
  is wrong.  ``possible`` counts the correct pairs whose two frames both survived the
  drops: no pairer can emit more correct pairs.
* Latency of an emitted pair: simulated time of its emission (the arrival of the message
  whose ``add`` emitted it) minus the arrival of the later of its two messages.  Pairs
  that ours only emits at the end of the stream (``flush``, as the offline tools do;
  the live node never flushes) count as pairs but have no latency.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import importlib
from pathlib import Path
import random
import statistics
import sys

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from thermal_visible_fusion.stream.pairing import RGB, StampPairer, THERMAL  # noqa: E402

DEFAULT_MESSAGE_FILTERS = REPO_ROOT.parent / "shared" / "ros2" / "message_filters"
MS = 1_000_000
START_NS = 1_700_000_000 * 10**9  # stamps are ROS times: non-negative


@dataclass(frozen=True)
class Scenario:
    name: str
    thermal_hz: float = 30.0
    rgb_hz: float = 30.0
    duration_s: float = 10.0
    jitter_ms: float = 2.0  # stamp jitter, uniform within +-jitter_ms
    thermal_offset_ms: float = 0.0  # thermal stamp minus its true instant, before jitter
    drop: float = 0.0  # per-frame drop probability, each camera
    thermal_pause_ms: float = 0.0  # thermal silent this long every 3 s (flat-field correction)
    thermal_delay_ms: float = 5.0  # base transport delay
    rgb_delay_ms: float = 5.0
    delay_spread_ms: float = 2.0  # extra transport delay, uniform in [0, spread]
    slop_ms: float = 15.0
    queue_size: int = 10
    seed: int = 0

    @property
    def slop_below_half_period(self) -> bool:
        """Check the README's rule for ``sync_slop``: below half the faster camera's period."""
        return self.slop_ms * MS < half_fast_period_ns(self)


# Seeded, a few hundred frames each; slop and queue size are the same for both pairers.
SCENARIOS = (
    Scenario("jitter 30/30 Hz +-2 ms", seed=1),
    Scenario("drops 10 % each, 30/30 Hz", drop=0.10, seed=2),
    Scenario("offset: thermal 8 ms behind", thermal_offset_ms=8.0, seed=3),
    Scenario("offset 8 ms + drops 10 %", thermal_offset_ms=8.0, drop=0.10, seed=4),
    Scenario("rates thermal 9 / RGB 30 Hz", thermal_hz=9.0, duration_s=20.0, seed=5),
    Scenario("rates 9/30 Hz + drops 10 %", thermal_hz=9.0, duration_s=20.0, drop=0.10, seed=6),
    Scenario("rates thermal 60 / RGB 30 Hz", thermal_hz=60.0, slop_ms=6.0, seed=7),
    Scenario("rates 60/30 Hz + drops 10 %", thermal_hz=60.0, slop_ms=6.0, drop=0.10, seed=8),
    # slop beyond half the faster period (the node's default 15 ms with a 60 Hz camera):
    # a frame one thermal period from an RGB frame is within slop.
    Scenario("60/30 Hz, slop above half period", thermal_hz=60.0, seed=12),
    Scenario("60/30 Hz, slop above half + drops", thermal_hz=60.0, drop=0.10, seed=13),
    Scenario("thermal pauses 0.5 s every 3 s", thermal_hz=9.0, duration_s=20.0,
             thermal_pause_ms=500.0, seed=11),
    Scenario("arrival order: delays 0-80 ms", thermal_offset_ms=8.0, drop=0.10,
             thermal_delay_ms=0.0, rgb_delay_ms=0.0, delay_spread_ms=80.0, seed=9),
    Scenario("arrival order: thermal 50 ms late", thermal_offset_ms=8.0, drop=0.10,
             thermal_delay_ms=50.0, rgb_delay_ms=2.0, delay_spread_ms=20.0, seed=10),
)


@dataclass(frozen=True)
class Frame:
    stream: str
    index: int
    true_ns: int  # capture instant
    stamp_ns: int  # header stamp
    arrival_ns: int


@dataclass
class Result:
    """Pairs of one pairer on one scenario: (thermal, rgb, emitted_ns or None)."""

    pairs: list[tuple[Frame, Frame, int | None]] = field(default_factory=list)

    def split(self, scenario: Scenario) -> tuple[int, int]:
        correct = sum(is_correct(scenario, t, r) for t, r, _ in self.pairs)
        return correct, len(self.pairs) - correct

    def latencies_ns(self) -> dict[tuple[int, int], int]:
        """(thermal index, rgb index) -> emission minus the later arrival, live pairs."""
        return {(t.index, r.index): when - max(t.arrival_ns, r.arrival_ns)
                for t, r, when in self.pairs if when is not None}


def half_fast_period_ns(scenario: Scenario) -> float:
    return 0.5e9 / max(scenario.thermal_hz, scenario.rgb_hz)


def is_correct(scenario: Scenario, thermal: Frame, rgb: Frame) -> bool:
    return abs(thermal.true_ns - rgb.true_ns) < half_fast_period_ns(scenario)


def simulate(scenario: Scenario) -> list[Frame]:
    """Surviving frames of both cameras, in arrival order (see the module docstring)."""
    rng = random.Random(scenario.seed)
    frames = []
    for stream, hz, offset_ms, delay_ms in (
        (THERMAL, scenario.thermal_hz, scenario.thermal_offset_ms, scenario.thermal_delay_ms),
        (RGB, scenario.rgb_hz, 0.0, scenario.rgb_delay_ms),
    ):
        last_arrival = -1
        for k in range(int(scenario.duration_s * hz)):
            true_ns = START_NS + round(k * 1e9 / hz)
            jitter = rng.uniform(-scenario.jitter_ms, scenario.jitter_ms)
            stamp_ns = true_ns + round((offset_ms + jitter) * MS)
            delay = delay_ms + rng.uniform(0.0, scenario.delay_spread_ms)
            if rng.random() < scenario.drop:
                continue
            if stream == THERMAL and 0 <= (true_ns - START_NS) % (3 * 10**9) - 250 * MS < (
                    scenario.thermal_pause_ms * MS):
                continue
            arrival_ns = max(last_arrival + 1, stamp_ns + round(delay * MS))  # topic in order
            last_arrival = arrival_ns
            frames.append(Frame(stream, k, true_ns, stamp_ns, arrival_ns))
    frames.sort(key=lambda f: (f.arrival_ns, rng.random()))
    return frames


def possible_pairs(scenario: Scenario, frames: list[Frame]) -> int:
    """Correct pairs whose two frames both arrive: the most any pairer can emit."""
    rgb_true = sorted(f.true_ns for f in frames if f.stream == RGB)
    count, half = 0, half_fast_period_ns(scenario)
    for f in frames:
        if f.stream == THERMAL:
            count += any(abs(f.true_ns - r) < half for r in rgb_true)
    return count


def run_ours(scenario: Scenario, frames: list[Frame]) -> Result:
    pairer: StampPairer[Frame] = StampPairer(round(scenario.slop_ms * MS), scenario.queue_size)
    result = Result()
    for f in frames:
        for pair in pairer.add(f.stream, f.stamp_ns, f):
            result.pairs.append((pair.thermal, pair.rgb, f.arrival_ns))
    for pair in pairer.flush():
        result.pairs.append((pair.thermal, pair.rgb, None))
    return result


def load_message_filters(path: Path = DEFAULT_MESSAGE_FILTERS):
    """Import message_filters from its source checkout at ``path`` (needs rclpy)."""
    src = Path(path) / "src"
    if not (src / "message_filters" / "__init__.py").is_file():
        raise FileNotFoundError(f"message_filters source not found under {path}")
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    module = importlib.import_module("message_filters")
    if Path(module.__file__).resolve().parent != (src / "message_filters").resolve():
        raise ImportError(f"imported message_filters from {module.__file__}, not from {src}")
    return module


def run_reference(scenario: Scenario, frames: list[Frame], message_filters) -> Result:
    """Run ApproximateTimeSynchronizer fed through two SimpleFilter inputs, no DDS."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image

    inputs = {THERMAL: message_filters.SimpleFilter(), RGB: message_filters.SimpleFilter()}
    sync = message_filters.ApproximateTimeSynchronizer(
        [inputs[THERMAL], inputs[RGB]], scenario.queue_size, scenario.slop_ms / 1e3)
    result, frame_of, now = Result(), {}, [0]

    def on_pair(thermal_msg, rgb_msg):
        result.pairs.append((frame_of[id(thermal_msg)], frame_of[id(rgb_msg)], now[0]))

    sync.registerCallback(on_pair)
    messages = []  # keep every message alive, so id() stays unique
    for f in frames:
        msg = Image()
        msg.header.stamp = Time(sec=f.stamp_ns // 10**9, nanosec=f.stamp_ns % 10**9)
        msg.header.frame_id = f.stream
        messages.append(msg)
        frame_of[id(msg)] = f
        now[0] = f.arrival_ns
        inputs[f.stream].signalMessage(msg)
    return result


@dataclass(frozen=True)
class Row:
    scenario: Scenario
    frames: int
    possible: int
    ours: tuple[int, int]  # correct, wrong
    reference: tuple[int, int]
    ours_latency_ms: float  # median over live pairs
    reference_latency_ms: float
    extra_latency_ms: float  # median of ours minus reference over pairs both emitted


def _median_ms(values) -> float:
    values = list(values)
    return statistics.median(values) / MS if values else float("nan")


def compare(scenario: Scenario, message_filters) -> Row:
    frames = simulate(scenario)
    ours, reference = run_ours(scenario, frames), run_reference(scenario, frames, message_filters)
    lat_ours, lat_ref = ours.latencies_ns(), reference.latencies_ns()
    common = lat_ours.keys() & lat_ref.keys()
    return Row(scenario, len(frames), possible_pairs(scenario, frames),
               ours.split(scenario), reference.split(scenario),
               _median_ms(lat_ours.values()), _median_ms(lat_ref.values()),
               _median_ms(lat_ours[k] - lat_ref[k] for k in common))


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | slop ms | frames | possible | ours correct / wrong"
        " | reference correct / wrong | median latency ms ours / ref | extra ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.scenario.name} | {r.scenario.slop_ms:g}"
            f"{'' if r.scenario.slop_below_half_period else ' *'}"
            f" | {r.frames} | {r.possible}"
            f" | {r.ours[0]} / {r.ours[1]} | {r.reference[0]} / {r.reference[1]}"
            f" | {r.ours_latency_ms:.1f} / {r.reference_latency_ms:.1f}"
            f" | {r.extra_latency_ms:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--message-filters", type=Path, default=DEFAULT_MESSAGE_FILTERS,
                        help="message_filters source checkout (default: %(default)s)")
    args = parser.parse_args(argv)
    message_filters = load_message_filters(args.message_filters)
    print(table([compare(s, message_filters) for s in SCENARIOS]))
    print(f"Queue size {SCENARIOS[0].queue_size} and the slop shown, for both.  * slop not below "
          "half the faster camera's period.\nLatency: emission minus the arrival of the pair's "
          "later message (simulated time), median; extra: median of ours minus reference over "
          "the pairs both emit.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
