"""Tests for thermal_visible_fusion.stream.pairing.StampPairer (ROS-free)."""

from __future__ import annotations

import random

import pytest

from thermal_visible_fusion.stream.pairing import Pair, RGB, StampPairer, THERMAL

MS = 1_000_000
PERIOD_30HZ = 33_333_333
DROP_KEYS = ("dropped_unmatched", "dropped_overflow", "dropped_out_of_order", "duplicates",
             "dropped_reset")


def stamps(pairs: list[Pair]) -> list[tuple[int, int]]:
    return [(p.thermal_stamp_ns, p.rgb_stamp_ns) for p in pairs]


def assert_invariant(pairer: StampPairer) -> None:
    stats = pairer.stats()
    for stream in (THERMAL, RGB):
        s = stats[stream]
        accounted = s["paired"] + sum(s[k] for k in DROP_KEYS) + pairer.pending(stream)
        assert s["received"] == accounted, (stream, s, pairer.pending(stream))


def feed(pairer: StampPairer, events, check=True) -> list[Pair]:
    """Add (stream, stamp) events (item = (stream, stamp)); return all pairs emitted."""
    out: list[Pair] = []
    for stream, stamp in events:
        out += pairer.add(stream, stamp, (stream, stamp))
        if check:
            assert_invariant(pairer)
    return out


def assert_strictly_increasing(pairs: list[Pair]) -> None:
    for prev, cur in zip(pairs, pairs[1:]):
        assert cur.thermal_stamp_ns > prev.thermal_stamp_ns
        assert cur.rgb_stamp_ns > prev.rgb_stamp_ns


def nearest(x: int, others: list[int]) -> int:
    return min(others, key=lambda o: (abs(o - x), o))  # ties: earlier


def reference_pairs(thermal: list[int], rgb: list[int], slop: int) -> list[tuple[int, int]]:
    """Offline brute force of the documented rule: mutual nearest neighbours within slop."""
    if not thermal or not rgb:
        return []
    out = []
    for t in thermal:
        r = nearest(t, rgb)
        if nearest(r, thermal) == t and abs(r - t) <= slop:
            out.append((t, r))
    return out


def random_merge(rng: random.Random, thermal: list[int], rgb: list[int]):
    """Random arrival interleaving; each stream keeps its own order."""
    ti = ri = 0
    events = []
    while ti < len(thermal) or ri < len(rgb):
        if ri >= len(rgb) or (ti < len(thermal) and rng.random() < 0.5):
            events.append((THERMAL, thermal[ti]))
            ti += 1
        else:
            events.append((RGB, rgb[ri]))
            ri += 1
    return events


def with_latency(rng: random.Random, thermal: list[int], rgb: list[int], max_latency: int):
    """Arrival ordered by stamp + random transport latency (per-stream order kept)."""
    events = []
    for stream, stream_stamps in ((THERMAL, thermal), (RGB, rgb)):
        arrival = None
        for s in stream_stamps:
            arrival = max(s + rng.randint(0, max_latency), arrival or s)
            events.append((arrival, stream, s))
    events.sort()
    return [(stream, s) for _, stream, s in events]


def by_time(thermal: list[int], rgb: list[int]):
    """Arrival in stamp order (thermal first on equal stamps)."""
    events = [(s, THERMAL) for s in thermal] + [(s, RGB) for s in rgb]
    events.sort(key=lambda e: (e[0], e[1] != THERMAL))
    return [(stream, s) for s, stream in events]


# --------------------------------------------------------------------------- API


def test_constructor_validates():
    with pytest.raises(ValueError, match="slop_ns"):
        StampPairer(-1)
    with pytest.raises(ValueError, match="queue_size"):
        StampPairer(0, queue_size=0)
    StampPairer(0, queue_size=1)  # smallest valid


def test_unknown_stream_rejected():
    pairer = StampPairer(10)
    with pytest.raises(ValueError, match="unknown stream"):
        pairer.add("depth", 0, None)
    with pytest.raises(ValueError):
        pairer.pending("Thermal")


def test_pair_fields_and_skew():
    pairer = StampPairer(10 * MS)
    pairer.add(THERMAL, 100 * MS, "T")
    pairer.add(RGB, 96 * MS, "R")
    assert pairer.add(THERMAL, 200 * MS, "T2") == []  # an RGB at 100 ms may still come
    (pair,) = pairer.add(RGB, 300 * MS, "R2")
    assert pair == Pair(100 * MS, "T", 96 * MS, "R")
    assert pair.skew_ns == -4 * MS
    with pytest.raises(AttributeError):
        pair.rgb = "x"  # frozen


# ----------------------------------------------------------------- exact / slop


def test_exact_pair_emitted_immediately():
    pairer = StampPairer(10 * MS, queue_size=1)
    assert pairer.add(THERMAL, 100, "t") == []
    assert stamps(pairer.add(RGB, 100, "r")) == [(100, 100)]
    assert pairer.pending(THERMAL) == pairer.pending(RGB) == 0
    # RGB first, and with older unpairable messages still queued before it.
    pairer = StampPairer(10 * MS)
    feed(pairer, [(RGB, 0), (THERMAL, 50 * MS), (RGB, 300 * MS)])
    assert stamps(pairer.add(THERMAL, 300 * MS, None)) == [(300 * MS, 300 * MS)]
    assert pairer.stats()[THERMAL]["dropped_unmatched"] == 1
    assert pairer.stats()[RGB]["dropped_unmatched"] == 1


def test_exact_pair_with_zero_slop_and_nothing_else():
    pairer = StampPairer(0)
    out = feed(pairer,
               [(THERMAL, 10), (RGB, 11), (THERMAL, 12), (RGB, 12), (RGB, 13), (THERMAL, 14)])
    assert stamps(out) == [(12, 12)]


@pytest.mark.parametrize("first", [THERMAL, RGB])
def test_slop_boundary(first):
    other = RGB if first == THERMAL else THERMAL
    slop = 10 * MS
    pairer = StampPairer(slop)
    out = feed(pairer, [(first, 0), (other, slop), (first, 100 * MS)])
    assert len(out) == 1 and abs(out[0].skew_ns) == slop

    pairer = StampPairer(slop)
    out = feed(pairer,
               [(first, 0), (other, slop + 1), (first, 100 * MS), (other, 100 * MS + slop + 1)])
    pairer.flush()
    assert out == []
    assert pairer.stats()[THERMAL]["paired"] == pairer.stats()[RGB]["paired"] == 0
    assert pairer.stats()[THERMAL]["dropped_unmatched"] == 2
    assert pairer.stats()[RGB]["dropped_unmatched"] == 2


# ------------------------------------------------------------- realistic rates


def feed_offset_cameras(pairer: StampPairer, n: int, rgb_first: bool):
    """
    Feed n frames of 30 Hz cameras, RGB stamped 5 ms after thermal, frame by frame.

    Returns (thermal stamps, rgb stamps, {frame index: index of the frame whose message
    emitted its pair}).
    """
    thermal = [i * PERIOD_30HZ for i in range(n)]
    rgb = [t + 5 * MS for t in thermal]
    emitted_at: dict[int, int] = {}
    for i in range(n):
        order = ([(RGB, rgb[i]), (THERMAL, thermal[i])] if rgb_first
                 else [(THERMAL, thermal[i]), (RGB, rgb[i])])
        for stream, stamp in order:
            for p in pairer.add(stream, stamp, None):
                emitted_at[thermal.index(p.thermal_stamp_ns)] = i
                assert p.skew_ns == 5 * MS
    return thermal, rgb, emitted_at


@pytest.mark.parametrize("rgb_first", [False, True])
def test_constant_offset_pairs_every_frame_with_at_most_one_frame_delay(rgb_first):
    n = 60
    pairer = StampPairer(10 * MS, rate_aware=False)
    thermal, rgb, emitted_at = feed_offset_cameras(pairer, n, rgb_first)
    assert sorted(emitted_at) == list(range(n - 1))  # last one waits for the next frame
    assert all(emitted_at[k] <= k + 1 for k in emitted_at)
    assert stamps(pairer.flush()) == [(thermal[-1], rgb[-1])]
    s = pairer.stats()
    assert s[THERMAL]["paired"] == s[RGB]["paired"] == n
    assert all(s[st][k] == 0 for st in (THERMAL, RGB) for k in DROP_KEYS)


@pytest.mark.parametrize("rgb_first", [False, True])
def test_offset_cameras_pair_without_delay_once_the_rate_is_known(rgb_first):
    """
    Offset cameras pair without delay once the rate is known.

    Rate-aware (the node's pairer): after STEP_MIN_SAMPLES frames a steady camera's
    next stamp is known to be a period away, so a pair 5 ms apart cannot lose its
    partner to it: the pair comes out with its second message, not a frame later.
    """
    from thermal_visible_fusion.stream.pairing import STEP_MIN_SAMPLES

    n = 60
    pairer = StampPairer(10 * MS)
    _, _, emitted_at = feed_offset_cameras(pairer, n, rgb_first)
    assert sorted(emitted_at) == list(range(n))  # nothing left for flush
    assert all(emitted_at[k] == k for k in range(STEP_MIN_SAMPLES + 1, n))
    assert pairer.flush() == []


def test_rate_aware_pairs_steady_cameras_as_the_exact_rule_does():
    """
    The rate-aware pairer pairs steady cameras as the exact rule does.

    Steady cameras with jitter, drops, an offset and different rates, arriving in
    random interleavings: the rate-aware pairer emits exactly the rule's pairs.
    """
    for seed in range(60):
        rng = random.Random(seed)
        periods = rng.choice([(33, 33), (111, 33), (17, 33), (33, 17)])
        offset, jitter = rng.randint(-10, 10), rng.randint(0, 3)
        streams = []
        for period, shift_ms in zip(periods, (0, offset)):
            stamps_ms = [100 + shift_ms + k * period + rng.uniform(-jitter, jitter)
                         for k in range(int(3000 / period)) if rng.random() > 0.1]
            streams.append([round(s * MS) for s in stamps_ms])
        thermal, rgb = streams
        slop = 15 * MS if min(periods) > 30 else 7 * MS
        expected = reference_pairs(thermal, rgb, slop)
        pairer = StampPairer(slop, queue_size=100)
        out = feed(pairer, random_merge(rng, thermal, rgb)) + pairer.flush()
        assert stamps(out) == expected, seed


def test_jittered_30hz_all_frames_pair():
    rng = random.Random(1234)
    n = 300
    thermal = [i * PERIOD_30HZ + rng.randint(-3 * MS, 3 * MS) for i in range(n)]
    rgb = [i * PERIOD_30HZ + rng.randint(-3 * MS, 3 * MS) for i in range(n)]
    pairer = StampPairer(10 * MS)
    out = feed(pairer, with_latency(rng, thermal, rgb, 20 * MS))
    assert len(out) >= n - 1
    out += pairer.flush()
    assert stamps(out) == list(zip(thermal, rgb))
    assert_invariant(pairer)


def test_different_rates_pair_each_thermal_with_nearest_rgb():
    thermal = [k * 111_111_111 for k in range(30)]  # 9 Hz
    rgb = [7 * MS + j * PERIOD_30HZ for j in range(-1, 100)]  # 30 Hz
    pairer = StampPairer(17 * MS, queue_size=10)
    out = feed(pairer, by_time(thermal, rgb)) + pairer.flush()
    assert stamps(out) == [(t, nearest(t, rgb)) for t in thermal]
    s = pairer.stats()
    assert s[THERMAL]["paired"] == len(thermal)
    assert s[RGB]["dropped_unmatched"] == len(rgb) - len(thermal)
    assert s[RGB]["dropped_overflow"] == 0


# ---------------------------------------------------------- optimal not greedy


@pytest.mark.parametrize("thermal_first", [False, True])
def test_optimal_partner_not_first_fit(thermal_first):
    # thermal 0, 33, 66; RGB 20, 40; slop 15 ms: only (33, 40) is a best match.
    thermal = [0, 33 * MS, 66 * MS]
    rgb = [20 * MS, 40 * MS]
    events = ([(THERMAL, t) for t in thermal] + [(RGB, r) for r in rgb] if thermal_first
              else by_time(thermal, rgb))
    pairer = StampPairer(15 * MS)
    out = feed(pairer, events) + pairer.flush()
    assert stamps(out) == [(33 * MS, 40 * MS)]
    s = pairer.stats()
    assert s[THERMAL]["dropped_unmatched"] == 2
    assert s[RGB]["dropped_unmatched"] == 1


def test_closer_later_partner_wins_over_first_within_slop():
    pairer = StampPairer(10 * MS)
    assert pairer.add(THERMAL, 100 * MS, None) == []
    assert pairer.add(RGB, 92 * MS, None) == []  # within slop, but not final yet
    assert pairer.add(RGB, 99 * MS, None) == []
    assert stamps(pairer.add(RGB, 200 * MS, None)) == [(100 * MS, 99 * MS)]
    assert pairer.stats()[RGB]["dropped_unmatched"] == 1


def test_matches_reference_rule_on_handmade_cases():
    cases = [
        ([0, 10, 20], [5], 10),  # tie: RGB 5 goes to the earlier thermal
        ([0, 15], [10], 20),  # thermal 0 loses RGB 10 to the closer thermal 15
        ([0, 11], [6, 16], 10),  # chain with a tie
        ([10], [5, 15], 10),  # tie on thermal side -> earlier RGB
    ]
    for thermal, rgb, slop in cases:
        for events in (by_time(thermal, rgb),
                       [(THERMAL, t) for t in thermal] + [(RGB, r) for r in rgb]):
            pairer = StampPairer(slop)
            out = feed(pairer, events) + pairer.flush()
            assert stamps(out) == reference_pairs(thermal, rgb, slop), (thermal, rgb, slop, events)


# ------------------------------------------------------------ property checks


def random_stream(rng: random.Random, n: int) -> list[int]:
    stamp = rng.randint(0, 20)
    out = []
    for _ in range(n):
        stamp += rng.randint(1, 12)
        out.append(stamp)
    return out


def test_random_interleavings_match_reference_and_stay_ordered():
    for seed in range(150):
        rng = random.Random(seed)
        thermal = random_stream(rng, rng.randint(0, 40))
        rgb = random_stream(rng, rng.randint(0, 40))
        slop = rng.randint(0, 10)
        expected = reference_pairs(thermal, rgb, slop)
        for rate_aware in (False, True):  # irregular stamps: rate-aware is exact too
            pairer = StampPairer(slop, queue_size=100, rate_aware=rate_aware)
            out = feed(pairer, random_merge(rng, thermal, rgb)) + pairer.flush()
            assert stamps(out) == expected, seed
            assert_strictly_increasing(out)
            assert pairer.pending(THERMAL) == pairer.pending(RGB) == 0
            assert_invariant(pairer)


def test_random_interleavings_small_queues_bounded_and_ordered():
    for seed in range(150):
        rng = random.Random(10_000 + seed)
        thermal = random_stream(rng, rng.randint(0, 40))
        rgb = random_stream(rng, rng.randint(0, 40))
        slop = rng.randint(0, 10)
        queue_size = rng.randint(1, 4)
        pairer = StampPairer(slop, queue_size=queue_size)
        out: list[Pair] = []
        for stream, stamp in random_merge(rng, thermal, rgb):
            out += pairer.add(stream, stamp, None)
            assert pairer.pending(THERMAL) <= queue_size and pairer.pending(RGB) <= queue_size
            assert_invariant(pairer)
        out += pairer.flush()
        assert_strictly_increasing(out)
        assert all(abs(p.skew_ns) <= slop for p in out)
        assert_invariant(pairer)


# ------------------------------------------------------ bad input and overflow


def test_out_of_order_and_duplicate_stamps_dropped_and_counted():
    pairer = StampPairer(5)
    feed(pairer, [(THERMAL, 10), (THERMAL, 20)])
    assert pairer.add(THERMAL, 20, None) == []  # duplicate of newest
    assert pairer.add(THERMAL, 10, None) == []  # duplicate of a queued one
    assert pairer.add(THERMAL, 15, None) == []  # older than newest queued
    assert pairer.pending(THERMAL) == 2
    assert stamps(pairer.add(RGB, 20, None)) == [(20, 20)]
    assert pairer.add(RGB, 20, None) == []  # duplicate of the last paired
    assert pairer.add(RGB, 19, None) == []  # older than last paired
    assert pairer.add(THERMAL, 21, None) == []
    assert pairer.add(THERMAL, 20, None) == []  # duplicate of the last paired (not newest)
    assert pairer.add(RGB, 40, None) == []  # thermal 21 now dropped: no RGB within slop
    assert pairer.add(THERMAL, 21, None) == []  # duplicate of the newest (already dropped)
    s = pairer.stats()
    assert s[THERMAL]["duplicates"] == 4 and s[THERMAL]["dropped_out_of_order"] == 1
    assert s[RGB]["duplicates"] == 1 and s[RGB]["dropped_out_of_order"] == 1
    assert s[THERMAL]["dropped_unmatched"] == 2  # 10 and 21: nearest RGB beyond slop
    # Nothing dropped here may disturb later pairing.
    assert stamps(feed(pairer, [(THERMAL, 50), (RGB, 50)])) == [(50, 50)]
    assert_invariant(pairer)


def test_silent_stream_keeps_other_queue_bounded():
    pairer = StampPairer(10 * MS, queue_size=5)
    for i in range(100):
        assert pairer.add(THERMAL, i * PERIOD_30HZ, None) == []
        assert pairer.pending(THERMAL) <= 5
    s = pairer.stats()[THERMAL]
    assert s["dropped_overflow"] == 95 and pairer.pending(THERMAL) == 5
    assert_invariant(pairer)
    # RGB comes back: pairing resumes on the newest thermal frames.
    out = feed(pairer, [(RGB, 99 * PERIOD_30HZ + MS), (THERMAL, 100 * PERIOD_30HZ)])
    assert stamps(out) == [(99 * PERIOD_30HZ, 99 * PERIOD_30HZ + MS)]
    assert pairer.stats()[THERMAL]["dropped_unmatched"] == 4  # 95..98 had no RGB near them


def test_overflowed_message_is_forgotten():
    # RGB runs ahead while thermal is late: the RGB queue overflows, the oldest goes.
    pairer = StampPairer(10 * MS, queue_size=2)
    feed(pairer, [(RGB, 0), (RGB, 33 * MS), (RGB, 66 * MS)])
    assert pairer.stats()[RGB]["dropped_overflow"] == 1
    out = feed(pairer, [(THERMAL, 34 * MS), (THERMAL, 100 * MS)])
    assert stamps(out) == [(34 * MS, 33 * MS)]
    # A pair waiting for the next thermal frame (RGB 5 could still find a nearer one)
    # is emitted, as flush() would, when its RGB frame would overflow: nothing is left
    # waiting and neither frame is lost.
    pairer = StampPairer(5 * MS, queue_size=1)
    feed(pairer, [(THERMAL, 0), (RGB, 5 * MS)])
    assert pairer.pending(THERMAL) == 1
    assert stamps(pairer.add(RGB, 10 * MS, None)) == [(0, 5 * MS)]
    assert pairer.pending(THERMAL) == 0 and pairer.pending(RGB) == 1
    assert pairer.stats()[RGB]["dropped_overflow"] == 0
    assert_invariant(pairer)


def test_thermal_pause_longer_than_rgb_queue_loses_no_pair():
    # A thermal camera pauses (flat-field correction) right after a frame whose nearest
    # RGB frame is the later one: the pair waits for the next thermal frame while RGB
    # fills its queue; it comes out when the queue is full, the pause costs no pair.
    thermal = [k * 111_111_111 for k in range(12) if not 3 <= k < 8]  # 9 Hz, 0.55 s pause
    rgb = [j * PERIOD_30HZ for j in range(40)]  # 30 Hz: 222 ms is 11 ms before RGB 7
    pairer = StampPairer(15 * MS, queue_size=10)
    out = feed(pairer, by_time(thermal, rgb)) + pairer.flush()
    assert stamps(out) == [(t, nearest(t, rgb)) for t in thermal]
    assert pairer.stats()[RGB]["dropped_overflow"] > 0  # the pause did overflow the queue


# --------------------------------------------------------------- reset / flush


def test_reset_accepts_stamps_going_back_and_keeps_counters():
    pairer = StampPairer(10 * MS)
    feed(pairer, [(THERMAL, 1000 * MS), (RGB, 1000 * MS), (THERMAL, 1033 * MS), (RGB, 1035 * MS)])
    assert pairer.pending(THERMAL) == 1 and pairer.pending(RGB) == 1
    pairer.reset()
    assert pairer.pending(THERMAL) == pairer.pending(RGB) == 0
    s = pairer.stats()
    assert s[THERMAL]["received"] == 2 and s[THERMAL]["paired"] == 1
    assert s[THERMAL]["dropped_reset"] == 1
    assert_invariant(pairer)
    # Bag loops: stamps start again from the beginning.
    out = feed(pairer, [(THERMAL, 1000 * MS), (RGB, 1000 * MS)])
    assert stamps(out) == [(1000 * MS, 1000 * MS)]
    assert pairer.stats()[THERMAL]["dropped_out_of_order"] == 0
    assert pairer.stats()[THERMAL]["paired"] == 2

    pairer.reset_stats()
    assert all(v == 0 for st in pairer.stats().values() for v in st.values())
    assert pairer.add(THERMAL, 900 * MS, None) == []  # stamp history kept: still out of order
    assert pairer.stats()[THERMAL]["dropped_out_of_order"] == 1


def test_without_reset_stamps_going_back_are_dropped():
    pairer = StampPairer(10 * MS)
    feed(pairer, [(THERMAL, 1000 * MS), (RGB, 1000 * MS)])
    assert feed(pairer, [(THERMAL, 0), (RGB, 0)]) == []
    s = pairer.stats()
    assert s[THERMAL]["dropped_out_of_order"] == 1 and s[RGB]["dropped_out_of_order"] == 1


def test_flush_decides_everything_pending():
    pairer = StampPairer(10 * MS)
    feed(pairer, [(THERMAL, 0), (RGB, 4 * MS), (THERMAL, 33 * MS), (RGB, 37 * MS), (RGB, 70 * MS)])
    assert pairer.pending(THERMAL) == 1
    assert stamps(pairer.flush()) == [(33 * MS, 37 * MS)]
    assert pairer.pending(THERMAL) == pairer.pending(RGB) == 0
    assert pairer.stats()[RGB]["dropped_unmatched"] == 1
    assert_invariant(pairer)
