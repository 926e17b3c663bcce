"""
fusion_node: pairs thermal + RGB images, fuses them, publishes image and diagnostics.

A thin shell over ``FusionEngine`` (fusion, temporal memory) and ``InputGate``
(decoding, validation, stamp order, pairing: the input front end ``tvf evaluate``
replays bags through too).  Subscription callbacks only hand messages to the gate; fusion
runs on a worker thread that always takes the newest pair, so a slow fuser skips frames
(counted) instead of building a backlog.

Topics (relative, image_pipeline style, so a namespace or remapping applies):
  in:  thermal/image_raw, rgb/image_raw            sensor_msgs/Image (transport raw)
       thermal/image_raw/compressed, rgb/...       sensor_msgs/CompressedImage (compressed)
       thermal/camera_info, rgb/camera_info        sensor_msgs/CameraInfo
  out: fused/image_raw                             sensor_msgs/Image (bgr8, RGB frame and stamp)
       fused/image_raw/compressed                  sensor_msgs/CompressedImage (JPEG, encoded
                                                   only while it has subscribers)
       fused/camera_info                           sensor_msgs/CameraInfo, one per fused frame
       fused/temporal_consistency                  diagnostic_msgs/DiagnosticArray, one per frame
       /diagnostics                                diagnostic_msgs/DiagnosticArray, 1 Hz
Service: ~/reset (std_srvs/Trigger) clears the temporal memory.

The service and parameter callbacks never wait for a fuse: they leave the request with
the worker, which applies it before its next frame, so they answer at once under any load.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
import os
import re
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger

from thermal_visible_fusion import params as param_table
from thermal_visible_fusion import params_file
from thermal_visible_fusion.engine import EngineConfig, FusionEngine
from thermal_visible_fusion.ros.messages import (camera_info_for, compressed_message,
                                                 compressed_rgb_array, compressed_thermal_array,
                                                 image_message, qos_by_name, rgb_array, stamp_ns,
                                                 thermal_array)
from thermal_visible_fusion.stream.frame_diagnostics import diagnostic_values, temporal_status
from thermal_visible_fusion.stream.gate import Frame, InputGate
from thermal_visible_fusion.stream.pairing import Pair, RGB, THERMAL
from thermal_visible_fusion.stream.registration import camera_info_homography, intrinsics_problem
from thermal_visible_fusion.stream.stamp_order import Verdict
from thermal_visible_fusion.stream.stats import LatencyWindow, RateWindow

LOG_THROTTLE_S = 5.0
STALL_SUMMARY_S = 60.0  # a stalled input is logged on entering the state, then this often
# Calls to ~/reset that may wait at once: every one of a burst gets its answer (the
# default depth of 10 drops the rest of a burst, unanswered).
SERVICE_DEPTH = 1000
OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class ParameterError(ValueError):
    """The node's parameters are invalid; the message lists every problem."""


@dataclass
class InputState:
    """
    What the node knows about one input stream.

    That is, beyond the gate's counters (``InputGate.inputs``).
    """

    name: str
    topic: str
    errors_since_report: int = 0
    camera_info: CameraInfo | None = None  # the last one received
    camera_infos: int = 0
    stalled_since: float | None = None  # monotonic time the stall was first reported


class LatestPair:
    """A one-slot mailbox: putting a new pair replaces (and counts) an unfused one."""

    def __init__(self):
        self._pair: Pair[Frame] | None = None
        self._ready = threading.Condition()
        self.skipped = 0

    def put(self, pair: Pair[Frame]) -> None:
        with self._ready:
            if self._pair is not None:
                self.skipped += 1
            self._pair = pair
            self._ready.notify()

    def take(self, timeout: float) -> Pair[Frame] | None:
        with self._ready:
            if self._pair is None:
                self._ready.wait(timeout)
            pair, self._pair = self._pair, None
            return pair

    def clear(self) -> None:
        with self._ready:
            self._pair = None


def node_cpu_threads() -> int:
    """All the cores this process may run on but one: DDS, decoding and the executor need it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


class FusionNode(Node):

    def __init__(self, **kwargs):
        super().__init__("fusion_node", **kwargs)
        self._last_log: dict[str, float] = {}
        self.params = self._declare_parameters()
        problems = param_table.validate_all(self.params)
        if problems:
            raise ParameterError("; ".join(problems))
        if self.params["device"].startswith("cuda"):  # fail now, not at the first frame
            from thermal_visible_fusion.device import resolve_device
            resolve_device(self.params["device"])
        self._engine_lock = threading.Lock()  # the worker's; callbacks never take it
        self._requests_lock = threading.Lock()  # held for a swap only
        self._reset_request = ""
        self._config_request: dict = {}
        self.engine = FusionEngine(EngineConfig.from_params(
            {**self.params, "cpu_threads": self.params["cpu_threads"] or node_cpu_threads()}))
        if self.engine.fuser_warning:
            self._throttled_log("fuser", "warning", self.engine.fuser_warning)
        warmup = self.engine.warmup()
        self.get_logger().info(f"fusing with {self.engine.describe()} "
                               f"(warm-up {warmup * 1000:.0f} ms)")

        p = self.params
        self.gate = InputGate.from_params(p)  # touched by executor callbacks only
        compressed = {s: p[f"{s}_transport"] == "compressed" for s in (THERMAL, RGB)}
        image_topics = {s: f"{s}/image_raw/compressed" if compressed[s] else f"{s}/image_raw"
                        for s in (THERMAL, RGB)}
        self.inputs = {s: InputState(s, self.resolve_topic_name(image_topics[s]))
                       for s in (THERMAL, RGB)}
        self._decoders = {
            THERMAL: compressed_thermal_array if compressed[THERMAL] else thermal_array,
            RGB: compressed_rgb_array if compressed[RGB] else rgb_array}
        for stream in (THERMAL, RGB):  # camera_info on the image's QoS, as drivers publish it
            qos = qos_by_name(p[f"{stream}_qos"])
            self.create_subscription(CompressedImage if compressed[stream] else Image,
                                     image_topics[stream], self._image_callback(stream), qos)
            self.create_subscription(CameraInfo, f"{stream}/camera_info",
                                     self._camera_info_callback(stream), qos)
        out_qos = qos_by_name(p["output_qos"])
        self.fused_pub = self.create_publisher(Image, "fused/image_raw", out_qos)
        self.compressed_pub = self.create_publisher(CompressedImage, "fused/image_raw/compressed",
                                                    out_qos)
        self.info_pub = self.create_publisher(CameraInfo, "fused/camera_info", out_qos)
        self.temporal_pub = self.create_publisher(DiagnosticArray, "fused/temporal_consistency",
                                                  out_qos)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(Trigger, "~/reset", self._on_reset, qos_profile=QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=SERVICE_DEPTH,
            reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE))
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.mailbox = LatestPair()
        self.fused_count = 0
        self.fuse_errors = 0
        self._reported_fuse_errors = 0
        self.memory_resets = 0
        self.compressed_encoded = 0
        self.registration_state = ""  # how the worker registered the last frame
        self.registration_problem = ""  # why registration camera_info could not apply
        self._registration_cache: tuple | None = None
        self._info_note_logged = False
        self.output_rate = RateWindow()
        self.latency = LatencyWindow()
        self._started = time.monotonic()
        self._running = True
        self._worker = threading.Thread(target=self._work, name="fusion_worker", daemon=True)
        self._worker.start()
        # Steady clock: /diagnostics must keep coming when sim time (/clock) stops.
        self.create_timer(1.0, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))

    # -- parameters ---------------------------------------------------------------
    def _declare_parameters(self) -> dict:
        # Dynamic typing: YAML's `1` for a float, or `[]` for the homography, must not be a
        # type error deep in rclpy; our own table checks and coerces every value instead.
        values = {}
        for spec in param_table.PARAMS:
            descriptor = ParameterDescriptor(description=spec.description,
                                             read_only=not spec.runtime, dynamic_typing=True)
            value = self.declare_parameter(spec.name, spec.default, descriptor).value
            values[spec.name] = param_table.coerce(spec.name, value)
        return values

    def _on_set_parameters(self, changed) -> SetParametersResult:
        updates = {p.name: param_table.coerce(p.name, p.value) for p in changed
                   if p.name in param_table.SPECS}
        if not updates:
            return SetParametersResult(successful=True)  # use_sim_time and other rclpy ones
        problems = param_table.validate_all({**self.params, **updates})
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        self.params.update(updates)
        self.gate.update(updates)  # sync_slop, max_stamp_gap, max_pixels
        # The engine's homography has one route: the worker's _homography, which reads the
        # homography parameter (and what registration camera_info needs) from self.params.
        engine_fields = set(EngineConfig.__dataclass_fields__) - {"homography"}
        with self._requests_lock:  # the worker applies it before its next frame
            self._config_request.update({k: v for k, v in updates.items() if k in engine_fields})
        return SetParametersResult(successful=True)

    # -- input ----------------------------------------------------------------------
    def _image_callback(self, stream: str):
        return lambda msg: self._on_image(stream, msg)

    def _camera_info_callback(self, stream: str):
        def on_camera_info(msg: CameraInfo) -> None:
            state = self.inputs[stream]
            state.camera_info = msg  # one reference swap: the worker reads it as a whole
            state.camera_infos += 1
        return on_camera_info

    def _on_image(self, stream: str, msg: Image | CompressedImage,
                  now: float | None = None) -> None:
        """One image message into the gate (``now``: its receipt, monotonic seconds)."""
        now = time.monotonic() if now is None else now
        state = self.inputs[stream]
        decode = self._decoders[stream]
        offer = self.gate.offer(stream, stamp_ns(msg), lambda max_pixels: decode(msg, max_pixels),
                                receipt=now, frame_id=msg.header.frame_id, meta=msg.header)
        if offer.dropped == "duplicate":
            self._throttled_log(f"duplicate-{stream}", "warning",
                                f"dropped {stream} frame on {state.topic}: {offer.error}")
        elif offer.dropped == "error":
            self._input_error(state, offer.error)
        if offer.restart is Verdict.RESTART:
            # a source jumped back (a looping bag): the gate restarted the pairing once,
            # the engine resets its memory on the stamps going back
            self.mailbox.clear()
            self._throttled_log(f"restart-{stream}", "warning",
                                f"{stream} stamps jumped back to {stamp_ns(msg) / 1e9:.3f} s; "
                                "restarting pairing and temporal memory")
        for pair in offer.pairs:
            self.mailbox.put(pair)

    def _input_error(self, state: InputState, text: str) -> None:
        """Report a frame the gate dropped as bad (it counted it; ``text`` is cut short)."""
        state.errors_since_report += 1
        kind = re.sub(r"[\d.]+", "", text)[:48]  # one throttle per kind of fault, not per size
        self._throttled_log(f"input-{state.name}-{kind}", "error",
                            f"dropped {state.name} frame on {state.topic}: {text}")

    def _throttled_log(self, key: str, level: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, -math.inf) >= LOG_THROTTLE_S:
            self._last_log[key] = now
            logger = self.get_logger()
            # One call site per severity: rclpy refuses to change a call site's severity.
            if level == "error":
                logger.error(text)
            elif hasattr(logger, "warning"):  # Humble only has warn(); later ones deprecate it
                logger.warning(text)
            else:
                logger.warn(text)
        if len(self._last_log) > 256:  # keys come from message text: keep them bounded
            self._last_log.clear()

    def _on_reset(self, request, response):
        with self._requests_lock:  # never the engine lock: that waits for a whole fuse
            self._reset_request = "reset service called"
        response.success = True
        response.message = "temporal memory will reset before the next frame"
        return response

    # -- fusion ----------------------------------------------------------------------
    def _work(self) -> None:
        while self._running:
            pair = self.mailbox.take(timeout=0.1)
            if pair is None:
                continue
            try:
                self._fuse(pair)
            except Exception as error:  # a fuser bug must not kill the node
                self.fuse_errors += 1
                self._throttled_log("fuse", "error", f"fusion failed: {error!r}")

    def _fuse(self, pair: Pair[Frame]) -> None:
        thermal, rgb, header = pair.thermal.image, pair.rgb.image, pair.rgb.meta
        with self._requests_lock:
            reset, self._reset_request = self._reset_request, ""
            config, self._config_request = self._config_request, {}
        with self._engine_lock:
            if config:
                self.engine.update_config(**config)
            homography = self._homography(thermal.shape[:2], rgb.shape[:2])
            if homography != self.engine.config.homography:
                self.engine.update_config(homography=homography)
            if reset:
                self.engine.reset(reset)
            result = self.engine.process(thermal, rgb, pair.rgb_stamp_ns)
        if not self._running:
            return
        self.fused_pub.publish(image_message(result.fused, header))
        height, width = result.fused.shape[:2]
        rgb_info = self.inputs[RGB].camera_info
        if rgb_info is None and not self._info_note_logged:
            self._info_note_logged = True
            self.get_logger().info("no rgb/camera_info received yet: fused/camera_info is "
                                   "uncalibrated (K = 0) until one arrives")
        if self.info_pub.get_subscription_count() > 0:  # built per frame: only when asked
            self.info_pub.publish(camera_info_for(rgb_info, header, width, height))
        if self.compressed_pub.get_subscription_count() > 0:  # JPEG costs ms: only when asked
            self.compressed_pub.publish(compressed_message(result.fused, header,
                                                           self.params["jpeg_quality"]))
            self.compressed_encoded += 1
        now = time.monotonic()
        latency = now - max(pair.thermal.receipt, pair.rgb.receipt)
        self.latency.add(latency)
        self.output_rate.add(now)
        self.fused_count += 1
        if result.reset_reason:
            self.memory_resets += 1
        self.temporal_pub.publish(self._temporal_message(result, header, pair, latency))

    def _homography(self, thermal_hw: tuple[int, int], rgb_hw: tuple[int, int]) -> list[float]:
        """
        Return the thermal->RGB homography for this frame.

        The ``homography`` parameter, or with ``registration: camera_info`` the one from
        both CameraInfo (the parameter until both are usable).  Worked out once per change
        of its inputs (both CameraInfo, the image sizes, the parameters it reads), a failure
        included; ``registration_state`` and ``registration_problem`` say how it went.
        """
        p = self.params
        infos = (self.inputs[THERMAL].camera_info, self.inputs[RGB].camera_info)
        key = (p["registration"], tuple(p["homography"]), thermal_hw, rgb_hw,
               *(_camera_info_key(info) for info in infos),
               tuple(p["thermal_to_rgb_translation"]), tuple(p["thermal_to_rgb_rpy"]),
               p["registration_distance"])
        if self._registration_cache is None or self._registration_cache[0] != key:
            self._registration_cache = (key, *self._registration(thermal_hw, rgb_hw, *infos))
        _, homography, self.registration_state, self.registration_problem = (
            self._registration_cache)
        return homography

    def _registration(self, thermal_hw: tuple[int, int], rgb_hw: tuple[int, int],
                      thermal_info: CameraInfo | None,
                      rgb_info: CameraInfo | None) -> tuple[list[float], str, str]:
        """Return (homography, registration state, registration problem) of these inputs."""
        p = self.params
        fallback = p["homography"]
        state = "homography parameter" if fallback else "resize"
        if p["registration"] != "camera_info":
            return fallback, state, ""
        problems = []
        for stream, info in ((THERMAL, thermal_info), (RGB, rgb_info)):
            if why := "none received yet" if info is None else intrinsics_problem(info.k):
                problems.append(f"{stream}/camera_info: {why}")
        if problems:
            return fallback, state, "; ".join(problems) + f" (registering by {state})"
        homography = camera_info_homography(
            thermal_info.k, (thermal_info.width, thermal_info.height), thermal_hw[::-1],
            rgb_info.k, (rgb_info.width, rgb_info.height), rgb_hw[::-1],
            p["thermal_to_rgb_translation"], p["thermal_to_rgb_rpy"],
            p["registration_distance"])
        if problem := param_table.validate("homography", homography):  # e.g. singular
            return fallback, state, f"camera_info registration: {problem}"
        return homography, "camera_info", ""

    def _hardware_id(self) -> str:
        """Node-level statuses: the RGB camera (the fused image's frame), else the node."""
        return self.gate.inputs[RGB].frame_id or self.get_fully_qualified_name()

    def _temporal_message(self, result, header, pair: Pair, latency: float) -> DiagnosticArray:
        frame = temporal_status(result, latency, pair.skew_ns, self.get_fully_qualified_name(),
                                header.frame_id)
        status = DiagnosticStatus(level=bytes([frame.level]), name=frame.name,
                                  message=frame.message,
                                  hardware_id=frame.hardware_id,
                                  values=[KeyValue(key=k, value=v)
                                          for k, v in frame.values.items()])
        return DiagnosticArray(header=header, status=[status])

    # -- /diagnostics ----------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [self._input_status(state, now) for state in self.inputs.values()]
        array.status.append(self._fusion_status(now))
        self.diagnostics_pub.publish(array)

    def _input_status(self, state: InputState, now: float) -> DiagnosticStatus:
        counters = self.gate.inputs[state.name]
        expected, tolerance = self.params["expected_rate"], self.params["rate_tolerance"]
        # A window holding several periods even at low expected rates.
        counters.rate.window = max(2.0, 4.0 / expected) if expected else 2.0
        rate = counters.rate.rate(now)
        findings: list[tuple[bytes, str]] = []
        silent_for = now - (counters.last_receipt or self._started)
        if silent_for > self.params["stall_timeout"]:
            # diagnostic_updater's FrequencyStatus: no events is an ERROR where a rate is expected
            message = ("no messages yet" if counters.last_receipt is None
                       else f"stalled: no message for {silent_for:.1f} s")
            findings.append((ERROR if expected else WARN, message))
            self._log_stall(state, message, now)
        else:
            if state.stalled_since is not None:
                self.get_logger().info(f"{state.name} input {state.topic}: messages again "
                                       f"after {now - state.stalled_since:.1f} s")
                state.stalled_since = None
            if expected and rate > 0:  # 0: fewer than two messages yet, nothing measured
                findings += _rate_findings(rate, expected, tolerance)
        if state.errors_since_report:
            findings.append((ERROR, f"{state.errors_since_report} bad frame(s): "
                                    f"{counters.last_error}"))
            state.errors_since_report = 0
        values = {"topic": state.topic, "rate_hz": rate}
        if expected:
            values |= {"expected_rate_hz": expected, "min_rate_hz": expected * (1 - tolerance),
                       "max_rate_hz": expected * (1 + tolerance)}
        values |= self.gate.input_values(state.name)  # as tvf evaluate reports them
        values["camera_info_received"] = state.camera_infos
        level, message = _worst(findings)
        return _status(level, f"{self.get_fully_qualified_name()}: {state.name} input", message,
                       values, hardware_id=counters.frame_id)

    def _log_stall(self, state: InputState, message: str, now: float) -> None:
        """Once on entering the stall, then a summary every STALL_SUMMARY_S."""
        if state.stalled_since is None:
            state.stalled_since = now
            self._log_warning(f"{state.name} input {state.topic}: {message}")
            self._last_log[f"stall-{state.name}"] = now
        elif now - self._last_log.get(f"stall-{state.name}", now) >= STALL_SUMMARY_S:
            self._last_log[f"stall-{state.name}"] = now
            self._log_warning(f"{state.name} input {state.topic}: still {message}")

    def _log_warning(self, text: str) -> None:
        logger = self.get_logger()
        if hasattr(logger, "warning"):  # Humble only has warn()
            logger.warning(text)
        else:
            logger.warn(text)

    def _fusion_status(self, now: float) -> DiagnosticStatus:
        findings: list[tuple[bytes, str]] = []
        if self.engine.fuser_warning:
            findings.append((WARN, self.engine.fuser_warning))
        if self.registration_problem and self.params["registration"] == "camera_info":
            findings.append((WARN, self.registration_problem))
        new_errors, self._reported_fuse_errors = (self.fuse_errors - self._reported_fuse_errors,
                                                  self.fuse_errors)
        if new_errors:
            findings.append((ERROR, f"{new_errors} frame(s) failed to fuse"))
        level, message = _worst(findings)
        rgb_info = self.inputs[RGB].camera_info
        values = {"fuser": self.engine.fuser.name, "device": self.engine.device,
                  "output_rate_hz": self.output_rate.rate(now), "fused": self.fused_count,
                  "skipped_backpressure": self.mailbox.skipped, "fuse_errors": self.fuse_errors,
                  "memory_resets": self.memory_resets,
                  "compressed_encoded": self.compressed_encoded,
                  "registration": self.registration_state,
                  # the learned fuser: which restorations the cameras need now
                  "restoring": getattr(self.engine.fuser, "restoring", None),
                  "camera_info": ("uncalibrated: no rgb/camera_info received" if rgb_info is None
                                  else "from rgb/camera_info"),
                  "latency_p50_ms": _ms(self.latency.percentile(50)),
                  "latency_p95_ms": _ms(self.latency.percentile(95)),
                  "latency_max_ms": _ms(self.latency.percentile(100))}
        return _status(level, f"{self.get_fully_qualified_name()}: fusion", message, values,
                       hardware_id=self._hardware_id())

    def stop(self) -> None:
        """Stop the worker before the node's publishers go away (it may be mid-frame)."""
        self._running = False
        self._worker.join(timeout=30.0)


def _camera_info_key(info: CameraInfo | None) -> tuple | None:
    """Return what registration reads of a CameraInfo (K, size), comparable with NaN in K."""
    if info is None:
        return None
    return np.asarray(info.k, np.float64).tobytes(), info.width, info.height


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _rate_findings(rate: float, expected: float, tolerance: float) -> list[tuple[bytes, str]]:
    """
    Find diagnostic_updater FrequencyStatus bounds around one expected rate.

    diagnostic_updater FrequencyStatus bounds around one expected rate, plus ERROR below
    half of it (greenwave-style).
    """
    if rate < 0.5 * expected:
        return [(ERROR, f"rate {rate:.1f} Hz below half the expected {expected:g} Hz")]
    if rate < expected * (1 - tolerance):
        return [(WARN, f"rate {rate:.1f} Hz too low (expected {expected:g} Hz "
                       f"-{tolerance:.0%})")]
    if rate > expected * (1 + tolerance):
        return [(WARN, f"rate {rate:.1f} Hz too high (expected {expected:g} Hz "
                       f"+{tolerance:.0%})")]
    return []


def _worst(findings: list[tuple[bytes, str]]) -> tuple[bytes, str]:
    """Return the highest level of the findings and their messages, worst first; OK when none."""
    if not findings:
        return OK, "ok"
    findings = sorted(findings, key=lambda f: f[0], reverse=True)
    return findings[0][0], "; ".join(text for _, text in findings)


def _status(level, name: str, message: str, values: dict,
            hardware_id: str = "") -> DiagnosticStatus:
    # An unknown value is left out rather than sent as "nan" or text among numbers, so a
    # plotting tool (PlotJuggler) parses every value of a numeric key.
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=v)
                                    for k, v in diagnostic_values(values).items()])


def main(args=None) -> int:
    # rclpy would end a bad params file in a traceback (YAML) or start on defaults
    # (missing): read each first, so it is one line and exit status 2.
    files = params_file.params_files(sys.argv if args is None else args)
    loaded = []
    for path in files:
        try:
            loaded.append((path, params_file.load(path)))
        except params_file.ParamsFileError as error:
            print(f"fusion_node: cannot start: {error}", file=sys.stderr)
            return 2
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = FusionNode()
        except (ParameterError, ValueError) as error:  # bad parameters, unusable device
            rclpy.logging.get_logger("fusion_node").fatal(f"cannot start: {error}")
            return 2
        for path, data in loaded:  # names rclpy silently ignored
            for problem in params_file.problems(path, data, node.get_fully_qualified_name(),
                                                param_table.SPECS):
                node._log_warning(problem)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):  # Ctrl-C, even during start-up
        pass
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
