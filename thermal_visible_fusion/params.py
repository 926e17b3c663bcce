"""
Every node parameter in one table: name, default, meaning and its check.

The node declares its parameters from this table, ``config/fusion.yaml`` must
list the same names (a test checks), and the README's reference is this table.
It is ROS-free so tools and tests validate parameters without a running node.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Callable

from thermal_visible_fusion.device import validate_device
from thermal_visible_fusion.fusers import FUSER_NAMES

QOS_CHOICES = ("sensor_data", "reliable")
TRANSPORT_CHOICES = ("raw", "compressed")
REGISTRATION_CHOICES = ("homography", "camera_info")
Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    check: Check
    runtime: bool = True  # False: read-only, takes effect only at start


def _choice(options: tuple[str, ...]) -> Check:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}, got {v!r}"


def _number(low: float, high: float = math.inf, *, integer: bool = False) -> Check:
    def check(value: Any) -> str | None:
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
            return f"must be {'an integer' if integer else 'a number'}, got {value!r}"
        if not low <= value <= high:
            return f"must be in [{low}, {high}], got {value}"
        return None
    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, got {value!r}"


def _homography(value: Any) -> str | None:
    values = list(value) if isinstance(value, (list, tuple)) else None
    if values is None or len(values) not in (0, 9):
        return "must be empty (plain resize) or 9 numbers (row-major 3x3 matrix)"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in values):
        return "must contain finite numbers only (not booleans)"
    if values and not any(values):
        return "is singular (all zeros)"
    # A homography is defined up to scale (1e-5 x identity is the identity): judge the
    # matrix scaled to its largest entry, which the engine also uses.
    if values and abs(_det3(normalized_homography(values))) < 1e-9:
        return "is singular (determinant 0 once scaled to its largest entry)"
    return None


def _vector3(limit: float, unit: str) -> Check:
    def check(value: Any) -> str | None:
        values = list(value) if isinstance(value, (list, tuple)) else None
        if values is None or len(values) != 3 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in values):
            return f"must be 3 finite numbers [x, y, z], got {value!r}"
        if any(abs(v) > limit for v in values):
            return f"must lie within +-{limit:g} {unit}, got {values}"
        return None
    return check


def normalized_homography(values: list[float]) -> list[float]:
    """
    Return the same homography scaled so its largest entry is 1 in magnitude.

    (exact for any finite scale, so neither 1e-300 nor 1e300 over- or underflows
    later).
    """
    largest = max(abs(v) for v in values)
    return [v / largest for v in values]


def _det3(m: list[float]) -> float:
    return (m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
            + m[2] * (m[3] * m[7] - m[4] * m[6]))


def _device(value: Any) -> str | None:
    problem = _string(value) or validate_device(value)
    return problem.removeprefix("device ") if problem else None  # validate() names it


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("thermal_qos", "sensor_data", "QoS of the thermal input: sensor_data (best effort) "
              "or reliable", _choice(QOS_CHOICES), runtime=False),
    ParamSpec("rgb_qos", "sensor_data", "QoS of the RGB input", _choice(QOS_CHOICES),
              runtime=False),
    ParamSpec("output_qos", "reliable", "QoS of the fused/ outputs "
              "(reliable publishers serve best-effort subscribers too)", _choice(QOS_CHOICES),
              runtime=False),
    ParamSpec("thermal_transport", "raw", "raw (thermal/image_raw, sensor_msgs/Image) or "
              "compressed (thermal/image_raw/compressed, sensor_msgs/CompressedImage)",
              _choice(TRANSPORT_CHOICES), runtime=False),
    ParamSpec("rgb_transport", "raw", "raw (rgb/image_raw) or compressed "
              "(rgb/image_raw/compressed)", _choice(TRANSPORT_CHOICES), runtime=False),
    ParamSpec("jpeg_quality", 90, "JPEG quality of fused/image_raw/compressed (encoded only "
              "while it has subscribers)", _number(1, 100, integer=True)),
    ParamSpec("queue_size", 10, "pending messages kept per input while pairing",
              _number(1, 1000, integer=True), runtime=False),
    ParamSpec("sync_slop", 0.015, "largest stamp difference (s) of a thermal/RGB pair; keep it "
              "below half the faster camera's frame period",
              _number(0.0, 10.0)),
    ParamSpec("fuser", "auto", "auto (learned when its weights load, else multiscale), learned, "
              "multiscale, average or max", _choice(FUSER_NAMES), runtime=False),
    ParamSpec("weights", "", "weights file of the learned fuser; empty = the shipped weights",
              _string, runtime=False),
    ParamSpec("device", "auto", "auto (CUDA when available), cpu or cuda[:N]", _device,
              runtime=False),
    ParamSpec("cpu_threads", 0, "most torch threads the learned fuser uses on a CPU (it picks "
              "1 or this many by frame times); 0 = all cores but one, left to DDS, decoding "
              "and the executor", _number(0, 1024, integer=True), runtime=False),
    ParamSpec("cpu_bf16", True, "run the learned fuser's denoiser convolutions in bfloat16 on a "
              "CPU with bfloat16 arithmetic (AVX512-BF16 or AMX; others run float32); false = "
              "float32 throughout", _boolean, runtime=False),
    ParamSpec("use_memory", True, "carry temporal memory across frames (false = still-image "
              "fusion)", _boolean),
    ParamSpec("max_stamp_gap", 0.5, "stamp gap (s) after which the temporal memory resets",
              _number(0.001, 3600.0)),
    ParamSpec("homography", [], "3x3 thermal->RGB pixel homography from calibration, row-major; "
              "empty = resize thermal to the RGB size", _homography),
    ParamSpec("registration", "homography", "homography (the homography parameter, or resize "
              "when empty) or camera_info (from both cameras' CameraInfo and the "
              "thermal_to_rgb extrinsic, for a plane at registration_distance)",
              _choice(REGISTRATION_CHOICES)),
    ParamSpec("registration_distance", 10.0, "distance (m) of the fronto-parallel plane that "
              "registration camera_info aligns exactly (parallax elsewhere)",
              _number(0.01, 1e6)),
    ParamSpec("thermal_to_rgb_translation", [0.0, 0.0, 0.0], "thermal camera position (m) in "
              "the RGB optical frame (x right, y down, z forward): what tf2_echo "
              "<rgb optical frame> <thermal optical frame> prints", _vector3(100.0, "m")),
    ParamSpec("thermal_to_rgb_rpy", [0.0, 0.0, 0.0], "thermal camera orientation (rad, "
              "roll pitch yaw) in the RGB optical frame", _vector3(2 * math.pi, "rad")),
    ParamSpec("max_pixels", 8_294_400, "largest accepted image (pixels); bigger frames are "
              "dropped", _number(1, 100_000_000, integer=True)),
    ParamSpec("thermal_low_percentile", 1.0, "lower percentile of the 16-bit/float thermal range",
              _number(0.0, 50.0)),
    ParamSpec("thermal_high_percentile", 99.0, "upper percentile of the thermal range",
              _number(50.0, 100.0)),
    ParamSpec("thermal_smoothing", 0.9, "temporal smoothing of the thermal range, 0 = none",
              _number(0.0, 0.999)),
    ParamSpec("diagnostics_width", 160, "width (px) at which per-frame temporal diagnostics "
              "are computed", _number(16, 1920, integer=True)),
    ParamSpec("stall_timeout", 1.0, "seconds without messages before an input is reported "
              "stalled (WARN; ERROR when expected_rate is set)", _number(0.05, 3600.0)),
    ParamSpec("expected_rate", 0.0, "expected rate (Hz) of each input, 0 = not checked: WARN "
              "outside +-rate_tolerance, ERROR below half or when none arrive",
              _number(0.0, 10_000.0)),
    ParamSpec("rate_tolerance", 0.1, "allowed relative deviation from expected_rate "
              "(0.1 = 10 %)", _number(0.0, 0.5)),
)

SPECS = {spec.name: spec for spec in PARAMS}
DEFAULTS = {spec.name: spec.default for spec in PARAMS}


def coerce(name: str, value: Any) -> Any:
    """ROS-typed value -> the table's type: ints for float parameters, lists for arrays."""
    spec = SPECS.get(name)
    if spec is None:
        return value
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(spec.default, list) and not isinstance(value, (str, bytes)):
        try:
            return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                    for v in (value or [])]
        except TypeError:
            return value
    return value


# Decoded images waiting for a partner stay in memory: bound the worst case.
MAX_QUEUED_BYTES = 4 * 1024**3
BYTES_PER_PIXEL_MAX = 4  # bgra8 / rgba8 / 32FC1


def validate(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name``, or None."""
    spec = SPECS.get(name)
    if spec is None:
        return f"unknown parameter {name!r}"
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    problem = spec.check(value)
    return f"{name} {problem}" if problem else None


def validate_all(values: dict[str, Any]) -> list[str]:
    """All problems of a full parameter set, including ones between parameters."""
    problems = [p for name, value in values.items() if (p := validate(name, value))]
    low = values.get("thermal_low_percentile", DEFAULTS["thermal_low_percentile"])
    high = values.get("thermal_high_percentile", DEFAULTS["thermal_high_percentile"])
    if not problems and low >= high:
        problems.append("thermal_low_percentile must be below thermal_high_percentile")
    queue = values.get("queue_size", DEFAULTS["queue_size"])
    pixels = values.get("max_pixels", DEFAULTS["max_pixels"])
    if not problems and 2 * queue * pixels * BYTES_PER_PIXEL_MAX > MAX_QUEUED_BYTES:
        problems.append(f"queue_size x max_pixels lets the pairing queues hold more than "
                        f"{MAX_QUEUED_BYTES // 1024**3} GiB; lower one of them")
    return problems
