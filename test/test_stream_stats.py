"""Diagnostics statistics: frames lost upstream, input rates and latency percentiles."""

from __future__ import annotations

import numpy as np
import pytest

from thermal_visible_fusion.stream.stats import LatencyWindow, RateWindow, StampLossEstimator

PERIOD_NS = 33_333_333  # 30 Hz
T0 = 1_700_000_000 * 10**9  # a realistic epoch stamp


def feed(estimator: StampLossEstimator, stamps) -> list[int]:
    return [estimator.add(int(s)) for s in stamps]


# ---------------------------------------------------------------- StampLossEstimator


def test_regular_30hz_stream_loses_nothing():
    est = StampLossEstimator()
    assert feed(est, T0 + PERIOD_NS * np.arange(200)) == [0] * 200
    assert est.lost == 0
    assert est.period_s == pytest.approx(1 / 30, rel=1e-3)


@pytest.mark.parametrize("dropped", [1, 2, 3, 10])
def test_dropped_frames_are_counted(dropped):
    est = StampLossEstimator()
    feed(est, T0 + PERIOD_NS * np.arange(20))
    after_gap = T0 + PERIOD_NS * (19 + dropped + 1)
    assert est.add(after_gap) == dropped
    assert est.lost == dropped
    # The stream continues normally: no more losses, the period is unchanged.
    assert feed(est, after_gap + PERIOD_NS * np.arange(1, 20)) == [0] * 19
    assert est.lost == dropped
    assert est.period_s == pytest.approx(1 / 30, rel=1e-3)


def test_losses_accumulate_over_several_gaps():
    est = StampLossEstimator()
    indices = [i for i in range(100) if i not in {30, 31, 32, 60, 80, 81}]
    losses = feed(est, T0 + PERIOD_NS * np.asarray(indices))
    assert sum(losses) == 6 == est.lost
    assert sorted(x for x in losses if x) == [1, 2, 3]


def test_jitter_of_2ms_gives_no_false_losses():
    rng = np.random.default_rng(1)
    stamps = T0 + PERIOD_NS * np.arange(600) + rng.integers(-2_000_000, 2_000_001, 600)
    est = StampLossEstimator()
    assert sum(feed(est, stamps)) == 0
    assert est.lost == 0


def test_dropped_frames_are_counted_despite_jitter():
    rng = np.random.default_rng(2)
    indices = np.asarray([i for i in range(300) if i not in {100, 101, 102, 200}])
    stamps = T0 + PERIOD_NS * indices + rng.integers(-2_000_000, 2_000_001, indices.size)
    est = StampLossEstimator()
    feed(est, stamps)
    assert est.lost == 4


def test_works_at_other_camera_rates():
    est = StampLossEstimator()
    period = 100_000_000  # 10 Hz
    indices = [i for i in range(50) if i not in {20, 21}]
    feed(est, T0 + period * np.asarray(indices))
    assert est.lost == 2
    assert est.period_s == pytest.approx(0.1)


def test_backwards_or_repeated_stamps_are_not_losses():
    est = StampLossEstimator()
    feed(est, T0 + PERIOD_NS * np.arange(20))
    assert est.add(T0 + 19 * PERIOD_NS) == 0          # duplicate
    assert est.add(T0) == 0                           # bag loop back to the start
    assert feed(est, T0 + PERIOD_NS * np.arange(1, 20)) == [0] * 19
    assert est.lost == 0


def test_reset_forgets_last_stamp_and_period():
    est = StampLossEstimator()
    feed(est, T0 + PERIOD_NS * np.arange(30))
    est.reset()
    assert est.period_s is None
    # A restarted source, 10 s later and now at 10 Hz: neither the pause nor the new
    # rate count as losses.
    restart = T0 + 10 * 10**9
    assert feed(est, restart + 100_000_000 * np.arange(30)) == [0] * 30
    assert est.lost == 0
    assert est.period_s == pytest.approx(0.1)


def test_without_reset_a_long_pause_counts_as_losses():
    # The counterpart of the reset test: the estimator does see the pause otherwise.
    est = StampLossEstimator()
    feed(est, T0 + PERIOD_NS * np.arange(30))
    assert est.add(T0 + 29 * PERIOD_NS + 10 * 10**9) > 250


def test_history_is_bounded():
    est = StampLossEstimator(history=30)
    feed(est, T0 + PERIOD_NS * np.arange(5000))
    assert len(est._steps) <= 30


# ---------------------------------------------------------------- RateWindow


def test_rate_of_a_30hz_stream():
    rate = RateWindow(window=2.0)
    times = 100.0 + np.arange(300) / 30.0
    for t in times:
        rate.add(float(t))
    assert rate.rate(float(times[-1])) == pytest.approx(30.0, rel=0.02)


def test_rate_follows_a_rate_change():
    rate = RateWindow(window=2.0)
    t = 0.0
    for _ in range(150):      # 5 s at 30 Hz
        rate.add(t)
        t += 1 / 30
    for _ in range(50):       # 5 s at 10 Hz
        rate.add(t)
        t += 0.1
    assert rate.rate(t - 0.1) == pytest.approx(10.0, rel=0.05)


def test_rate_is_zero_without_enough_events_or_after_silence():
    rate = RateWindow(window=2.0)
    assert rate.rate(0.0) == 0.0
    rate.add(1.0)
    assert rate.rate(1.0) == 0.0
    for i in range(60):
        rate.add(2.0 + i / 30)
    assert rate.rate(4.0) > 20.0
    assert rate.rate(10.0) == 0.0                      # stalled input: no stale rate


def test_rate_drops_while_input_pauses():
    rate = RateWindow(window=2.0)
    for i in range(90):
        rate.add(i / 30)
    last = 89 / 30
    assert rate.rate(last) == pytest.approx(30.0, rel=0.02)
    assert rate.rate(last + 1.0) < 20.0


def test_rate_window_is_bounded():
    rate = RateWindow(window=1000.0, max_events=50)
    for i in range(10_000):
        rate.add(i / 1000)
    assert len(rate._times) == 50
    assert rate.rate(9.999) == pytest.approx(1000.0, rel=0.01)


# ---------------------------------------------------------------- LatencyWindow


def test_latency_percentiles():
    window = LatencyWindow(size=300)
    assert window.percentile(50) is None
    for ms in range(1, 101):
        window.add(ms / 1000)
    assert window.percentile(50) == pytest.approx(0.0505)
    assert window.percentile(0) == pytest.approx(0.001)
    assert window.percentile(100) == pytest.approx(0.100)
    assert 0.094 < window.percentile(95) < 0.097
    assert isinstance(window.percentile(99), float)


def test_latency_window_keeps_only_recent_values():
    window = LatencyWindow(size=10)
    for _ in range(1000):
        window.add(5.0)            # an old slow phase ...
    for i in range(10):
        window.add(0.010 + i / 1000)   # ... is forgotten after `size` new samples
    assert len(window._values) == 10
    assert window.percentile(100) == pytest.approx(0.019)
    assert window.percentile(0) == pytest.approx(0.010)
