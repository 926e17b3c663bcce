"""
Tests of ``tvf benchmark-core``.

``tvf benchmark-core``: prints and writes its figures; ``--compare-cpu`` measures how
far a device's learned output is from the CPU path (the GPU benchmark's accuracy check).
"""

import json

import pytest

from thermal_visible_fusion.cli import main


def test_benchmark_core_writes_fps_and_the_cpu_agreement(tmp_path, capsys, fresh_weights):
    out = tmp_path / "bench.json"
    assert main(["benchmark-core", "--sizes", "64x48", "--fusers", "learned,average",
                 "--frames", "2", "--device", "cpu", "--compare-cpu", "3",
                 "--weights", str(fresh_weights), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["engine_fps"]) == {"learned@64x48", "learned@64x48 degraded",
                                         "average@64x48"}
    assert all(fps > 0 for fps in result["engine_fps"].values())
    # the same engines re-timed while another process keeps a core busy, with the ratio
    busy = result["engine_fps_busy"]
    assert busy["busy_cores"] == 1
    for key, fps in result["engine_fps"].items():
        assert busy[key] > 0
        assert busy[f"{key}_ratio"] == pytest.approx(busy[key] / fps, abs=1e-3)
    from thermal_visible_fusion.learned.weights import load_model
    model = load_model(fresh_weights)
    assert result["learned_parameters"] == sum(p.numel() for p in model.parameters())
    # the CPU against itself: the same frames, bit for bit
    assert result["learned_vs_cpu_640x480"] == {"device": "cpu", "frames": 3, "mean_abs": 0.0,
                                                "max_abs": 0, "psnr_db": None}
    assert "learned on cpu vs CPU float32, 3 frames" in capsys.readouterr().out


def test_a_negative_frame_count_is_a_usage_error():
    with pytest.raises(SystemExit) as error:
        main(["benchmark-core", "--compare-cpu", "-1"])
    assert error.value.code == 2
