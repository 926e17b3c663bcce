"""
The parameter table.

Defaults are valid, bad values are refused with a reason that names the
parameter, and config/fusion.yaml matches the table.
"""

from __future__ import annotations

import math
from pathlib import Path
import re

import pytest
import yaml

from thermal_visible_fusion.params import DEFAULTS, PARAMS, SPECS, validate, validate_all

YAML_PATH = Path(__file__).resolve().parents[1] / "config" / "fusion.yaml"

# At least one bad value per parameter (a new parameter must be added here).
BAD_VALUES: dict[str, list] = {
    "thermal_qos": ["best_effort", "SENSOR_DATA", "", 1, None],
    "rgb_qos": ["best_effort", "system_default", True],
    "output_qos": ["sensor", 0],
    "queue_size": [0, -1, 1001, 10.0, "10", True, None],
    "sync_slop": [-0.001, 10.5, "0.015", math.nan, math.inf, True, [0.01]],
    "fuser": ["unet", "Multiscale", "", 3],
    "weights": [5, None, ["a.pt"]],
    "device": ["gpu", "cuda:", "cuda:x", "CUDA", "cuda0", "cpu ", "", 0],
    "use_memory": ["true", 1, 0, None],
    "cpu_bf16": ["false", 0, None],
    "max_stamp_gap": [0.0, -1.0, 3601.0, "0.5", math.nan, False],
    "homography": [[1.0] * 8, [1.0] * 10, [0.0] * 9,
                   [1, 2, 3, 2, 4, 6, 0, 0, 1],          # rank 2: singular
                   [1, 0, 0, 0, 1, 0, 0, 0, math.nan],
                   [1, 0, 0, 0, 1, 0, 0, 0, "1"], "identity", 1.0, None],
    "max_pixels": [0, -5, 100_000_001, 1.5, "8294400", True],
    "thermal_low_percentile": [-0.1, 50.5, math.inf, "1", True],
    "thermal_high_percentile": [49.9, 100.1, math.nan, "99", True],
    "thermal_smoothing": [-0.1, 1.0, 2.0, "0.9", True],
    "diagnostics_width": [15, 1921, 160.0, "160", True],
    "stall_timeout": [0.0, 0.01, 3601.0, "1", math.inf, True],
    "thermal_transport": ["theora", "Compressed", "", None],
    "rgb_transport": ["jpeg", 1],
    "jpeg_quality": [0, 101, 90.0, "90", True],
    "cpu_threads": [-1, 1025, 1.5, "2", True],
    "registration": ["tf", "CameraInfo", "", None],
    "registration_distance": [0.0, -1.0, 2e6, math.inf, "10", True],
    "thermal_to_rgb_translation": [[0.0, 0.0], [0.0] * 4, [0, 0, math.nan], [0, 0, 101.0],
                                   [True, 0, 0], "0 0 0", 0.0, None],
    "thermal_to_rgb_rpy": [[0.0], [0, 0, 7.0], [0, 0, "0"], None],
    "expected_rate": [-1.0, 10_001.0, math.nan, "30", True],
    "rate_tolerance": [-0.1, 0.6, math.inf, "0.1", True],
}

GOOD_VALUES: dict[str, list] = {
    "thermal_qos": ["reliable", "sensor_data"],
    "device": ["auto", "cpu", "cuda", "cuda:0", "cuda:3"],
    "homography": [[], [1, 0, 0, 0, 1, 0, 0, 0, 1],
                   [2.0, 0.1, 10.0, 0.0, 2.0, -5.0, 0.0, 0.0, 1.0],
                   (1, 0, 0, 0, 1, 0, 0, 0, 1)],
    "sync_slop": [0, 0.0, 10, 0.015],            # an int is a fine float
    "max_stamp_gap": [1, 0.001, 3600.0],
    "queue_size": [1, 1000],
    "thermal_smoothing": [0, 0.0, 0.999],
    "thermal_low_percentile": [0, 50],
    "thermal_high_percentile": [50, 100],
    "fuser": ["auto", "learned", "multiscale", "average", "max"],
    "weights": ["", "/tmp/w.pt"],
    "thermal_transport": ["raw", "compressed"],
    "jpeg_quality": [1, 100],
    "cpu_threads": [0, 1, 1024],
    "registration": ["homography", "camera_info"],
    "registration_distance": [0.01, 1, 1e6],
    "thermal_to_rgb_translation": [[0, 0, 0], [0.05, -0.02, 0.0], (1, 2, 3)],
    "thermal_to_rgb_rpy": [[0.0, 0.0, 0.0], [-3.14, 1.5, 6.28]],
    "expected_rate": [0, 0.0, 30, 0.5],
    "rate_tolerance": [0, 0.1, 0.5],
}


def test_parameter_names_are_unique():
    assert len(SPECS) == len(PARAMS)


@pytest.mark.parametrize("spec", PARAMS, ids=lambda s: s.name)
def test_every_default_is_valid(spec):
    assert validate(spec.name, spec.default) is None
    assert spec.description.strip()


def test_all_defaults_together_are_valid():
    assert validate_all(dict(DEFAULTS)) == []


def test_every_parameter_has_bad_value_cases():
    assert set(BAD_VALUES) == set(SPECS)


@pytest.mark.parametrize("name,value", [(n, v) for n, vs in BAD_VALUES.items() for v in vs],
                         ids=lambda x: repr(x)[:30])
def test_bad_value_is_rejected_naming_the_parameter(name, value):
    problem = validate(name, value)
    assert problem, f"{name}={value!r} was accepted"
    assert re.search(rf"\b{re.escape(name)}\b", problem), problem
    # The same problem surfaces from a full parameter set.
    assert any(name in p for p in validate_all({**DEFAULTS, name: value}))


@pytest.mark.parametrize("name,value", [(n, v) for n, vs in GOOD_VALUES.items() for v in vs],
                         ids=lambda x: repr(x)[:30])
def test_good_value_is_accepted(name, value):
    assert validate(name, value) is None


@pytest.mark.parametrize("name", [n for n, s in SPECS.items()
                                  if isinstance(s.default, (int, float))
                                  and not isinstance(s.default, bool)])
def test_bool_is_not_a_number(name):
    for value in (True, False):
        problem = validate(name, value)
        assert problem and name in problem


def test_device_reason_explains_the_choices():
    problem = validate("device", "gpu")
    assert "device" in problem and "gpu" in problem and "cuda" in problem


def test_qos_reason_lists_the_choices():
    problem = validate("thermal_qos", "best_effort")
    assert "sensor_data" in problem and "reliable" in problem


def test_singular_homography_reason():
    problem = validate("homography", [0.0] * 9)
    assert "homography" in problem and "singular" in problem


def test_short_homography_reason():
    problem = validate("homography", [1.0, 0.0, 0.0])
    assert "homography" in problem and "9" in problem


def test_unknown_parameter_is_reported():
    problem = validate("max_gap", 0.5)
    assert problem and "max_gap" in problem and "unknown" in problem
    assert validate_all({**DEFAULTS, "max_gap": 0.5})


@pytest.mark.parametrize("low,high", [(50.0, 50.0), (40.0, 60.0), (49.0, 50.0)])
def test_percentile_cross_check(low, high):
    problems = validate_all({**DEFAULTS, "thermal_low_percentile": low,
                             "thermal_high_percentile": high})
    if low >= high:
        assert len(problems) == 1
        assert "thermal_low_percentile" in problems[0]
        assert "thermal_high_percentile" in problems[0]
    else:
        assert problems == []


def test_percentile_cross_check_uses_defaults_for_missing_side():
    assert validate_all({"thermal_low_percentile": 50.0, "thermal_high_percentile": 50.0})
    assert validate_all({"thermal_low_percentile": 10.0}) == []
    assert validate_all({"thermal_high_percentile": 50.0}) == []


# ---------------------------------------------------------------- config/fusion.yaml


def _yaml_params() -> dict:
    data = yaml.safe_load(YAML_PATH.read_text())
    assert list(data) == ["/**"], "parameters must apply to the node under any name"
    params = data["/**"]["ros__parameters"]
    assert isinstance(params, dict)
    return params


def test_yaml_has_no_unknown_keys():
    unknown = set(_yaml_params()) - set(SPECS)
    assert not unknown, f"config/fusion.yaml has parameters the node does not declare: {unknown}"


def test_yaml_lists_every_parameter():
    params = _yaml_params()
    text = YAML_PATH.read_text()
    for name in SPECS:
        if name in params:
            continue
        # Only an empty list may be left out (ROS cannot type an empty YAML list);
        # it must still be documented as a commented line.
        assert name == "homography", f"{name} missing from config/fusion.yaml"
        assert re.search(rf"^\s*#\s*{name}\s*:", text, re.MULTILINE), \
            f"{name} missing (not even as a comment) from config/fusion.yaml"


def test_yaml_values_equal_defaults_with_same_type():
    for name, value in _yaml_params().items():
        default = DEFAULTS[name]
        assert value == default, f"{name}: yaml {value!r} != default {default!r}"
        # The YAML type decides the ROS parameter type: 1 (int) vs 1.0 (double) matters.
        assert type(value) is type(default), f"{name}: yaml type {type(value).__name__}"
        assert validate(name, value) is None


def test_yaml_commented_homography_example_is_valid():
    match = re.search(r"^\s*#\s*homography\s*:\s*(\[.*\])\s*$", YAML_PATH.read_text(),
                      re.MULTILINE)
    if match is None:
        assert "homography" in _yaml_params()
        return
    assert validate("homography", yaml.safe_load(match.group(1))) is None


def test_yaml_describes_every_parameter():
    lines = YAML_PATH.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^\s*#?\s*(\w+)\s*:", line)
        if m and m.group(1) in SPECS:
            assert i > 0 and lines[i - 1].lstrip().startswith("#"), \
                f"{m.group(1)} has no comment line above it"
