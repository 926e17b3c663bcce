"""The learned fuser's CPU thread count follows the frame times it measures."""

import pytest

torch = pytest.importorskip("torch")

from thermal_visible_fusion.learned.threads import ThreadTuner  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def run(tuner: ThreadTuner, frames: int, ms: dict[int, float]) -> list[int]:
    """Feed ``frames`` frames whose time depends on the thread count; the counts used."""
    used = []
    for _ in range(frames):
        count = tuner.begin()
        assert torch.get_num_threads() == count
        used.append(count)
        tuner.end(ms[count] / 1000)
    return used


def test_it_keeps_the_faster_count_and_retries_only_after_the_period():
    tuner = ThreadTuner((1, 2), trial=3, period=20)
    used = run(tuner, 6, {1: 30.0, 2: 20.0})
    assert sorted(used) == [1, 1, 1, 2, 2, 2]  # the trial: three frames at each
    assert tuner.current == 2 and tuner.trials == 1
    assert run(tuner, 20, {1: 30.0, 2: 20.0}) == [2] * 20
    run(tuner, 6, {1: 30.0, 2: 20.0})  # the next trial
    assert tuner.trials == 2


def test_under_load_it_moves_to_one_thread_within_a_trial_of_the_slowdown():
    tuner = ThreadTuner((1, 2), trial=3, period=1000)
    run(tuner, 6, {1: 30.0, 2: 20.0})
    assert tuner.current == 2
    # another process takes a core: 2 threads now wait on each other, 1 thread does not
    loaded = {1: 32.0, 2: 60.0}
    used = run(tuner, 3 + 6 + 10, loaded)  # 3 slow frames to notice, a trial, then steady
    assert tuner.current == 1 and used[-10:] == [1] * 10


def test_frames_that_cycle_in_cost_are_timed_in_whole_cycles():
    """
    Frames whose cost cycles are timed in whole cycles.

    Every 4th frame costs 4 times the others (the learned fuser estimates on it).  Timed
    frame by frame, the counts taking turns, one count would meet every slow frame and
    lose however fast it is; in whole cycles the faster count wins, and the steady cycle
    after the trial starts no new one.
    """
    def cycling(tuner: ThreadTuner, frames: int, base: dict[int, float]) -> list[int]:
        used = []
        for index in range(frames):
            count = tuner.begin()
            used.append(count)
            tuner.end(base[count] * (4 if index % 4 == 0 else 1) / 1000)
        return used
    base = {1: 18.0, 2: 20.0}
    plain = ThreadTuner((1, 2), trial=3, period=100)
    cycling(plain, 6, base)
    assert plain.current == 2  # the bias this guards against
    tuner = ThreadTuner((1, 2), trial=3, period=100, cycle=4)
    used = cycling(tuner, 24, base)
    assert used[:8] == [1] * 4 + [2] * 4  # each count a whole cycle at a turn
    assert tuner.current == 1 and tuner.trials == 1
    assert cycling(tuner, 80, base) == [1] * 80 and tuner.trials == 1


def test_a_count_must_be_clearly_faster_to_replace_the_current_one():
    tuner = ThreadTuner((1, 4), trial=3, period=50, margin=0.1)
    run(tuner, 6, {1: 19.5, 4: 20.0})  # 2.5 % faster: noise, not a reason to switch
    assert tuner.current == 4


def test_one_count_is_fixed():
    tuner = ThreadTuner((1,))
    assert run(tuner, 5, {1: 10.0}) == [1] * 5 and tuner.trials == 0


@pytest.mark.parametrize("kwargs", [{"counts": ()}, {"counts": (0,)}, {"trial": 0},
                                    {"margin": 1.0}, {"slower": 1.0}, {"period": -1},
                                    {"cycle": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        ThreadTuner(**{"counts": (1, 2), **kwargs})


def test_cpu_threads_bounds_the_learned_fusers_threads():
    from thermal_visible_fusion.engine import EngineConfig, FusionEngine

    engine = FusionEngine(EngineConfig(fuser="learned", device="cpu", cpu_threads=1))
    assert engine.fuser.max_threads == 1 and "torch_threads<=1" in engine.describe()
    engine.warmup(48, 64)
    engine.process(torch.zeros(48, 64, dtype=torch.uint8).numpy(),
                   torch.zeros(48, 64, 3, dtype=torch.uint8).numpy(), 0)
    assert torch.get_num_threads() == 1


def test_cpu_bf16_false_runs_the_learned_fuser_in_float32():
    """``cpu_bf16: false`` keeps float32 throughout, whatever the CPU has."""
    from thermal_visible_fusion.device import native_bf16
    from thermal_visible_fusion.engine import EngineConfig, FusionEngine

    default = FusionEngine(EngineConfig(fuser="learned", device="cpu"))
    assert default.fuser.bf16 == native_bf16()
    assert ("bf16_convolutions" in default.describe()) == native_bf16()
    off = FusionEngine(EngineConfig(fuser="learned", device="cpu", cpu_bf16=False))
    assert not off.fuser.bf16 and "bf16" not in off.describe()
    assert all(p.dtype == torch.float32 for p in off.fuser.model.parameters())
