"""
Read and write rosbag2 bags of camera images with ``rosbags`` (pure Python, no ROS).

Used by ``tvf make-bag``, ``tvf evaluate`` and ``tvf replay``.  Bags are
rosbag2 version 9 in the ``mcap`` (default) or ``sqlite3`` storage, readable by
``ros2 bag`` (Humble and newer) and by ``rosbags``.  Messages are serialized
with the ROS 2 Humble type store; ``sensor_msgs/Image``, ``CameraInfo`` and
``diagnostic_msgs/DiagnosticArray`` are identical in every later distribution.

Images go through :mod:`thermal_visible_fusion.stream.image_codec`, so every encoding
the node accepts (mono8/16, 32FC1, bgr8/16, rgb8, Bayer, yuv422, ...) can be read,
from ``sensor_msgs/Image`` and from ``sensor_msgs/CompressedImage`` (image_transport's
``compressed`` and ``compressedDepth`` formats) alike; images can be written either way.

Calibration files are the YAML that ``camera_calibration`` writes
(``image_width``, ``image_height``, ``camera_name``, ``camera_matrix``,
``distortion_model``, ``distortion_coefficients``, ``rectification_matrix``,
``projection_matrix``; matrices as ``{rows, cols, data}``).  A file may hold one
camera, or both under top-level ``thermal:`` and ``rgb:`` keys
(:func:`load_calibrations`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
import heapq
import itertools
from pathlib import Path
import re
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from thermal_visible_fusion.stream.image_codec import (decode_compressed, decode_compressed_rgb,
                                                       decode_compressed_thermal, decode_image,
                                                       decode_rgb, decode_thermal,
                                                       encode_compressed, encode_image)

__all__ = [
    "CAMERA_INFO", "COMPRESSED_IMAGE", "COMPRESSED_TRANSPORTS", "DIAGNOSTIC_ARRAY", "IMAGE",
    "IMAGE_TYPES", "STORAGES",
    "BagImage", "BagWriter", "CameraCalibration", "Status",
    "bag_topics", "base_topic", "compressed_image_message", "compressed_topic",
    "decode_image_message", "guess_pair_topics",
    "image_message", "image_topics", "load_calibrations", "open_reader", "progress",
    "read_images", "stamp_ns_of", "to_compressed", "to_raw", "typestore",
]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
STORAGES = ("mcap", "sqlite3")

# image_transport's sensor_msgs/CompressedImage forms: the last name of their topics
# (``<base topic>/compressed``); _TRANSPORTS also holds those of other message types.
COMPRESSED_TRANSPORTS = ("compressed", "compressedDepth")
_TRANSPORTS = {*COMPRESSED_TRANSPORTS, "theora", "zstd", "ffmpeg"}
_THERMAL_WORDS = {"thermal", "ir", "infrared", "lwir", "mwir", "flir", "therm"}
_RGB_WORDS = {"rgb", "color", "colour", "visible", "vis", "vi", "bgr", "visual"}


@lru_cache(maxsize=1)
def typestore():
    """Return the rosbags type store used for (de)serializing (ROS 2 Humble, else the latest)."""
    from rosbags.typesys import Stores, get_typestore
    store = getattr(Stores, "ROS2_HUMBLE", None) or Stores.LATEST
    return get_typestore(store)


def split_ns(stamp_ns: int) -> tuple[int, int]:
    stamp_ns = int(stamp_ns)
    return stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000


def stamp_ns_of(msg: Any) -> int:
    """Header stamp of a deserialized message, in ns."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _header(stamp_ns: int, frame_id: str):
    types = typestore().types
    sec, nanosec = split_ns(stamp_ns)
    return types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id)


# ----------------------------------------------------------------- calibration


@dataclass(frozen=True)
class CameraCalibration:
    """One camera's ``sensor_msgs/CameraInfo`` contents (row-major matrices)."""

    width: int
    height: int
    camera_name: str = ""
    distortion_model: str = "plumb_bob"
    d: tuple[float, ...] = ()
    k: tuple[float, ...] = (0.0,) * 9
    r: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    p: tuple[float, ...] = (0.0,) * 12

    @classmethod
    def from_yaml_dict(cls, data: Mapping[str, Any],
                       where: str = "calibration") -> "CameraCalibration":
        def matrix(key: str, size: int | None, default):
            entry = data.get(key)
            if entry is None:
                return default
            values = entry.get("data", []) if isinstance(entry, Mapping) else entry
            values = tuple(float(v) for v in values or [])
            if size is not None and len(values) != size:
                raise ValueError(f"{where}: {key} must have {size} values, got {len(values)}")
            return values

        try:
            width, height = int(data["image_width"]), int(data["image_height"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: needs integer image_width and image_height") from None
        defaults = cls(width, height)
        return cls(width=width, height=height,
                   camera_name=str(data.get("camera_name", "") or ""),
                   distortion_model=str(data.get("distortion_model", "plumb_bob") or "plumb_bob"),
                   d=matrix("distortion_coefficients", None, ()),
                   k=matrix("camera_matrix", 9, defaults.k),
                   r=matrix("rectification_matrix", 9, defaults.r),
                   p=matrix("projection_matrix", 12, defaults.p))

    def message(self, stamp_ns: int, frame_id: str):
        """Return a rosbags ``sensor_msgs/msg/CameraInfo``."""
        types = typestore().types
        roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                        do_rectify=False)
        return types[CAMERA_INFO](
            header=_header(stamp_ns, frame_id), height=self.height, width=self.width,
            distortion_model=self.distortion_model, d=np.asarray(self.d, np.float64),
            k=np.asarray(self.k, np.float64), r=np.asarray(self.r, np.float64),
            p=np.asarray(self.p, np.float64), binning_x=0, binning_y=0, roi=roi)


def load_calibrations(path: str | Path) -> dict[str, CameraCalibration]:
    """
    Read a camera_info YAML.

    ``{"thermal": ..., "rgb": ...}`` when the file has ``thermal:`` and/or ``rgb:``
    sections, else ``{"camera": ...}`` for a one-camera file.
    """
    import yaml

    path = Path(path)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: not a camera calibration YAML mapping")
    sections = {k: data[k] for k in ("thermal", "rgb") if isinstance(data.get(k), Mapping)}
    if sections:
        return {k: CameraCalibration.from_yaml_dict(v, f"{path} [{k}]")
                for k, v in sections.items()}
    return {"camera": CameraCalibration.from_yaml_dict(data, str(path))}


# ------------------------------------------------------------------- writing


@dataclass(frozen=True)
class Status:
    """One ``diagnostic_msgs/DiagnosticStatus``; ``values`` are already strings."""

    name: str
    message: str = ""
    level: int = 0
    hardware_id: str = ""
    values: Mapping[str, str] = field(default_factory=dict)


class BagWriter:
    """
    Write a rosbag2 bag; use as a context manager.

    ``reorder=True`` keeps messages in a heap and writes them in log-time order
    when :meth:`release_before` is called (and at :meth:`close`), for callers that
    produce messages slightly out of order (e.g. fused frames that wait for
    pairing).  Otherwise messages are written as they come.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", reorder: bool = False):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise ValueError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")
        self.path = Path(path)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self._reorder = reorder
        self._heap: list[tuple[int, int, str, bytes]] = []
        self._seq = itertools.count()
        self.counts: dict[str, int] = {}

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # connections
    def add_topic(self, topic: str, msgtype: str, *, msgdef: str | None = None,
                  rihs01: str | None = None, offered_qos_profiles: Sequence = ()) -> None:
        """
        Register ``topic`` (done automatically on the first write of a known type).

        Pass ``msgdef``/``rihs01`` to copy a connection of a type the store lacks.
        """
        existing = self._connections.get(topic)
        if existing is not None:
            if existing.msgtype != msgtype:
                raise ValueError(f"topic {topic} already has type {existing.msgtype}, "
                                 f"not {msgtype}")
            return
        kwargs: dict[str, Any] = {"offered_qos_profiles": offered_qos_profiles}
        if msgdef is not None and rihs01:
            kwargs.update(msgdef=msgdef, rihs01=rihs01)
        else:
            kwargs["typestore"] = typestore()
        self._connections[topic] = self._writer.add_connection(topic, msgtype, **kwargs)

    def copy_topic(self, connection) -> None:
        """Register a topic exactly as a reader's ``Connection`` describes it."""
        msgdef = getattr(getattr(connection, "msgdef", None), "data", None)
        qos = getattr(connection.ext, "offered_qos_profiles", ()) or ()
        if connection.msgtype in typestore().types or not msgdef:
            self.add_topic(connection.topic, connection.msgtype, offered_qos_profiles=qos)
        else:
            self.add_topic(connection.topic, connection.msgtype, msgdef=msgdef,
                           rihs01=connection.digest, offered_qos_profiles=qos)

    # messages
    def write_raw(self, topic: str, msgtype: str, log_time_ns: int,
                  raw: bytes | memoryview) -> None:
        """Write CDR bytes (``topic`` must have been registered, or be of a known type)."""
        if topic not in self._connections:
            self.add_topic(topic, msgtype)
        if self._reorder:
            heapq.heappush(self._heap, (int(log_time_ns), next(self._seq), topic, bytes(raw)))
        else:
            self._write(topic, int(log_time_ns), raw)

    def write_message(self, topic: str, msg: Any, log_time_ns: int) -> None:
        msgtype = msg.__msgtype__
        self.write_raw(topic, msgtype, log_time_ns, typestore().serialize_cdr(msg, msgtype))

    def write_image(self, topic: str, image: np.ndarray, stamp_ns: int, frame_id: str,
                    log_time_ns: int | None = None, compressed: bool = False,
                    quality: int = 90) -> None:
        """
        Write an image message.

        (H, W, 3) uint8 -> bgr8; (H, W) uint8/uint16/float32 -> mono8/mono16/32FC1;
        ``compressed``: a CompressedImage instead (see :func:`compressed_image_message`),
        on the ``topic`` given (name it ``.../compressed`` by image_transport's convention).
        """
        msg = (compressed_image_message(image, stamp_ns, frame_id, quality) if compressed
               else image_message(image, stamp_ns, frame_id))
        self.write_message(topic, msg, stamp_ns if log_time_ns is None else log_time_ns)

    def write_camera_info(self, topic: str, calibration: CameraCalibration, stamp_ns: int,
                          frame_id: str, log_time_ns: int | None = None) -> None:
        self.write_message(topic, calibration.message(stamp_ns, frame_id),
                           stamp_ns if log_time_ns is None else log_time_ns)

    def write_diagnostics(self, topic: str, statuses: Iterable[Status], stamp_ns: int,
                          frame_id: str = "", log_time_ns: int | None = None) -> None:
        self.write_message(topic, diagnostic_array(statuses, stamp_ns, frame_id),
                           stamp_ns if log_time_ns is None else log_time_ns)

    def release_before(self, log_time_ns: int) -> None:
        """Write every held message with a log time strictly before ``log_time_ns``."""
        while self._heap and self._heap[0][0] < log_time_ns:
            time_ns, _, topic, raw = heapq.heappop(self._heap)
            self._write(topic, time_ns, raw)

    def _write(self, topic: str, log_time_ns: int, raw) -> None:
        self._writer.write(self._connections[topic], log_time_ns, raw)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        if self._writer is None:
            return
        try:
            while self._heap:
                time_ns, _, topic, raw = heapq.heappop(self._heap)
                self._write(topic, time_ns, raw)
        finally:
            self._writer.close()
            self._writer = None


def image_message(image: np.ndarray, stamp_ns: int, frame_id: str):
    """Return a rosbags ``sensor_msgs/msg/Image`` of ``image`` (see :func:`encode_image`)."""
    encoding, step, data = encode_image(image)
    return typestore().types[IMAGE](
        header=_header(stamp_ns, frame_id), height=int(image.shape[0]), width=int(image.shape[1]),
        encoding=encoding, is_bigendian=0, step=step, data=np.frombuffer(data, np.uint8))


def compressed_image_message(image: np.ndarray, stamp_ns: int, frame_id: str, quality: int = 90):
    """
    Return a rosbags ``sensor_msgs/msg/CompressedImage`` as the ``compressed`` plugin writes it.

    BGR or mono8 as JPEG, mono16 as PNG (see :func:`encode_compressed`).
    """
    format_, data = encode_compressed(image, quality)
    return typestore().types[COMPRESSED_IMAGE](header=_header(stamp_ns, frame_id), format=format_,
                                               data=np.frombuffer(data, np.uint8))


def to_raw(msg: Any):
    """
    Return an Image of a deserialized CompressedImage (stamp and frame_id kept).

    Grey stays grey at its depth (mono8, mono16, 32FC1), colour becomes bgr8 (16-bit
    >> 8).
    """
    image = decode_compressed(msg.format, msg.data)
    return image_message(image, stamp_ns_of(msg), msg.header.frame_id)


def to_compressed(msg: Any, quality: int = 90):
    """
    Return a CompressedImage of a deserialized Image (stamp and frame_id kept).

    Colour as "bgr8; jpeg compressed bgr8", mono8 as JPEG, mono16 as PNG.  Float
    (32FC1) has no such format: ``ImageFormatError``.
    """
    image = decode_image(msg.encoding, msg.height, msg.width, msg.step,
                         bool(msg.is_bigendian), msg.data)
    return compressed_image_message(image, stamp_ns_of(msg), msg.header.frame_id, quality)


def diagnostic_array(statuses: Iterable[Status], stamp_ns: int, frame_id: str = ""):
    types = typestore().types
    key_value = types["diagnostic_msgs/msg/KeyValue"]
    status_type = types["diagnostic_msgs/msg/DiagnosticStatus"]
    status = [status_type(level=int(s.level),
                          name=s.name, message=s.message, hardware_id=s.hardware_id,
                          values=[key_value(key=str(k), value=str(v))
                                  for k, v in s.values.items()])
              for s in statuses]
    return types[DIAGNOSTIC_ARRAY](header=_header(stamp_ns, frame_id), status=status)


# ------------------------------------------------------------------- reading


def open_reader(path: str | Path):
    """Open a ``rosbags.rosbag2.Reader`` (close it, or use it in ``with``)."""
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as error:  # truncated or corrupt storage, bad metadata.yaml
        raise BagReadError(path, error) from error
    return reader


class BagReadError(ValueError):
    """A bag that cannot be read (truncated, corrupt); one line naming it."""

    def __init__(self, path: str | Path, error: BaseException):
        reason = str(error).splitlines()[0].rstrip(".") if str(error) else type(error).__name__
        super().__init__(f"cannot read bag {path}: {reason}")


def read_messages(reader, path: str | Path, **kwargs) -> Iterator[tuple]:
    """
    Iterate ``reader.messages(**kwargs)``, raising a failure of the bag as ``BagReadError``.

    ``reader.messages(**kwargs)``, with a failure of the bag (a chunk cut short)
    raised as ``BagReadError`` and the caller's own errors left as they are.
    """
    messages = reader.messages(**kwargs)
    while True:
        try:
            item = next(messages)
        except StopIteration:
            return
        except Exception as error:
            raise BagReadError(path, error) from error
        yield item


def base_topic(topic: str) -> str:
    """``/rgb/image_raw/compressed`` -> ``/rgb/image_raw``; other names unchanged."""
    for transport in COMPRESSED_TRANSPORTS:
        suffix = f"/{transport}"
        if topic.endswith(suffix) and len(topic) > len(suffix):
            return topic[: -len(suffix)]
    return topic


def compressed_topic(topic: str) -> str:
    """``/rgb/image_raw`` -> ``/rgb/image_raw/compressed``: image_transport's name."""
    return f"{topic.rstrip('/')}/compressed"


def bag_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """``{topic: (msgtype, message count)}`` of a bag."""
    reader = open_reader(path)
    try:
        return {topic: (info.msgtype, info.msgcount) for topic, info in reader.topics.items()}
    finally:
        reader.close()


def image_topics(path: str | Path) -> dict[str, int]:
    """``{topic: message count}`` of the bag's ``Image`` and ``CompressedImage`` topics."""
    return {t: n for t, (msgtype, n) in bag_topics(path).items() if msgtype in IMAGE_TYPES}


def _words(topic: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", topic.lower()) if w}


def guess_pair_topics(topics: Iterable[str], thermal: str | None = None,
                      rgb: str | None = None) -> tuple[str, str]:
    """
    Pick the thermal and RGB image topics by name, unless given.

    Thermal: a name part ``thermal``, ``ir``, ``infrared``, ``lwir`` ...; RGB: ``rgb``,
    ``color``, ``visible``, ``vis`` ...  Raises ``ValueError`` when none or several
    topics match a role (name it explicitly then).
    """
    topics = list(topics)
    chosen = {"thermal": thermal, "rgb": rgb}
    for role, words in (("thermal", _THERMAL_WORDS), ("rgb", _RGB_WORDS)):
        if chosen[role]:
            if chosen[role] not in topics:
                raise ValueError(f"{role} topic {chosen[role]} is not an image topic of the bag "
                                 f"(image topics: {', '.join(topics) or 'none'})")
            continue
        others = {v for v in chosen.values() if v}
        matches = [t for t in topics if _words(t) & words and t not in others]
        if len(matches) > 1:  # prefer raw images over e.g. rectified or fused ones
            raw = [t for t in matches if "raw" in _words(t)]
            matches = raw or matches
        if len(matches) > 1:  # recorded both ways: the Image, not image_transport's copies
            plain = [t for t in matches if t.rstrip("/").rsplit("/", 1)[-1] not in _TRANSPORTS]
            matches = plain or matches
        if len(matches) != 1:
            what = "no" if not matches else "several"
            raise ValueError(f"{what} {role} image topic{'s' if matches else ''} found "
                             f"({', '.join(matches) or ', '.join(topics) or 'no image topics'}); "
                             f"pass --{role}-topic")
        chosen[role] = matches[0]
    return chosen["thermal"], chosen["rgb"]  # type: ignore[return-value]


def decode_image_message(msg: Any, role: str | None = None,
                         max_pixels: int | None = None) -> np.ndarray:
    """
    Decode a deserialized Image or CompressedImage to a numpy array, as the node does.

    ``role="thermal"`` gives (H, W) (colour thermal becomes its luma), ``"rgb"``
    (H, W, 3) BGR uint8, ``None`` grey as grey and colour as BGR.  Bad data raises
    ``ImageFormatError``.
    """
    if hasattr(msg, "format"):  # CompressedImage
        decode = {"thermal": decode_compressed_thermal, "rgb": decode_compressed_rgb}.get(
            role, decode_compressed)
        return decode(msg.format, msg.data, max_pixels=max_pixels)
    decode = {"thermal": decode_thermal, "rgb": decode_rgb}.get(role, decode_image)
    return decode(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian),
                  msg.data, max_pixels=max_pixels)


@dataclass(frozen=True)
class BagImage:
    """One image read from a bag (``encoding``: a CompressedImage's ``format``)."""

    topic: str
    log_time_ns: int
    stamp_ns: int
    frame_id: str
    encoding: str
    image: np.ndarray


def read_images(path: str | Path, topics: Iterable[str] | None = None,
                roles: Mapping[str, str] | None = None) -> Iterator[BagImage]:
    """
    Image and CompressedImage messages of ``topics`` (default: all) in log-time order.

    ``roles`` maps a topic to ``"thermal"`` or ``"rgb"`` for
    :func:`decode_image_message`.
    """
    roles = roles or {}
    store = typestore()
    reader = open_reader(path)
    try:
        wanted = set(topics) if topics is not None else None
        connections = [c for c in reader.connections if c.msgtype in IMAGE_TYPES
                       and (wanted is None or c.topic in wanted)]
        if not connections:
            return
        for connection, log_time, raw in read_messages(reader, path, connections=connections):
            msg = store.deserialize_cdr(raw, connection.msgtype)
            yield BagImage(connection.topic, log_time, stamp_ns_of(msg), msg.header.frame_id,
                           msg.format if hasattr(msg, "format") else msg.encoding,
                           decode_image_message(msg, roles.get(connection.topic)))
    finally:
        reader.close()


# ------------------------------------------------------------------- progress


class progress:
    """
    Iterate with a progress bar on stderr.

    ``tqdm`` when installed, else a plain line every ~2 s (only when stderr is a
    terminal or ``always`` is set).
    """

    def __init__(self, iterable: Iterable, total: int | None = None, desc: str = "",
                 unit: str = "frame", always: bool = False):
        import sys
        import time

        self._iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self._time = time.monotonic
        self._stream = sys.stderr
        self._tqdm = None
        interactive = always or getattr(sys.stderr, "isatty", lambda: False)()
        self._enabled = interactive
        if interactive:
            try:
                from tqdm import tqdm
                self._tqdm = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)
            except ImportError:
                pass

    def __iter__(self):
        start = last = self._time()
        count = 0
        for item in self._iterable:
            yield item
            count += 1
            if self._tqdm is not None:
                self._tqdm.update(1)
            elif self._enabled and self._time() - last >= 2.0:
                last = self._time()
                self._print(count, last - start)
        if self._tqdm is not None:
            self._tqdm.close()
        elif self._enabled and count:
            self._print(count, self._time() - start, final=True)

    def _print(self, count: int, elapsed: float, final: bool = False) -> None:
        of = f"/{self.total}" if self.total else ""
        rate = count / elapsed if elapsed > 0 else 0.0
        print(f"\r{self.desc}: {count}{of} {self.unit}s ({rate:.1f}/s)", end="\n" if final else "",
              file=self._stream, flush=True)
