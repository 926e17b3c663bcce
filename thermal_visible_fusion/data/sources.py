"""
Reading registered thermal/RGB input pairs, and writing side-by-side results.

Inputs are either two video files (anything ``cv2.VideoCapture`` reads, e.g. an mp4
pair) or two folders of frames (images sorted by name, naturally: ``2.png`` before
``10.png``).  A video for one camera and a folder for the other is also accepted, as
long as both are valid.  :func:`open_pair` gives a :class:`PairSource` that yields
:class:`FramePair` items:

* ``thermal``: (H, W) single channel; uint8, or uint16 when a frame file holds
  16-bit data (e.g. radiometric PNG/TIFF).  Colour thermal files are converted to
  grey.  Video frames are always uint8.
* ``rgb``: (H, W, 3) uint8 BGR (grey files are expanded, 16-bit files reduced).

The two streams are not resized or registered here; that is the engine's job.

:class:`SideBySideWriter` and :func:`tile` put thermal, RGB and fused frames next to
each other for viewing.
"""

from __future__ import annotations

from pathlib import Path
import re
from typing import Iterator, NamedTuple
import warnings

import cv2
import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "FramePair",
    "PairSource",
    "SideBySideWriter",
    "list_frames",
    "open_pair",
    "tile",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


class FramePair(NamedTuple):
    """
    One registered pair.

    ``index`` counts from 0; ``name`` is the frame file stem (folders) or the
    zero-padded index (videos).
    """

    index: int
    name: str
    thermal: np.ndarray
    rgb: np.ndarray


def _natural_key(path: Path) -> list:
    parts = re.split(r"(\d+)", path.name.lower())
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p != ""]


def list_frames(folder: str | Path) -> list[Path]:
    """
    List the image files directly in ``folder``, in natural name order.

    Image files directly in ``folder`` (extensions in :data:`IMAGE_EXTENSIONS`,
    any case), in natural name order.  May be empty; raises ``FileNotFoundError``
    when ``folder`` does not exist and ``NotADirectoryError`` when it is a file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"frame folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=_natural_key)


# ---------------------------------------------------------------------- readers


def _to_thermal(img: np.ndarray, where: str) -> np.ndarray:
    """Any decoded image -> (H, W) uint8/uint16 grey."""
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"unsupported thermal pixel type {img.dtype} in {where} "
                         "(need 8 or 16 bit)")
    return np.ascontiguousarray(img)


def _to_rgb(img: np.ndarray) -> np.ndarray:
    """Convert a decoded video frame to (H, W, 3) uint8 BGR."""
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


class _FolderReader:

    def __init__(self, folder: Path, thermal: bool) -> None:
        self.path = folder
        self.thermal = thermal
        self.files = list_frames(folder)
        if not self.files:
            exts = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise ValueError(f"no image frames ({exts}) in folder: {folder}")
        self.fps = None

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        return self.files[index].stem

    def frames(self) -> Iterator[np.ndarray]:
        for path in self.files:
            yield self.read(path)

    def read(self, path: Path) -> np.ndarray:
        flags = cv2.IMREAD_UNCHANGED if self.thermal else cv2.IMREAD_COLOR
        img = cv2.imread(str(path), flags)
        if img is None:
            raise ValueError(f"cannot read image: {path}")
        return _to_thermal(img, str(path)) if self.thermal else img

    def close(self) -> None:
        pass


class _VideoReader:

    def __init__(self, path: Path, thermal: bool) -> None:
        self.path = path
        self.thermal = thermal
        cap = self._open()
        try:
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and fps > 0 else None
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            cap.release()
        self._count = count if count > 0 else None
        self._cap: cv2.VideoCapture | None = None

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise ValueError(f"cannot open video: {self.path}")
        return cap

    def __len__(self) -> int:
        if self._count is None:          # container gave no count: decode once to count
            cap = self._open()
            n = 0
            while cap.grab():
                n += 1
            cap.release()
            self._count = n
        return self._count

    def frames(self) -> Iterator[np.ndarray]:
        self.close()
        self._cap = cap = self._open()
        while True:
            ok, img = cap.read()
            if not ok or img is None:
                return
            yield _to_thermal(img, str(self.path)) if self.thermal else _to_rgb(img)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _reader(path: str | Path, thermal: bool):
    path = Path(path)
    role = "thermal" if thermal else "RGB"
    if not path.exists():
        raise FileNotFoundError(f"{role} input not found: {path}")
    if path.is_dir():
        return _FolderReader(path, thermal)
    return _VideoReader(path, thermal)


class PairSource:
    """
    Registered thermal/RGB frame pairs from two videos or two frame folders.

    ``len()`` is the number of pairs: the shorter of the two streams (extra frames
    of the longer one are ignored).  For videos it comes from the container's frame
    count; should a stream end early, iteration stops there and ``incomplete`` says
    which stream stopped at which frame (None after a complete pass).  Each ``iter()``
    starts again from the first pair.  ``fps`` is the thermal video's frame rate
    (the RGB one's if only RGB is a video), or ``None`` for two folders.
    """

    def __init__(self, ir: str | Path, rgb: str | Path) -> None:
        self.ir_path = Path(ir)
        self.rgb_path = Path(rgb)
        self._ir = _reader(ir, thermal=True)
        try:
            self._rgb = _reader(rgb, thermal=False)
        except Exception:
            self._ir.close()
            raise
        self.fps: float | None = self._ir.fps if self._ir.fps is not None else self._rgb.fps
        self.incomplete: str | None = None

    def __len__(self) -> int:
        return min(len(self._ir), len(self._rgb))

    def _name(self, index: int, width: int) -> str:
        for reader in (self._ir, self._rgb):
            if isinstance(reader, _FolderReader):
                return reader.name(index)
        return f"{index:0{width}d}"

    def __iter__(self) -> Iterator[FramePair]:
        n = len(self)
        width = max(4, len(str(max(n - 1, 0))))
        self.incomplete = None
        streams = (("thermal", self._ir, self._ir.frames()),
                   ("RGB", self._rgb, self._rgb.frames()))
        for index in range(n):
            frames = []
            for role, reader, frames_of in streams:
                frame = next(frames_of, None)
                if frame is None:  # the container promised more: say where it stopped
                    self.incomplete = (f"{role} input {reader.path}: decoding stopped at frame "
                                       f"{index} of {n}")
                    return
                frames.append(frame)
            yield FramePair(index, self._name(index, width), *frames)

    def close(self) -> None:
        self._ir.close()
        self._rgb.close()

    def __enter__(self) -> "PairSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PairSource(ir={str(self.ir_path)!r}, rgb={str(self.rgb_path)!r})"


def open_pair(ir: str | Path, rgb: str | Path) -> PairSource:
    """
    Open a thermal (``ir``) and an RGB input: two videos, two frame folders, or one of each.

    Raises ``FileNotFoundError`` for a missing path and ``ValueError`` for an empty
    folder or a video that cannot be opened; the message names the path.
    """
    return PairSource(ir, rgb)


# ---------------------------------------------------------------------- output


def _to_display(img: np.ndarray) -> np.ndarray:
    """
    Any (H, W) or (H, W, 3) image -> (H, W, 3) uint8 BGR for viewing.

    Images that are not 8 bit (16-bit thermal, float) are min-max stretched to
    0..255.
    """
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.dtype != np.uint8:
        img = img.astype(np.float32)
        lo, hi = (float(img.min()), float(img.max())) if img.size else (0.0, 0.0)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = cv2.convertScaleAbs(img - lo, alpha=scale)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def _label(img: np.ndarray, text: str) -> None:
    scale = max(0.4, img.shape[0] / 960.0)
    thick = max(1, int(round(scale * 1.5)))
    org = (int(6 * scale) + 4, int(22 * scale) + 4)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                cv2.LINE_AA)


def tile(thermal: np.ndarray, rgb: np.ndarray, fused: np.ndarray,
         labels: bool = True) -> np.ndarray:
    """
    Put thermal, RGB and fused frames side by side as one image.

    Thermal | RGB | fused side by side as one (H, 3W, 3) uint8 BGR image, with all
    three resized to the fused frame's size.  Thermal is shown as grey (colour
    thermal is converted, 16-bit thermal min-max stretched to 8 bit); a grey fused
    frame is expanded to BGR.
    """
    h, w = fused.shape[:2]
    panels = []
    for img, text in ((thermal, "thermal"), (rgb, "visible"), (fused, "fused")):
        if img is thermal and img.ndim == 3:
            img = _to_thermal(img, "thermal frame") if img.dtype in (np.uint8, np.uint16) else img
        img = _to_display(img)
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        elif labels:
            img = img.copy()            # do not draw on the caller's frame
        if labels:
            _label(img, text)
        panels.append(img)
    return np.hstack(panels)


class SideBySideWriter:
    """
    Writes thermal | RGB | fused tiles (see :func:`tile`) into an mp4 ('mp4v').

    The video is opened at the first frame (its size is that tile's size; later
    tiles of another size are resized).  If OpenCV cannot open a video writer, the
    tiles go to a folder of PNGs instead, named after ``out_path`` without its
    suffix (``run.mp4`` -> ``run/000000.png``); ``path`` and ``fallback`` tell which.
    """

    def __init__(self, out_path: str | Path, fps: float = 30.0, labels: bool = True) -> None:
        self.out_path = Path(out_path)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.labels = labels
        self.path: Path = self.out_path
        self.fallback = False
        self.frames_written = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def _open(self, size: tuple[int, int]) -> None:
        self._size = size
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(self.out_path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                 size)
        if writer.isOpened():
            self._writer = writer
            return
        writer.release()
        self.fallback = True
        self.path = self.out_path.with_suffix("")
        self.path.mkdir(parents=True, exist_ok=True)
        warnings.warn(f"cannot open a video writer for {self.out_path}; "
                      f"writing PNG frames to {self.path}",
                      RuntimeWarning, stacklevel=3)

    def write(self, thermal: np.ndarray, rgb: np.ndarray, fused: np.ndarray) -> None:
        self.write_tile(tile(thermal, rgb, fused, labels=self.labels))

    def write_tile(self, image: np.ndarray) -> None:
        """Write an already tiled (H, W, 3) uint8 BGR image."""
        h, w = image.shape[:2]
        if self._size is None:
            self._open((w, h))
        elif (w, h) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        if self._writer is not None:
            self._writer.write(np.ascontiguousarray(image))
        else:
            out = self.path / f"{self.frames_written:06d}.png"
            if not cv2.imwrite(str(out), image):
                raise OSError(f"cannot write {out}")
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "SideBySideWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
