"""
Run the real fusion node in its own process and talk to it over DDS.

Used by ``tvf demo``, ``tvf benchmark`` and the integration tests: the node is
started exactly as a user starts it (its own process, a params file, the
shipped Fast DDS profile), and a ``PairClient`` node in this process publishes
thermal/RGB pairs and records what the node publishes.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np

from thermal_visible_fusion.resources import config_file, fastdds_profile


def dds_environment(domain_id: int | None = None) -> dict[str, str]:
    """
    Environment for a private DDS session: own domain, large-image profile.

    Call ``os.environ.update(...)`` with it *before* ``rclpy.init`` in this
    process and pass it to child processes, so both sides use the same domain
    and transports (and parallel runs never cross-talk).
    """
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else random.randint(100, 200))
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(fastdds_profile()))
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class NodeProcess:
    """``fusion_node`` in a child process with a params file and parameter overrides."""

    def __init__(self, env: dict[str, str], params: dict | None = None,
                 params_file: Path | None = None, executable: list[str] | None = None,
                 log_path: Path | None = None, extra_args: list[str] | None = None):
        command = executable or [sys.executable, "-m", "thermal_visible_fusion.ros.fusion_node"]
        command += ["--ros-args", "--params-file", str(params_file or config_file())]
        for name, value in (params or {}).items():
            command += ["-p", f"{name}:={_ros_value(value)}"]
        command += extra_args or []
        self.command = command
        self.log_path = log_path
        self._log = open(log_path, "w") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(command, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _ros_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_ros_value(v) for v in value) + "]"
    return str(value)


@dataclass
class Received:
    """What the client recorded, keyed by header stamp (ns)."""

    fused: dict[int, object] = field(default_factory=dict)
    fused_receipt: dict[int, float] = field(default_factory=dict)
    temporal: dict[int, dict[str, str]] = field(default_factory=dict)
    diagnostics: list = field(default_factory=list)

    def newest_status(self, suffix: str = ": fusion"):
        """Return the newest /diagnostics status whose name ends with ``suffix`` (None if none)."""
        for array in reversed(self.diagnostics):
            for status in array.status:
                if status.name.endswith(suffix):
                    return status
        return None

    def last_status(self, suffix: str = ": fusion") -> dict[str, str]:
        """Values of the newest /diagnostics status whose name ends with ``suffix``."""
        status = self.newest_status(suffix)
        return {} if status is None else {kv.key: kv.value for kv in status.values}


@contextmanager
def node_session(env: dict[str, str], params: dict, log_path: Path, **client_args):
    """
    Run the fusion node in its own process and a ``PairClient`` talking to it.

    The fusion node in its own process and a ``PairClient`` talking to it (rclpy
    initialised here); on exit the client closes, rclpy shuts down and the node stops,
    its exit code in ``session.code``.
    """
    import rclpy

    node = NodeProcess(env, params, log_path=log_path)
    rclpy.init()
    client = PairClient(**client_args)
    session = SimpleNamespace(node=node, client=client, code=None)
    try:
        if not client.wait_for_node(timeout=120, process=node):
            raise SystemExit(f"node did not start:\n{node.log()}")
        yield session
    finally:
        client.close()
        rclpy.try_shutdown()
        session.code = node.stop()


@contextmanager
def in_process_node(params: dict):
    """
    Run a ``FusionNode`` in this process, for tests that call its callbacks directly.

    On a context and DDS domain of its own (it is never spoken to over DDS); stopped,
    destroyed and its context shut down on exit.
    """
    import rclpy
    from rclpy.parameter import Parameter

    from thermal_visible_fusion.ros import fusion_node

    # The DDS settings of every test of this process (Fast DDS reads its profile once per
    # process).
    env = dds_environment(random.randint(150, 200))
    for name in ("FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION"):
        os.environ.setdefault(name, env[name])
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    node = None
    try:
        node = fusion_node.FusionNode(context=context, parameter_overrides=[
            Parameter(name, value=value) for name, value in params.items()])
        yield node
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.shutdown(context=context)


def rounded_percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


class PairClient:
    """
    A node that publishes thermal/RGB pairs to the fusion node and records its output.

    Spins on its own thread so publishing and receiving overlap like separate
    camera and viewer processes would.  Keep at most ``keep`` fused images.
    """

    def __init__(self, namespace: str = "", qos: str = "sensor_data", keep: int = 100_000,
                 keep_images: bool = True):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image

        from thermal_visible_fusion.ros.messages import qos_by_name

        self._rclpy = rclpy
        self.node = rclpy.create_node("tvf_pair_client", namespace=namespace)
        # The node's outputs are relative names: they live in its namespace, like ours.
        prefix = namespace.rstrip("/")
        self.fused_topic = f"{prefix}/fused/image_raw"
        pub_qos = qos_by_name(qos)
        self.thermal_pub = self.node.create_publisher(Image, "thermal/image_raw", pub_qos)
        self.rgb_pub = self.node.create_publisher(Image, "rgb/image_raw", pub_qos)
        self.received = Received()
        self._keep, self._keep_images = keep, keep_images
        self._lock = threading.Lock()
        sub_qos = qos_by_name("reliable", depth=50)
        self.node.create_subscription(Image, self.fused_topic, self._on_fused, sub_qos)
        self.node.create_subscription(DiagnosticArray, f"{prefix}/fused/temporal_consistency",
                                      self._on_temporal, sub_qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics",
                                      lambda m: self.received.diagnostics.append(m), 10)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # shutdown while spinning
            pass

    def _on_fused(self, msg) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            if len(self.received.fused) < self._keep:
                self.received.fused[stamp] = msg if self._keep_images else msg.header
                self.received.fused_receipt[stamp] = time.monotonic()

    def _on_temporal(self, msg) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        values = {kv.key: kv.value for kv in msg.status[0].values} if msg.status else {}
        values["_level"] = msg.status[0].level if msg.status else None
        values["_frame_id"] = msg.header.frame_id
        with self._lock:
            if len(self.received.temporal) < self._keep:
                self.received.temporal[stamp] = values

    def wait_for_node(self, timeout: float = 60.0, process: NodeProcess | None = None) -> bool:
        """Until the fusion node subscribes to both inputs (it is warmed up by then)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if process is not None and not process.alive():
                return False
            if (self.thermal_pub.get_subscription_count() > 0
                    and self.rgb_pub.get_subscription_count() > 0
                    and self.node.count_publishers(self.fused_topic) > 0):
                time.sleep(0.5)  # let discovery settle on both sides
                return True
            time.sleep(0.1)
        return False

    def publish_pair(self, thermal_msg, rgb_msg) -> None:
        self.thermal_pub.publish(thermal_msg)
        self.rgb_pub.publish(rgb_msg)

    def publish_now(self, thermal_msg, rgb_msg) -> int:
        """Stamp both messages with this node's clock now, publish them; the stamp (ns)."""
        stamp = self.node.get_clock().now().nanoseconds
        for msg in (thermal_msg, rgb_msg):
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        self.publish_pair(thermal_msg, rgb_msg)
        return stamp

    def wait_for_count(self, count: int, timeout: float) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(self.received.fused) < count:
            time.sleep(0.02)
        return len(self.received.fused)

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()


def paced(count: int, rate_hz: float):
    """Yield 0..count-1 at ``rate_hz`` on an absolute schedule (no drift)."""
    start = time.monotonic()
    for index in range(count):
        delay = start + index / rate_hz - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield index


def reset_storm(client: PairClient, calls: int = 100, timeout: float = 30.0,
                service: str = "/fusion_node/reset") -> list[float | None]:
    """
    Send ``calls`` ~/reset requests at once; each one's answer time in ms (None: none).

    The client's queue is as deep as the burst, so a lost answer is the server's fault.
    """
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from std_srvs.srv import Trigger

    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(calls, 10),
                     reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    reset = client.node.create_client(Trigger, service, qos_profile=qos)
    try:
        if not reset.wait_for_service(timeout_sec=10.0):
            return [None] * calls
        answered: list[float | None] = [None] * calls

        def done(index: int, sent: float):
            return lambda future: answered.__setitem__(index, (time.monotonic() - sent) * 1000)

        for index in range(calls):
            sent = time.monotonic()
            reset.call_async(Trigger.Request()).add_done_callback(done(index, sent))
        end = time.monotonic() + timeout
        while time.monotonic() < end and None in answered:
            time.sleep(0.02)
        return answered
    finally:
        client.node.destroy_client(reset)


def process_rss_mb(pid: int) -> float | None:
    """Resident memory of a process (Linux /proc), MB; None where unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
