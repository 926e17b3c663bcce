"""
Training clips from real infrared/visible data.

Layouts understood by ``discover`` (the shared data uses all of them):

* video pairs: ``<dir>/<scene>_infrared.mp4`` + ``<dir>/<scene>_visible.mp4`` (M3SVD);
* clip folders: ``<dir>/<scene>/{ir,vis}/*.png`` (M3SVD clips), or ``<dir>/{ir,vis}``;
* still pairs: ``<dir>/{ir,vi}/<name>.*`` matched by file stem (RoadScene, TNO).

A sample is a clip of T consecutive frames, cropped square (random size and scale),
randomly flipped and time-reversed.  Still pairs become clips with a synthetic camera
motion (pan, zoom, roll), whose flow is known exactly; for real sequences the flow comes
from cv2's DIS optical flow on the clean visible frames.  ``flow[t]`` maps frame t to
frame t-1 (``prev(x + flow(x)) ~ cur(x)``), ``valid[t]`` marks where it holds.

Decoded videos are cached as raw uint8 frames under ``cache_dir`` (outside the
repository; ~1.2 MB per 640x480 frame pair) so random access is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
import hashlib
import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from thermal_visible_fusion.training.degrade import degrade_clip, DegradeConfig

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
# scenes of the M3SVD evaluation clips (m3svd/clips); 0111_1716 is also one of the videos
EVAL_SCENES = ("0111_1716", "0111_1753", "0114_1551", "0114_1611", "0115_1831", "0115_1847")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "thermal_visible_fusion" / "frames"


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def read_image(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise IOError(f"cannot read image {path}")
    return image


# ----------------------------------------------------------------------------- sequences

class FrameSequence:
    """Registered IR/visible frames of one scene: ``frame(i) -> (ir gray, vis BGR)``."""

    scene: str

    def __len__(self) -> int:
        raise NotImplementedError

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class FolderSequence(FrameSequence):
    """Frames from two image folders; decoded frames are kept in memory (short clips)."""

    def __init__(self, ir_dir: Path, vis_dir: Path, scene: str):
        self.scene = scene
        ir, vis = _images(ir_dir), _images(vis_dir)
        if len(ir) != len(vis) or not ir:
            raise ValueError(f"{ir_dir} and {vis_dir} must hold the same number (> 0) of frames")
        self.ir, self.vis = ir, vis
        self.decoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.ir)

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self.decoded:
            self.decoded[i] = (read_image(self.ir[i], cv2.IMREAD_GRAYSCALE),
                               read_image(self.vis[i]))
        return self.decoded[i]


class VideoSequence(FrameSequence):
    """An mp4 pair, decoded once into raw frames (a memory map under ``cache_dir``, or RAM)."""

    def __init__(self, ir_path: Path, vis_path: Path, scene: str, cache_dir: Path | None):
        self.scene = scene
        self.ir = self._load(ir_path, gray=True, cache_dir=cache_dir)
        self.vis = self._load(vis_path, gray=False, cache_dir=cache_dir)
        self.length = min(len(self.ir), len(self.vis))
        if self.length == 0 or self.ir.shape[1:3] != self.vis.shape[1:3]:
            raise ValueError(f"{ir_path} and {vis_path} are not a registered pair "
                             f"({self.ir.shape} vs {self.vis.shape})")

    @staticmethod
    def _decode(path: Path, gray: bool, sink) -> tuple[int, tuple[int, ...]]:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise IOError(f"cannot open video {path}")
        count, shape = 0, None
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if gray:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            shape = frame.shape
            sink(np.ascontiguousarray(frame))
            count += 1
        cap.release()
        if count == 0:
            raise IOError(f"no frames decoded from {path}")
        return count, shape

    @classmethod
    def _load(cls, path: Path, gray: bool, cache_dir: Path | None) -> np.ndarray:
        if cache_dir is None:
            frames: list[np.ndarray] = []
            cls._decode(path, gray, frames.append)
            return np.stack(frames)
        stat = path.stat()
        tag = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{gray}".encode()
                           ).hexdigest()[:12]
        raw = Path(cache_dir) / f"{path.stem}-{tag}.u8"
        info = raw.with_suffix(".json")
        if not (raw.exists() and info.exists()):
            raw.parent.mkdir(parents=True, exist_ok=True)
            tmp = raw.with_name(raw.name + f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                count, shape = cls._decode(path, gray, lambda fr: f.write(fr.tobytes()))
            tmp.replace(raw)
            info.write_text(json.dumps({"count": count, "shape": list(shape)}))
        meta = json.loads(info.read_text())
        return np.memmap(raw, np.uint8, "r", shape=(meta["count"], *meta["shape"]))

    def __len__(self) -> int:
        return self.length

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.ir[i]), np.asarray(self.vis[i])


@dataclass
class StillPair:
    ir: Path
    vis: Path
    name: str

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        ir, vis = read_image(self.ir, cv2.IMREAD_GRAYSCALE), read_image(self.vis)
        if ir.shape != vis.shape[:2]:
            ir = cv2.resize(ir, (vis.shape[1], vis.shape[0]), interpolation=cv2.INTER_AREA)
        return ir, vis


def discover(path: str | Path, cache_dir: Path | None = None,
             exclude: tuple[str, ...] | list[str] = ()
             ) -> tuple[list[FrameSequence], list[StillPair]]:
    """Sequences and still pairs found under ``path`` (see the module doc for layouts)."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder not found: {root}")
    exclude = set(exclude)
    sequences: list[FrameSequence] = []
    stills: list[StillPair] = []
    video_dir = root / "videos" if (root / "videos").is_dir() else root
    for ir_path in sorted(video_dir.glob("*_infrared.mp4")):
        scene = ir_path.name[:-len("_infrared.mp4")]
        vis_path = video_dir / f"{scene}_visible.mp4"
        if vis_path.exists() and scene not in exclude:
            sequences.append(VideoSequence(ir_path, vis_path, scene, cache_dir))
    clip_dir = root / "clips" if (root / "clips").is_dir() else root
    if (clip_dir / "ir").is_dir() and (clip_dir / "vis").is_dir():
        if clip_dir.name not in exclude:
            sequences.append(FolderSequence(clip_dir / "ir", clip_dir / "vis", clip_dir.name))
    else:
        for scene_dir in sorted(p for p in clip_dir.iterdir() if p.is_dir()):
            if (scene_dir / "ir").is_dir() and (scene_dir / "vis").is_dir() \
                    and scene_dir.name not in exclude:
                sequences.append(FolderSequence(scene_dir / "ir", scene_dir / "vis",
                                                scene_dir.name))
    if (root / "ir").is_dir() and (root / "vi").is_dir():
        vis_by_stem = {p.stem: p for p in _images(root / "vi")}
        for ir_path in _images(root / "ir"):
            if ir_path.stem in vis_by_stem and ir_path.stem not in exclude:
                stills.append(StillPair(ir_path, vis_by_stem[ir_path.stem], ir_path.stem))
    found_layout = (any(video_dir.glob("*_infrared.mp4")) or (root / "vi").is_dir()
                    or (clip_dir / "ir").is_dir()
                    or any((p / "ir").is_dir() for p in clip_dir.iterdir() if p.is_dir()))
    if not found_layout:
        raise ValueError(f"no known data layout under {root} (expected *_infrared.mp4 + "
                         "*_visible.mp4 videos, <scene>/{ir,vis} clip folders or {ir,vi} stills)")
    return sequences, stills


# ----------------------------------------------------------------------------- sampling

@dataclass
class ClipConfig:
    clip_len: int = 4                  # frames per clip (T)
    crop_min: int = 128                # crop side range (multiples of 8 are drawn)
    crop_max: int = 192
    scale_min: float = 0.5             # frames are resized by a random factor in this range
    scale_max: float = 1.0
    max_step: int = 2                  # frame stride drawn from 1..max_step (faster motion)
    still_fraction: float = 0.3        # share of clips made from still pairs (if any)
    still_speed: float = 4.0           # synthetic pan speed bound, output pixels per frame
    still_zoom: float = 0.015          # synthetic zoom rate bound per frame
    still_roll: float = 0.6            # synthetic roll rate bound, degrees per frame
    flow_check: float = 24 / 255       # photometric error above which flow is marked invalid


def _dis():
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)


def _remap(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def _in_bounds(flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    x, y = gx + flow[..., 0], gy + flow[..., 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


class ClipSampler:
    """Draws batches of training clips (clean + degraded) from sequences and still pairs."""

    def __init__(self, sequences: list[FrameSequence], stills: list[StillPair],
                 clip: ClipConfig | None = None, degrade: DegradeConfig | None = None,
                 seed: int = 0):
        self.sequences = [s for s in sequences if len(s) >= 2]
        self.stills = stills
        if not self.sequences and not self.stills:
            raise ValueError("no training data: every source was empty or excluded")
        self.clip = clip or ClipConfig()
        self.degrade = degrade or DegradeConfig()
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.dis = _dis()
        lengths = np.array([len(s) for s in self.sequences], dtype=np.float64)
        self.seq_p = lengths / lengths.sum() if len(lengths) else None

    # -- sequences
    def _sequence_clip(self, size: int) -> tuple[list[np.ndarray], list[np.ndarray], list]:
        c, rng = self.clip, self.rng
        seq = self.sequences[rng.choice(len(self.sequences), p=self.seq_p)]
        t = c.clip_len
        step = int(rng.integers(1, c.max_step + 1))
        while step > 1 and (t - 1) * step >= len(seq):
            step -= 1
        span = min((t - 1) * step + 1, len(seq))
        start = int(rng.integers(0, len(seq) - span + 1))
        idx = [min(start + i * step, len(seq) - 1) for i in range(t)]
        ir0, _ = seq.frame(idx[0])
        h, w = ir0.shape
        scale = rng.uniform(c.scale_min, c.scale_max)
        side = min(int(round(size / scale)), h, w)  # source window side
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        irs, viss = [], []
        for i in idx:
            ir, vis = seq.frame(i)
            irs.append(cv2.resize(ir[y0:y0 + side, x0:x0 + side], (size, size),
                                  interpolation=cv2.INTER_AREA))
            viss.append(cv2.resize(vis[y0:y0 + side, x0:x0 + side], (size, size),
                                   interpolation=cv2.INTER_AREA))
        return irs, viss, None

    # -- stills with synthetic camera motion
    def _still_clip(self, size: int) -> tuple[list[np.ndarray], list[np.ndarray], list]:
        c, rng = self.clip, self.rng
        ir, vis = self.stills[int(rng.integers(len(self.stills)))].load()
        h, w = ir.shape
        t = c.clip_len
        scale = rng.uniform(c.scale_min, c.scale_max)
        scale = max(scale, size / (0.8 * min(h, w)))  # the window must fit with margin
        v = rng.uniform(-c.still_speed, c.still_speed, 2) / scale  # source px / frame
        zoom = rng.uniform(-c.still_zoom, c.still_zoom)
        roll = math.radians(rng.uniform(-c.still_roll, c.still_roll))
        mats = []
        for i in range(t):
            s = scale * (1 + zoom) ** i
            a = roll * i
            half = size / (2 * s) * (abs(math.cos(a)) + abs(math.sin(a)))  # half extent
            mats.append((s, a, half))
        extent = max(m[2] for m in mats)
        # every window centre c0 + v*i must stay >= extent from the image borders
        lo = extent - np.minimum(0, v * (t - 1))
        hi = np.array([w - 1, h - 1]) - extent - np.maximum(0, v * (t - 1))
        if np.any(hi < lo):  # no room for this pan: keep the camera still
            v = np.zeros(2)
            lo = np.full(2, extent)
            hi = np.maximum(lo, np.array([w - 1, h - 1]) - extent)
        center0 = rng.uniform(lo, hi)
        affines = []  # 2x3 maps output pixel -> source pixel
        for i, (s, a, _) in enumerate(mats):
            cx, cy = center0 + v * i
            ca, sa = math.cos(a) / s, math.sin(a) / s
            o = (size - 1) / 2
            affines.append(np.array([[ca, -sa, cx - ca * o + sa * o],
                                     [sa, ca, cy - sa * o - ca * o]], np.float64))
        irs = [cv2.warpAffine(ir, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT) for m in affines]
        viss = [cv2.warpAffine(vis, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT) for m in affines]
        gx, gy = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
        pts = np.stack([gx, gy, np.ones_like(gx)], -1)
        flows = [None]
        for i in range(1, t):
            # frame i pixel -> source -> frame i-1 pixel
            to_prev = np.linalg.inv(np.vstack([affines[i - 1], [0, 0, 1]]))
            composed = (to_prev @ np.vstack([affines[i], [0, 0, 1]]))[:2]
            back = pts @ composed.T
            flows.append(np.stack([back[..., 0] - gx, back[..., 1] - gy], -1).astype(np.float32))
        return irs, viss, flows

    def _flows(self, irs: list[np.ndarray], viss: list[np.ndarray], flows: list | None
               ) -> tuple[np.ndarray, np.ndarray]:
        t, size = len(irs), irs[0].shape[0]
        grays = [cv2.cvtColor(v, cv2.COLOR_BGR2GRAY) for v in viss]
        flow_out = np.zeros((t, 2, size, size), np.float32)
        valid_out = np.zeros((t, 1, size, size), np.float32)
        for i in range(1, t):
            flow = flows[i] if flows is not None else self.dis.calc(grays[i], grays[i - 1], None)
            valid = _in_bounds(flow)
            if flows is None:  # estimated flow: drop occlusions / failures
                thr = self.clip.flow_check * 255
                for cur, prev in ((grays[i], grays[i - 1]), (irs[i], irs[i - 1])):
                    err = np.abs(_remap(prev, flow).astype(np.float32) - cur.astype(np.float32))
                    valid &= err < thr
            flow_out[i] = flow.transpose(2, 0, 1)
            valid_out[i, 0] = valid
        return flow_out, valid_out

    def sample(self, size: int) -> dict[str, torch.Tensor]:
        c, rng = self.clip, self.rng
        use_still = bool(self.stills) and (not self.sequences or rng.random() < c.still_fraction)
        irs, viss, flows = self._still_clip(size) if use_still else self._sequence_clip(size)
        if rng.random() < 0.5:  # horizontal flip
            irs = [np.ascontiguousarray(x[:, ::-1]) for x in irs]
            viss = [np.ascontiguousarray(x[:, ::-1]) for x in viss]
            if flows is not None:
                flows = [None] + [np.ascontiguousarray(f[:, ::-1] * np.array([-1, 1], np.float32))
                                  for f in flows[1:]]
        if flows is None and rng.random() < 0.5:  # time reversal (the memory runs both ways)
            irs, viss = irs[::-1], viss[::-1]
        flow, valid = self._flows(irs, viss, flows)
        ir = torch.from_numpy(np.stack(irs)).float().div_(255).unsqueeze(1)
        rgb = np.stack(viss)[..., ::-1].copy()
        vis = torch.from_numpy(rgb).float().div_(255).permute(0, 3, 1, 2)
        ir_deg, vis_deg, vis = degrade_clip(ir, vis, self.degrade, self.gen)  # vis: target
        return {"ir": ir, "vis": vis, "ir_degraded": ir_deg, "vis_degraded": vis_deg,
                "flow": torch.from_numpy(flow), "valid": torch.from_numpy(valid)}

    def batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Return (B,T,C,S,S) tensors; RGB visible, [0, 1]; S drawn per batch, a multiple of 8."""
        lo, hi = self.clip.crop_min // 8, self.clip.crop_max // 8
        size = 8 * int(self.rng.integers(lo, max(lo, hi) + 1))
        clips = [self.sample(size) for _ in range(batch_size)]
        return {k: torch.stack([c[k] for c in clips]) for k in clips[0]}


class ClipBatches(torch.utils.data.IterableDataset):
    """Endless batches for a DataLoader (each worker gets its own seed)."""

    def __init__(self, make_sampler, batch_size: int, seed: int):
        self.make_sampler, self.batch_size, self.seed = make_sampler, batch_size, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        sampler = self.make_sampler(self.seed + (info.id * 7919 if info else 0))
        while True:
            yield sampler.batch(self.batch_size)
