"""
Tests of ``tvf benchmark-core``.

``tvf benchmark-core``: prints and writes its figures; ``--compare-cpu`` measures how
far a device's learned output is from the CPU path (the GPU benchmark's accuracy check).
"""

import json

import pytest

from thermal_visible_fusion.cli import main
from thermal_visible_fusion.device import native_bf16


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
    # the CPU as it runs against float32: bit for bit, or within a grey level where its
    # convolutions run in bfloat16
    agreement = result["learned_vs_cpu_640x480"]
    assert agreement["device"] == "cpu" and agreement["frames"] == 3
    assert agreement["bf16"] == native_bf16()
    if agreement["bf16"]:
        assert agreement["mean_abs"] < 0.1 and agreement["over_one"] < 1e-3
    else:
        assert agreement["mean_abs"] == 0 and agreement["psnr_db"] is None
    assert "vs CPU float32, 3 degraded frames" in capsys.readouterr().out


def test_a_negative_frame_count_is_a_usage_error():
    with pytest.raises(SystemExit) as error:
        main(["benchmark-core", "--compare-cpu", "-1"])
    assert error.value.code == 2
