"""
``tvf evaluate``: fuse a recorded bag offline exactly like the node, and report.

Reads a rosbag2 bag (mcap or sqlite3, with ``rosbags``; no ROS needed), hands each
thermal and RGB image message, in log-time order, to the node's input front end
(:class:`stream.gate.InputGate`: decoding, ``max_pixels``, degenerate sizes, NaN/inf,
stamp order with the restart of a looping bag, pairing; flushed at the end of the bag),
fuses every pair with the node's :class:`FusionEngine` and writes into ``--out DIR``.
A message's log time stands for the node's receipt time.  The thermal and RGB topics
may be ``sensor_msgs/Image`` (any encoding the node takes) or
``sensor_msgs/CompressedImage`` (image_transport's ``compressed``/``compressedDepth``,
e.g. ``/rgb/image_raw/compressed``).  Outputs:

* ``fused_bag/``: every topic of the input bag, plus the node's outputs under its
  names in the root namespace: ``/fused/image_raw`` (bgr8, stamp and frame_id of
  the RGB input) -- with ``--compressed`` instead ``/fused/image_raw/compressed``
  (JPEG, "bgr8; jpeg compressed bgr8", quality ``--jpeg-quality``, default the
  node's ``jpeg_quality``) -- and ``/fused/temporal_consistency`` (the DiagnosticArray
  the node publishes per frame, from the same function), in log-time order; fused messages
  are logged at their RGB message's log time.  Those topics in the input bag (a
  recording of a live node) are replaced, not mixed with the new ones.
* ``report.json``: mean and p5/p50/p95 over frames of every per-frame metric,
  pairing counters, the per-input counters under the names of the node's
  ``/diagnostics`` (``inputs``), fuser and device, frame count; ``frames.csv``: the
  per-frame values; ``report.md``: the same as Markdown tables.
* ``metrics_over_time.png`` (temporal errors of fused vs inputs, flicker, fuse
  time; needs matplotlib) and ``samples.png`` (thermal | RGB | fused of a few
  frames).

Parameters default to the node's shipped ``config/fusion.yaml`` (or
``--params FILE``, a node parameters file); the flags below override them.
``latency_ms`` here is the wall time from reading the later message of a pair
to its fused result (pairing wait, decoding and fusion), not DDS latency.
Image-quality metrics (EN, SD, ..., from ``metrics.image.compute_all``, against
the registered thermal and the RGB frame) are computed every
``--metrics-every`` frames (0: off).

Frames the node would drop are dropped and counted the same way (``input_errors``,
``oversize_frames``, ``source_restarts`` and ``inputs`` in the report).
``--lookahead K`` (learned fuser with memory only; no node parameter) fuses
with K frames of look-ahead: each fused frame is still written and scored
under its own pair's stamps, frame_id, log time and inputs, and the last K
frames come out when the bag ends.

Outputs never destroy or mix data: ``DIR`` is written beside and renamed into place
when complete; an existing non-empty ``DIR`` needs ``--force``, which replaces it whole
and refuses a ``DIR`` that holds the bag (or another input).  A bag that cannot be
read (truncated, corrupt) is an error, exit status 2, with nothing written.  Weights
asked for on the command line (``--weights`` or ``--fuser learned``) must load, as
in ``tvf fuse``; the node's fallback to the multi-scale fuser is for the live node.

Example::

    tvf evaluate scene_bag --out eval/scene --fuser multiscale --metrics-every 5
"""

from __future__ import annotations

import argparse
from collections import Counter, deque
import csv
from dataclasses import asdict, dataclass
import json
import math
from pathlib import Path
import sys
import time

import numpy as np

from thermal_visible_fusion.stream.frame_diagnostics import (frame_values, TEMPORAL_KEYS,
                                                             temporal_status)

# the node's relative output names, resolved in the root namespace
FUSED_TOPIC = "/fused/image_raw"
FUSED_COMPRESSED_TOPIC = "/fused/image_raw/compressed"
TEMPORAL_TOPIC = "/fused/temporal_consistency"
OUTPUT_TOPICS = (FUSED_TOPIC, FUSED_COMPRESSED_TOPIC, TEMPORAL_TOPIC)
NODE_NAME = "fusion_node"
NODE_FQN = "/" + NODE_NAME  # the node's fully qualified name, in the root namespace
# per-frame numbers summarised in the report (the temporal keys that are measurements)
FRAME_METRICS = ("temporal_error_fused", "temporal_error_thermal", "temporal_error_rgb",
                 "brightness_flicker", "fuse_ms", "latency_ms", "stamp_skew_ms")
PERCENTILES = (5, 50, 95)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from thermal_visible_fusion.fusers import FUSER_NAMES

    parser.add_argument("bag", help="rosbag2 folder (mcap or sqlite3)")
    parser.add_argument("--out", required=True,
                        help="output folder (created; an existing non-empty one needs --force)")
    parser.add_argument("--thermal-topic", default=None,
                        help="thermal Image or CompressedImage topic (default: guessed from "
                             "the names, Image preferred)")
    parser.add_argument("--rgb-topic", default=None,
                        help="RGB Image or CompressedImage topic (default: guessed from the "
                             "names, Image preferred)")
    parser.add_argument("--params", default=None,
                        help="node parameters YAML (default: the shipped config/fusion.yaml)")
    parser.add_argument("--fuser", choices=FUSER_NAMES, default=None)
    parser.add_argument("--weights", default=None, help="weights file of the learned fuser")
    parser.add_argument("--no-memory", action="store_true",
                        help="no temporal memory (still-image fusion)")
    parser.add_argument("--lookahead", type=int, default=None,
                        help="frames of look-ahead for the learned fuser with memory "
                             "(offline only; default 0)")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda[:N]")
    parser.add_argument("--slop-ms", type=float, default=None,
                        help="largest thermal/RGB stamp difference of a pair, ms "
                             "(default: the node's sync_slop)")
    parser.add_argument("--queue-size", type=int, default=None,
                        help="pending messages per input while pairing (default: the node's)")
    parser.add_argument("--metrics-every", type=int, default=1,
                        help="image-quality metrics on every Nth frame (default 1; 0 = off)")
    parser.add_argument("--samples", type=int, default=4,
                        help="frames shown in samples.png (default 4)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                        help="storage of the output bag (default mcap)")
    parser.add_argument("--compressed", action="store_true",
                        help=f"write the fused images as CompressedImage (JPEG) on "
                             f"{FUSED_COMPRESSED_TOPIC} instead of Image on {FUSED_TOPIC}")
    parser.add_argument("--jpeg-quality", type=int, default=None,
                        help="JPEG quality 1..100 of --compressed (default: the node's "
                             "jpeg_quality)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing non-empty OUT whole (never one holding the bag)")


# ------------------------------------------------------------------ parameters


def node_parameters(args) -> dict:
    """Return the node's parameter values: defaults < params file < command-line flags."""
    from thermal_visible_fusion import params as param_table
    from thermal_visible_fusion import params_file
    from thermal_visible_fusion.resources import config_file

    values = {spec.name: spec.default for spec in param_table.PARAMS}
    path = Path(args.params) if args.params else None
    if path is None:
        try:
            path = config_file()
        except FileNotFoundError:
            path = None
    if path is not None:
        found = _ros_parameters(params_file.load(path))  # ParamsFileError: one line
        values.update({k: v for k, v in found.items() if k in values})  # as the node: known only
    overrides = {"fuser": args.fuser, "weights": args.weights, "device": args.device,
                 "queue_size": args.queue_size,
                 "jpeg_quality": getattr(args, "jpeg_quality", None),
                 "sync_slop": None if args.slop_ms is None else args.slop_ms / 1000.0}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if args.no_memory:
        values["use_memory"] = False
    values["homography"] = [float(v) for v in values.get("homography") or []]
    problems = param_table.validate_all(values)
    if args.lookahead:
        from thermal_visible_fusion.learned.lookahead import lookahead_problem
        problem = lookahead_problem(args.lookahead, values["fuser"], values["use_memory"])
        if problem:
            problems.append(problem.replace("--no-memory", "use_memory false"))
    if problems:
        raise ValueError("invalid parameters: " + "; ".join(problems))
    return values


def _ros_parameters(data: dict) -> dict:
    """``ros__parameters`` of ``/**`` or ``fusion_node`` (any namespace) in a params file."""
    found: dict = {}

    def visit(node, name):
        if isinstance(node, dict):
            if "ros__parameters" in node and name in ("/**", NODE_NAME) or (
                    "ros__parameters" in node and name.endswith("/" + NODE_NAME)):
                found.update(node["ros__parameters"] or {})
            for key, child in node.items():
                if key != "ros__parameters":
                    visit(child, str(key))

    visit(data, "")
    return found


# --------------------------------------------------------------------- running


@dataclass(frozen=True)
class Item:
    """What the evaluation keeps of an input message beside the gate's ``Frame``."""

    log_time_ns: int
    read_at: float  # perf_counter when it was read: the start of its latency


def _finite(value) -> float | None:
    if value is None or isinstance(value, str):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def summarise(rows: list[dict], names) -> dict:
    """``{name: {mean, p5, p50, p95, count}}`` over the finite per-frame values."""
    out = {}
    for name in names:
        values = np.array([v for v in (_finite(r.get(name)) for r in rows) if v is not None])
        if values.size == 0:
            out[name] = {"mean": None, "p5": None, "p50": None, "p95": None, "count": 0}
            continue
        stats = {"mean": float(values.mean())}
        stats.update({f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES})
        stats["count"] = int(values.size)
        out[name] = stats
    return out


class Evaluation:
    """Runs one bag through pairing + engine; see the module docstring."""

    def __init__(self, args, params: dict):
        from thermal_visible_fusion.engine import EngineConfig, FusionEngine
        from thermal_visible_fusion.learned.lookahead import DelayedEngine
        from thermal_visible_fusion.stream.gate import InputGate

        self.args = args
        self.params = params
        # lookahead is no node parameter (the node never waits for future frames)
        lookahead = args.lookahead or 0
        self.engine = FusionEngine(EngineConfig.from_params({**params, "lookahead": lookahead}))
        if lookahead and self.engine.fuser.name != "learned":
            raise ValueError(f"--lookahead needs the learned fuser, but fuser "
                             f"{params['fuser']!r} uses {self.engine.fuser.name}"
                             + (f" ({self.engine.fuser_warning})"
                                if self.engine.fuser_warning else ""))
        # hands each fused frame back with its own pair (the fuser answers K pairs late)
        self.runner = DelayedEngine(self.engine, lookahead)
        self.gate = InputGate.from_params(params)  # the node's checks, stamp order, pairing
        self.rows: list[dict] = []
        self.samples: list[tuple[int, np.ndarray]] = []
        self.sample_at: set[int] = set()
        self.reset_reasons = Counter()
        self._pending_log: dict[str, deque] = {"thermal": deque(), "rgb": deque()}
        self._first_stamp: int | None = None
        self.image_metrics = _image_metrics() if args.metrics_every > 0 else None
        self.image_metric_names: tuple[str, ...] = ()
        if self.image_metrics is not None:
            from thermal_visible_fusion.metrics import image as image_metrics
            self.image_metric_names = tuple(getattr(image_metrics, "METRICS", ()))

    def run(self, bag: Path, out_bag: Path) -> None:
        from thermal_visible_fusion.tools.bag_io import (COMPRESSED_IMAGE, DIAGNOSTIC_ARRAY,
                                                         IMAGE, IMAGE_TYPES, BagWriter,
                                                         guess_pair_topics, open_reader,
                                                         progress, read_messages, typestore)

        store = typestore()
        reader = open_reader(bag)
        try:
            images = [t for t, info in reader.topics.items() if info.msgtype in IMAGE_TYPES]
            self.thermal_topic, self.rgb_topic = guess_pair_topics(
                images, self.args.thermal_topic, self.args.rgb_topic)
            streams = {self.thermal_topic: "thermal", self.rgb_topic: "rgb"}
            counts = {t: info.msgcount for t, info in reader.topics.items()}
            expected = min(counts.get(self.thermal_topic, 0), counts.get(self.rgb_topic, 0))
            if self.args.samples > 0 and expected > 0:
                self.sample_at = {int(round(x)) for x in
                                  np.linspace(0, expected - 1, min(self.args.samples, expected))}
            self.writer = BagWriter(out_bag, storage=self.args.storage, reorder=True)
            replaced = sorted({c.topic for c in reader.connections if c.topic in OUTPUT_TOPICS})
            if replaced:
                print(f"[evaluate] the bag's {', '.join(replaced)} replaced by this evaluation's",
                      file=sys.stderr)
            with self.writer:
                for connection in reader.connections:
                    if connection.topic not in OUTPUT_TOPICS:
                        self.writer.copy_topic(connection)
                if self.args.compressed:
                    self.writer.add_topic(FUSED_COMPRESSED_TOPIC, COMPRESSED_IMAGE)
                else:
                    self.writer.add_topic(FUSED_TOPIC, IMAGE)
                self.writer.add_topic(TEMPORAL_TOPIC, DIAGNOSTIC_ARRAY)
                messages = read_messages(reader, bag)
                for connection, log_time, raw in progress(messages, total=reader.message_count,
                                                          desc="evaluate", unit="message"):
                    if connection.topic not in OUTPUT_TOPICS:
                        self.writer.write_raw(connection.topic, connection.msgtype, log_time, raw)
                    stream = streams.get(connection.topic)
                    if stream is not None:
                        self._offer(stream, store.deserialize_cdr(raw, connection.msgtype),
                                    log_time)
                    # hold back what may still be written before these: inputs waiting
                    # for a partner, pairs waiting for their look-ahead frame
                    pending = [q[0] for q in self._pending_log.values() if q]
                    pending += [pair.rgb.meta.log_time_ns for pair in self.runner.held_infos()]
                    self.writer.release_before(min(pending + [log_time]))
                for pair in self.gate.flush():
                    self._fuse(pair)
                for pair, result in self.runner.flush():
                    self._record(pair, result)
        finally:
            reader.close()

    def _offer(self, stream: str, msg, log_time: int) -> None:
        """
        Feed one image message into the gate; the pairs it completes are fused.

        One image message into the gate, as the node's callback hands it (the log time
        for its receipt time); the pairs it completes are fused.
        """
        from thermal_visible_fusion.stream.stamp_order import Verdict
        from thermal_visible_fusion.tools.bag_io import decode_image_message, stamp_ns_of

        def decode(max_pixels):
            return decode_image_message(msg, stream, max_pixels)  # as the node decodes

        offer = self.gate.offer(stream, stamp_ns_of(msg), decode, receipt=log_time / 1e9,
                                frame_id=msg.header.frame_id,
                                meta=Item(log_time, time.perf_counter()))
        if offer.dropped in ("error", "duplicate"):
            print(f"[evaluate] dropped {stream} frame: {offer.error}", file=sys.stderr)
        if offer.restart is Verdict.RESTART:
            print(f"[evaluate] {stream} stamps jumped back to {stamp_ns_of(msg) / 1e9:.3f} s "
                  "(a looping bag): restarting pairing and temporal memory", file=sys.stderr)
        if offer.accepted:
            self._pending_log[stream].append(log_time)
        # the pairer resolves (and drops) oldest first, so its pending messages are the
        # newest accepted ones (none after a restart)
        for name, queue in self._pending_log.items():
            while len(queue) > self.gate.pending(name):
                queue.popleft()
        for pair in offer.pairs:
            self._fuse(pair)

    def _fuse(self, pair) -> None:
        for done, result in self.runner.push(pair.thermal.image, pair.rgb.image,
                                             pair.rgb_stamp_ns, pair):
            self._record(done, result)

    def _record(self, pair, result) -> None:
        """Write and score one fused frame under its own pair's stamps and inputs."""
        from thermal_visible_fusion.tools.bag_io import Status

        thermal, rgb = pair.thermal, pair.rgb
        # with look-ahead this includes the wait for the K later pairs
        latency = time.perf_counter() - max(thermal.meta.read_at, rgb.meta.read_at)
        stamp, frame_id, log_time = pair.rgb_stamp_ns, rgb.frame_id, rgb.meta.log_time_ns
        if self.args.compressed:
            self.writer.write_image(FUSED_COMPRESSED_TOPIC, result.fused, stamp, frame_id,
                                    log_time_ns=log_time, compressed=True,
                                    quality=int(self.params.get("jpeg_quality", 90)))
        else:
            self.writer.write_image(FUSED_TOPIC, result.fused, stamp, frame_id,
                                    log_time_ns=log_time)
        values = frame_values(result, latency, pair.skew_ns)
        frame = temporal_status(result, latency, pair.skew_ns, NODE_FQN, frame_id,  # the node's
                                values=values)
        status = Status(name=frame.name, message=frame.message, level=frame.level,
                        hardware_id=frame.hardware_id, values=frame.values)
        self.writer.write_diagnostics(TEMPORAL_TOPIC, [status], stamp, frame_id,
                                      log_time_ns=log_time)
        index = len(self.rows)
        if self._first_stamp is None:
            self._first_stamp = stamp
        row = {"frame": index, "time_s": (stamp - self._first_stamp) / 1e9,
               "thermal_stamp_ns": pair.thermal_stamp_ns, "rgb_stamp_ns": stamp,
               **values}
        if result.reset_reason:
            self.reset_reasons[result.reset_reason] += 1
        if self.image_metrics is not None and index % self.args.metrics_every == 0:
            row.update(self.image_metrics(result.fused, result.thermal, rgb.image))
        self.rows.append(row)
        if index in self.sample_at:
            from thermal_visible_fusion.data.sources import tile
            self.samples.append((index, _shrink(tile(result.thermal, rgb.image, result.fused))))


def _image_metrics():
    """``metrics.image.compute_all`` when that module exists, else None (with a note)."""
    try:
        from thermal_visible_fusion.metrics.image import compute_all
    except ImportError as error:
        print(f"[evaluate] image metrics unavailable ({error}); reporting temporal metrics only",
              file=sys.stderr)
        return None

    def compute(fused, thermal, rgb) -> dict:
        try:
            return {k: float(v) for k, v in compute_all(fused, thermal, rgb).items()}
        except Exception as error:  # a metric bug must not lose the whole evaluation
            print(f"[evaluate] image metrics failed: {error!r}", file=sys.stderr)
            return {}

    return compute


def _shrink(image: np.ndarray, width: int = 960) -> np.ndarray:
    import cv2
    if image.shape[1] <= width:
        return image
    height = round(image.shape[0] * width / image.shape[1])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------- outputs


def write_report(out: Path, report: dict, rows: list[dict], metric_names: list[str]) -> None:
    def json_safe(value):
        return None if isinstance(value, float) and not math.isfinite(value) else value

    (out / "report.json").write_text(json.dumps(_clean(report, json_safe), indent=2) + "\n")
    columns = ["frame", "time_s", "thermal_stamp_ns", "rgb_stamp_ns", *TEMPORAL_KEYS,
               *[m for m in metric_names if m not in TEMPORAL_KEYS]]
    with open(out / "frames.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    (out / "report.md").write_text(markdown(report))


def _clean(value, fix):
    if isinstance(value, dict):
        return {k: _clean(v, fix) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, fix) for v in value]
    return fix(value)


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    return str(value)


def markdown(report: dict) -> str:
    lines = [f"# Evaluation of `{report['bag']}`", "",
             f"- fuser: **{report['fuser']}** on **{report['device']}**"
             + (f" (warning: {report['fuser_warning']})" if report.get("fuser_warning") else ""),
             f"- topics: thermal `{report['thermal_topic']}`, RGB `{report['rgb_topic']}`",
             f"- fused frames: **{report['frames']}** in {report['elapsed_s']:.1f} s "
             f"({report['frames_per_second']:.1f} frames/s)",
             f"- memory resets: {report['memory_resets']}"
             + ("".join(f"; {n}× {r}" for r, n in report["reset_reasons"].items())),
             f"- output bag: `{report['output_bag']}` (fused images on "
             f"`{report['fused_topic']}`)", "",
             "## Pairing", "",
             "| stream | " + " | ".join(report["pairing_keys"]) + " | decode/stamp errors |",
             "|---" * (len(report["pairing_keys"]) + 2) + "|"]
    for stream, counts in report["pairing"].items():
        lines.append(f"| {stream} | " + " | ".join(str(counts[k]) for k in report["pairing_keys"])
                     + f" | {report['input_errors'].get(stream, 0)} |")
    lines += ["", "## Per-frame metrics", "",
              "| metric | mean | p5 | p50 | p95 | frames |", "|---|---|---|---|---|---|"]
    for name, stats in report["metrics"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(stats[k]) for k in
                                                 ("mean", "p5", "p50", "p95", "count")) + " |")
    lines += ["", "Temporal errors are flowD on frames downscaled to "
              f"{report['config']['diagnostics_width']} px (lower is steadier); "
              "the fused value is comparable with the inputs' values.", ""]
    for name in report.get("plots", []):
        lines.append(f"![{name}]({name})")
    return "\n".join(lines) + "\n"


def plot_metrics(path: Path, rows: list[dict]) -> bool:
    """``metrics_over_time.png``; False (with a note) when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[evaluate] matplotlib not installed: skipping metrics_over_time.png",
              file=sys.stderr)
        return False
    t = [r["time_s"] for r in rows]

    def series(key):
        return [np.nan if _finite(r.get(key)) is None else float(r[key]) for r in rows]

    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    for key, label in (("temporal_error_fused", "fused"), ("temporal_error_thermal", "thermal"),
                       ("temporal_error_rgb", "RGB")):
        axes[0].plot(t, series(key), label=label, linewidth=1.2 if label == "fused" else 0.8)
    axes[0].set_ylabel("temporal error\n(flowD, 0-255)")
    axes[0].legend(loc="upper right")
    axes[1].plot(t, series("brightness_flicker"), color="tab:red", linewidth=0.9)
    axes[1].set_ylabel("brightness flicker\n(|Δ mean|)")
    axes[2].plot(t, series("fuse_ms"), color="tab:purple", linewidth=0.9)
    axes[2].set_ylabel("fuse time (ms)")
    axes[2].set_xlabel("time since first fused frame (s)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def save_samples(path: Path, samples: list[tuple[int, np.ndarray]]) -> bool:
    import cv2
    if not samples:
        return False
    width = max(img.shape[1] for _, img in samples)
    rows = []
    for index, img in samples:
        if img.shape[1] != width:
            img = cv2.resize(img, (width, round(img.shape[0] * width / img.shape[1])))
        img = img.copy()
        cv2.putText(img, f"#{index}", (img.shape[1] - 70, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (0, 255, 255), 2, cv2.LINE_AA)
        rows.append(img)
    return bool(cv2.imwrite(str(path), np.vstack(rows)))


# ------------------------------------------------------------------------ main


def evaluate(args) -> dict:
    from thermal_visible_fusion.fusers import CLASSIC_FUSERS, FALLBACK_FUSER
    from thermal_visible_fusion.tools.output_dir import check_output, staged_output

    bag = Path(args.bag)
    out = Path(args.out)
    if not bag.exists():
        raise FileNotFoundError(f"bag not found: {bag}")
    inputs = [p for p in (bag, args.params, args.weights) if p]
    check_output(out, args.force, inputs)  # before any work
    params = node_parameters(args)
    run = Evaluation(args, params)
    warning = run.engine.fuser_warning
    if warning and (args.fuser == "learned" or
                    (args.weights and args.fuser not in CLASSIC_FUSERS)):
        # asked for by name: no silent fallback (that is for the live node only)
        raise ValueError(warning.removesuffix(f"; falling back to {FALLBACK_FUSER}"))
    with staged_output(out, args.force, inputs) as folder:
        return _evaluate_into(run, params, bag, out, folder)


def _evaluate_into(run: Evaluation, params: dict, bag: Path, out: Path, folder: Path) -> dict:
    """Run the evaluation writing into ``folder``, which becomes ``out`` when done."""
    start = time.perf_counter()
    run.run(bag, folder / "fused_bag")
    elapsed = time.perf_counter() - start
    args = run.args
    frame_metrics = list(FRAME_METRICS) + list(run.image_metric_names or sorted(
        {k for r in run.rows for k in r} - set(FRAME_METRICS) - set(TEMPORAL_KEYS)
        - {"frame", "time_s", "thermal_stamp_ns", "rgb_stamp_ns"}))
    pairing = run.gate.pairing_stats()
    inputs = {stream: run.gate.input_values(stream) for stream in run.gate.inputs}

    def nonzero(key: str) -> dict:  # per stream, streams with none left out
        return {stream: values[key] for stream, values in inputs.items() if values[key]}

    plots = []
    if run.rows and plot_metrics(folder / "metrics_over_time.png", run.rows):
        plots.append("metrics_over_time.png")
    if save_samples(folder / "samples.png", run.samples):
        plots.append("samples.png")
    config = asdict(run.engine.config)
    config.update(sync_slop=params["sync_slop"], queue_size=params["queue_size"])
    report = {
        "bag": str(bag), "output_bag": str(out / "fused_bag"),
        "fused_topic": FUSED_COMPRESSED_TOPIC if args.compressed else FUSED_TOPIC,
        "thermal_topic": run.thermal_topic, "rgb_topic": run.rgb_topic,
        "fuser": run.engine.fuser.name, "device": run.engine.device,
        "fuser_warning": run.engine.fuser_warning,
        "frames": len(run.rows), "elapsed_s": elapsed,
        "frames_per_second": len(run.rows) / elapsed if elapsed > 0 else 0.0,
        "input_messages": nonzero("received"), "input_errors": nonzero("errors"),
        "oversize_frames": nonzero("oversize_frames"),
        "source_restarts": nonzero("source_restarts"), "inputs": inputs,
        "pairing": pairing, "pairing_keys": list(next(iter(pairing.values())).keys()),
        "memory_resets": sum(run.reset_reasons.values()),
        "reset_reasons": dict(run.reset_reasons),
        "metrics_every": args.metrics_every,
        "metrics": summarise(run.rows, frame_metrics),
        "config": config, "plots": plots,
    }
    write_report(folder, report, run.rows, frame_metrics)
    return report


def main(args) -> int:
    try:
        report = evaluate(args)
    except (ValueError, OSError) as error:  # bad bag, parameters, weights or output
        print(f"[evaluate] error: {error}; nothing written to {args.out}", file=sys.stderr)
        return 2
    fused = report["metrics"]["temporal_error_fused"]
    print(f"[evaluate] {report['frames']} fused frames with {report['fuser']} on "
          f"{report['device']} ({report['frames_per_second']:.1f} frames/s); "
          f"temporal error fused mean {_cell(fused['mean'])}; wrote {args.out}/report.md, "
          "report.json, frames.csv, " + ", ".join(report["plots"] + ["fused_bag/"]))
    return 0 if report["frames"] > 0 else 1
