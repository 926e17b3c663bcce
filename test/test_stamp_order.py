"""Stamp order and looping-bag restarts across the two inputs (no ROS needed)."""

import pytest

from thermal_visible_fusion.stream.stamp_order import StampOrder, StampOrderError, Verdict

S = 1_000_000_000
PERIOD = S // 30


def order() -> StampOrder:
    return StampOrder(("thermal", "rgb"), max_gap_ns=1 * S, follow_s=2.0)


def test_increasing_stamps_are_accepted_and_repeats_are_errors():
    o = order()
    assert o.check("thermal", 10 * S, 0.0) is Verdict.ACCEPT
    assert o.check("rgb", 10 * S, 0.0) is Verdict.ACCEPT
    with pytest.raises(StampOrderError, match="duplicate"):
        o.check("thermal", 10 * S, 0.1)
    with pytest.raises(StampOrderError, match="out-of-order"):
        o.check("rgb", 10 * S - PERIOD, 0.1)
    # a small step back is an error, not a restart
    assert o.check("thermal", 10 * S + PERIOD, 0.2) is Verdict.ACCEPT
    with pytest.raises(StampOrderError):
        o.check("thermal", 10 * S - 10 * PERIOD, 0.2)


def test_a_looping_bag_restarts_once_and_loses_no_frame_of_the_new_loop():
    """Thermal runs three frames ahead of RGB when the bag loops from 20 s back to 0 s."""
    o = order()
    old = [20 * S + i * PERIOD for i in range(6)]
    new = [i * PERIOD for i in range(6)]
    arrivals = ([("thermal", s) for s in old[:3]]
                + [m for pair in zip([("thermal", s) for s in old[3:] + new[:3]],
                                     [("rgb", s) for s in old]) for m in pair]
                + [m for pair in zip([("thermal", s) for s in new[3:]],
                                     [("rgb", s) for s in new[:3]]) for m in pair]
                + [("rgb", s) for s in new[3:]])
    verdicts = {("thermal", s): [] for s in old + new} | {("rgb", s): [] for s in old + new}
    for t, (stream, stamp) in enumerate(arrivals):
        verdicts[(stream, stamp)].append(o.check(stream, stamp, t * 0.01))
    assert verdicts[("thermal", new[0])] == [Verdict.RESTART]
    assert verdicts[("rgb", new[0])] == [Verdict.FOLLOW]
    stale = [s for s in old if verdicts[("rgb", s)] == [Verdict.STALE]]
    assert stale == old[3:]  # old-loop RGB frames arriving after thermal restarted
    for s in new[1:]:
        assert verdicts[("thermal", s)] == [Verdict.ACCEPT]
        assert verdicts[("rgb", s)] == [Verdict.ACCEPT]


def test_an_input_that_never_follows_is_not_dropped_forever():
    o = order()
    o.check("thermal", 20 * S, 0.0)
    o.check("rgb", 20 * S, 0.0)
    assert o.check("thermal", 0, 0.1) is Verdict.RESTART  # only thermal restarted
    assert o.check("rgb", 20 * S + PERIOD, 0.5) is Verdict.STALE
    assert o.check("rgb", 20 * S + 2 * PERIOD, 3.0) is Verdict.ACCEPT  # follow window over


def test_rgb_restarting_first_is_symmetric():
    o = order()
    o.check("thermal", 20 * S, 0.0)
    o.check("rgb", 20 * S, 0.0)
    assert o.check("rgb", PERIOD, 0.1) is Verdict.RESTART
    assert o.check("thermal", 0, 0.1) is Verdict.FOLLOW
    assert o.check("thermal", 2 * PERIOD, 0.2) is Verdict.ACCEPT


def test_unknown_stream_is_rejected():
    with pytest.raises(ValueError, match="unknown stream"):
        order().check("depth", 0, 0.0)
