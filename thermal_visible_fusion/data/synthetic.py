"""
A built-in thermal + visible demo scene that needs no external data.

:class:`SyntheticScene` renders a registered pair for any frame index: a street at
dusk with warm people walking across it and an idling car, seen by a thermal camera
and by an RGB camera.  Drifting smoke and a dark, unlit region hide the people in
the RGB view while the thermal view still shows them, which is the case fusion is
for.  Both sensors get their own noise (thermal: Gaussian plus a fixed column
pattern; RGB: Gaussian, stronger where it is dark) and share the same small camera
shake, because the pair is registered.

Everything static (background layers, walking-pose sprites, noise banks, the smoke
texture) is built once in ``__init__``; a frame only shifts and composes those, so
``frame()`` stays within a few milliseconds at 640x480.  Frames are deterministic
for ``(seed, index)`` and can be rendered in any order.

Ground truth for tests and demos: :meth:`SyntheticScene.figure_mask`,
:meth:`SyntheticScene.figure_boxes`, :meth:`SyntheticScene.rgb_visibility` and
``frame(index, figures=False)`` (the same frame, noise included, without people).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import cv2
import numpy as np

__all__ = ["SyntheticScene", "THERMAL16_OFFSET", "THERMAL16_SPAN"]

# 16-bit radiometric-like counts: scene "temperature" t in [0, 1] -> OFFSET + t * SPAN.
THERMAL16_OFFSET = 7000
THERMAL16_SPAN = 2000

_PAD = 8            # margin of the static layers, room for the camera shake
_SHAKE_PX = 3.0     # camera-shake amplitude (pixels, per axis)
_NOISE_PAD = 48     # the thermal noise bank is this much larger than the frame
_RGB_NOISE_PAD = 8  # the RGB bank moves less: its noise level follows the dark region
_POSES = 12         # walking poses per gait cycle
_SMOKE_DOWN = 4     # the smoke field is computed at 1/4 resolution, then upscaled


@dataclass(frozen=True)
class _Sprite:
    """One pre-rendered pose: premultiplied value(s) and alpha, anchored at the feet."""

    alpha: np.ndarray    # (h, w) float32 in [0, 1]
    inv_alpha: np.ndarray  # (h, w) float32, 1 - alpha
    therm: np.ndarray    # (h, w) float32, premultiplied thermal value (0..1 scale)
    color: np.ndarray    # (3, h, w) float32, premultiplied B, G, R planes (0..255 scale)


@dataclass(frozen=True)
class _Actor:
    kind: str            # "figure" or "vehicle"
    x0: float            # world x of the anchor at frame 0
    y_feet: float        # world y of the ground contact
    vx: float            # px per frame (negative = walking left)
    phase0: float        # gait phase offset (figures)
    stride: float        # px travelled per gait cycle (figures)
    sprites: tuple       # tuple[_Sprite, ...], facing the direction of motion


class SyntheticScene:
    """
    Deterministic street scene at dusk, seen by registered thermal and RGB cameras.

    ``frame(index)`` returns ``(thermal, rgb)``: thermal (H, W) uint8 (or uint16 counts
    around 7000-9000 when ``thermal_dtype="uint16"``) and rgb (H, W, 3) uint8 BGR.
    ``fps`` is only metadata for callers (time = index / fps); motion is defined
    per frame.
    """

    def __init__(self, width: int = 640, height: int = 480, seed: int = 0, fps: float = 30.0,
                 thermal_dtype: str = "uint8") -> None:
        if width < 64 or height < 48:
            raise ValueError(f"scene too small: {width}x{height} (minimum 64x48)")
        if thermal_dtype not in ("uint8", "uint16"):
            raise ValueError(f"thermal_dtype must be 'uint8' or 'uint16', not {thermal_dtype!r}")
        self.width = int(width)
        self.height = int(height)
        self.seed = int(seed)
        self.fps = float(fps)
        self.thermal_dtype = thermal_dtype
        rng = np.random.default_rng([self.seed, 0x7F5])
        self._horizon = 0.45 * self.height
        self._build_background(rng)
        self._build_actors(rng)
        self._build_darkness()
        self._build_noise(rng)
        self._build_smoke(rng)
        self._shake_phase = rng.uniform(0.0, 2.0 * math.pi, size=4)

    # ------------------------------------------------------------------ public API

    def frame(self, index: int, figures: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """
        Return ``(thermal, rgb)`` for frame ``index``.

        ``figures=False`` renders the identical frame (same shake, smoke, noise)
        without the people, which lets tests measure how visible they are.
        """
        t, smoke_full, gain = self._thermal_float(index, figures)
        thermal = self._thermal_out(t, self.thermal_dtype)
        rgb = self._rgb(index, figures, smoke_full, gain)
        return thermal, rgb

    def thermal16(self, index: int, figures: bool = True) -> np.ndarray:
        """Return the thermal frame as uint16 radiometric-like counts (about 7000-9000)."""
        t, _, _ = self._thermal_float(index, figures)
        return self._thermal_out(t, "uint16")

    def shake(self, index: int) -> tuple[int, int]:
        """Camera shake ``(dx, dy)`` in pixels at frame ``index`` (same for both cameras)."""
        a, b, c, d = self._shake_phase
        i = float(index)
        dx = _SHAKE_PX * (0.65 * math.sin(2 * math.pi * i / 41.0 + a)
                          + 0.35 * math.sin(2 * math.pi * i / 13.0 + b))
        dy = _SHAKE_PX * (0.65 * math.sin(2 * math.pi * i / 53.0 + c)
                          + 0.35 * math.sin(2 * math.pi * i / 17.0 + d))
        return int(round(dx)), int(round(dy))

    @property
    def num_figures(self) -> int:
        return sum(1 for a in self._actors if a.kind == "figure")

    def figure_boxes(self, index: int) -> list[tuple[int, int, int, int]]:
        """
        Return the boxes of the people visible at ``index``.

        Boxes ``(x0, y0, x1, y1)`` (clipped to the frame, x1/y1 exclusive) of the
        people visible at ``index``; people fully outside the frame are left out.
        """
        boxes = []
        for actor in self._actors:
            if actor.kind != "figure":
                continue
            sprite, x, y = self._placement(actor, index)
            h, w = sprite.alpha.shape
            x0, y0 = max(x, 0), max(y, 0)
            x1, y1 = min(x + w, self.width), min(y + h, self.height)
            if x1 > x0 and y1 > y0:
                boxes.append((x0, y0, x1, y1))
        return boxes

    def figure_mask(self, index: int, threshold: float = 0.5) -> np.ndarray:
        """(H, W) bool mask of the people at frame ``index`` (sprite alpha > threshold)."""
        acc = np.zeros((self.height, self.width), np.float32)
        for actor in self._actors:
            if actor.kind == "figure":
                sprite, x, y = self._placement(actor, index)
                region = _clip_region(x, y, sprite.alpha.shape, acc.shape)
                if region is not None:
                    (fy0, fy1, fx0, fx1), (sy0, sy1, sx0, sx1) = region
                    np.maximum(acc[fy0:fy1, fx0:fx1], sprite.alpha[sy0:sy1, sx0:sx1],
                               out=acc[fy0:fy1, fx0:fx1])
        return acc > threshold

    def rgb_visibility(self, index: int) -> np.ndarray:
        """
        Return the fraction of scene contrast that survives in the RGB view.

        (H, W) float32 in [0, 1]: the fraction of scene contrast that survives in the
        RGB view (smoke transmission times illumination); near 0 = hidden.
        """
        smoke = self._smoke_full(index)
        gain = self._gain_full(index)
        return ((1.0 - smoke) * gain).astype(np.float32)

    # ------------------------------------------------------------------ per frame

    def _thermal_float(self, index: int, figures: bool):
        """Thermal frame as float32 'temperature' (0..1 scale) plus the smoke and gain maps."""
        dx, dy = self.shake(index)
        H, W = self.height, self.width
        t = self._bg_t[_PAD + dy:_PAD + dy + H, _PAD + dx:_PAD + dx + W].copy()
        for actor in self._sorted_actors:
            if figures or actor.kind != "figure":
                sprite, x, y = self._placement(actor, index)
                _paste(t, sprite, sprite.therm, x, y)
        smoke = self._smoke_full(index)
        gain = self._gain_full(index)
        # Warm smoke adds a faint haze in LWIR; mostly it is transparent.
        cv2.scaleAdd(smoke, 0.035, t, dst=t)
        rng = np.random.default_rng([self.seed, int(index) & 0xFFFFFFFF, 1])
        oy, ox = rng.integers(0, _NOISE_PAD + 1, size=2)
        t += self._tnoise[oy:oy + H, ox:ox + W]
        return t, smoke, gain          # the fixed column pattern is added by _thermal_out

    def _thermal_out(self, t: np.ndarray, dtype: str) -> np.ndarray:
        if dtype == "uint16":
            out = t + self._col_fpn
            out *= float(THERMAL16_SPAN)
            out += float(THERMAL16_OFFSET)
            np.clip(out, 0.0, 65535.0, out=out)
            return np.rint(out).astype(np.uint16)
        # 255 * (t + column pattern), rounded and saturated to 8 bit in one pass.
        return cv2.addWeighted(t, 255.0, self._fpn_plane, 255.0, 0.0, dtype=cv2.CV_8U)

    def _rgb(self, index: int, figures: bool, smoke: np.ndarray, gain: np.ndarray) -> np.ndarray:
        dx, dy = self.shake(index)
        H, W = self.height, self.width
        # Scene light surviving the smoke; the smoke itself scatters light toward the camera.
        smoke_light = smoke * gain                                 # (H, W)
        keep = gain - smoke_light                                  # (1 - smoke) * gain
        # Planar (3, H, W) float32 throughout: broadcasting an (H, W) map over planes is
        # several times faster than over an interleaved last axis.  The background is
        # attenuated while it is cropped, so sprites are attenuated as they are pasted.
        img = np.empty((3, H, W), np.float32)
        for c in range(3):
            cv2.multiply(self._bg_rgb[c, _PAD + dy:_PAD + dy + H, _PAD + dx:_PAD + dx + W], keep,
                         dst=img[c])
        for actor in self._sorted_actors:
            if figures or actor.kind != "figure":
                sprite, x, y = self._placement(actor, index)
                _paste(img, sprite, sprite.color, x, y, scale=keep)
        for c in range(3):
            cv2.scaleAdd(smoke_light, float(self._smoke_color[c]), img[c], dst=img[c])
        # Sensor noise (stronger where it is dark: the bank has that baked in), added
        # while converting: cv2.add with an 8-bit dtype rounds and saturates.  A small
        # random crop offset and sign give a fresh-looking field every frame.
        rng = np.random.default_rng([self.seed, int(index) & 0xFFFFFFFF, 2])
        oy, ox, sign = rng.integers(0, _RGB_NOISE_PAD + 1, size=3)
        op = cv2.add if sign % 2 else cv2.subtract
        noise = self._cnoise
        return cv2.merge([op(img[c], noise[c, oy:oy + H, ox:ox + W], dtype=cv2.CV_8U)
                          for c in range(3)])

    def _placement(self, actor: _Actor, index: int) -> tuple[_Sprite, int, int]:
        """Sprite and top-left frame position of ``actor`` at ``index`` (shake included)."""
        dx, dy = self.shake(index)
        i = float(index)
        span = self.width + 2 * _PAD + 2 * actor.sprites[0].alpha.shape[1]
        wx = (actor.x0 + actor.vx * i) % span - actor.sprites[0].alpha.shape[1] - _PAD
        if actor.kind == "figure":
            travelled = abs(actor.vx) * i / actor.stride + actor.phase0
            pose = int(travelled * _POSES) % _POSES
            bob = 1.0 * abs(math.sin(math.pi * travelled * 2.0))
        else:
            pose, bob = 0, 0.0
        sprite = actor.sprites[pose]
        h, w = sprite.alpha.shape
        x = int(round(wx - w / 2.0)) + dx
        y = int(round(actor.y_feet - h + 2 - bob)) + dy
        return sprite, x, y

    def _smoke_full(self, index: int) -> np.ndarray:
        """(H, W) float32 smoke density in [0, 0.97] at ``index`` (shake included)."""
        i = float(index)
        dx, dy = self.shake(index)
        lh, lw = self._smoke_env.shape
        size = (lw, lh)
        ts = self._smoke_tex.shape[0]
        # Two layers of the tileable texture scroll at different velocities (sub-pixel).
        c1 = ((self._smoke_off[0] + 0.45 * i + dx / _SMOKE_DOWN) % ts + lw / 2.0,
              (self._smoke_off[1] - 0.08 * i + dy / _SMOKE_DOWN) % ts + lh / 2.0)
        c2 = ((self._smoke_off[2] + 0.22 * i + dx / _SMOKE_DOWN) % ts + lw / 2.0,
              (self._smoke_off[3] + 0.05 * i + dy / _SMOKE_DOWN) % ts + lh / 2.0)
        n1 = cv2.getRectSubPix(self._smoke_tile, size, c1)
        n2 = cv2.getRectSubPix(self._smoke_tile2, size, c2)
        n = 0.62 * n1 + 0.38 * n2
        # The plume envelope sways slowly left and right.
        shift = (0.12 * self.width *
                 math.sin(2 * math.pi * i / 360.0 + self._smoke_off[4])) / _SMOKE_DOWN
        M = np.float32([[1, 0, shift + dx / _SMOKE_DOWN], [0, 1, dy / _SMOKE_DOWN]])
        env = cv2.warpAffine(self._smoke_env, M, size, flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        low = env * (2.0 * n + 0.05)
        np.clip(low, 0.0, 0.97, out=low)
        return cv2.resize(low, (self.width, self.height), interpolation=cv2.INTER_LINEAR)

    def _gain_full(self, index: int) -> np.ndarray:
        """(H, W) float32 illumination gain of the RGB view at ``index`` (shake included)."""
        dx, dy = self.shake(index)
        H, W = self.height, self.width
        level = 0.78 + 0.22 * math.cos(2 * math.pi * float(index) / 450.0)  # dusk flicker
        return self._dark[_PAD + dy:_PAD + dy + H, _PAD + dx:_PAD + dx + W] * np.float32(level)

    # ------------------------------------------------------------------ build (once)

    def _build_background(self, rng: np.random.Generator) -> None:
        H, W = self.height + 2 * _PAD, self.width + 2 * _PAD
        hz = int(self._horizon) + _PAD
        yy = np.arange(H, dtype=np.float32)[:, None]
        xx = np.arange(W, dtype=np.float32)[None, :]

        t = np.zeros((H, W), np.float32)
        rgb = np.zeros((H, W, 3), np.float32)

        # Sky: cold in LWIR; dusky blue-to-orange gradient in RGB.
        s = np.clip(yy / max(hz, 1), 0.0, 1.0)
        t[:hz] = (0.06 + 0.08 * s[:hz]) + 0 * xx
        sky_top = np.array([110, 70, 50], np.float32)     # BGR
        sky_low = np.array([120, 150, 200], np.float32)
        rgb[:hz] = ((sky_top * (1 - s[:hz, :, None]) + sky_low * s[:hz, :, None])
                    + 0 * xx[..., None])

        # Ground: warmer toward the camera; sidewalk, road, grass bands.
        g = np.clip((yy - hz) / max(H - hz, 1), 0.0, 1.0)
        ground_t = 0.30 + 0.12 * g + 0.025 * _smooth_noise(rng, (H, W), 24)
        t[hz:] = ground_t[hz:]
        tex = _smooth_noise(rng, (H, W), 3)
        tex2 = _smooth_noise(rng, (H, W), 12)
        side0, road0, road1 = hz, int(0.62 * H), int(0.86 * H)
        rgb[side0:road0] = (np.array([150, 155, 160], np.float32) + 18 * tex[side0:road0, :, None]
                            + 10 * tex2[side0:road0, :, None])
        rgb[road0:road1] = (np.array([72, 70, 68], np.float32) + 14 * tex[road0:road1, :, None]
                            + 8 * tex2[road0:road1, :, None])
        t[road0:road1] += 0.05                                   # asphalt keeps the day's heat
        rgb[road1:] = (np.array([50, 120, 70], np.float32) + 30 * tex[road1:, :, None] *
                       np.array([0.5, 1, 0.6])
                       + 15 * tex2[road1:, :, None])
        t[road1:] -= 0.04                                        # grass is cooler
        # Sizes below are designed for 640x480 and scaled to the scene.
        k = min(self.width / 640.0, self.height / 480.0)

        def px(v: float) -> int:
            return max(1, int(round(v * k)))

        def ri(lo: float, hi: float) -> int:       # random int in [px(lo), px(hi)), never empty
            a = px(lo) if lo > 0 else int(round(lo * k))
            return int(rng.integers(a, max(a + 1, px(hi))))

        # Kerb line and dashed lane markings.
        cv2.line(rgb, (0, road0), (W, road0), (200, 200, 200), px(2))
        mid = (road0 + road1) // 2
        for x in range(0, W, px(70)):
            cv2.rectangle(rgb, (x, mid - px(2)), (x + px(38), mid + px(2)), (225, 230, 235), -1)
            cv2.rectangle(t, (x, mid - px(2)), (x + px(38), mid + px(2)),
                          float(t[mid, min(x, W - 1)] - 0.03), -1)

        # Buildings with window grids, trees between them (behind the sidewalk).
        x = ri(-20, 10)
        while x < W:
            if rng.random() < 0.3:                               # a tree
                r = ri(22, 40)
                cx, cy = x + r, hz - ri(10, 30)
                cv2.rectangle(rgb, (cx - px(4), cy), (cx + px(4), hz + px(4)), (30, 50, 70), -1)
                cv2.rectangle(t, (cx - px(4), cy), (cx + px(4), hz + px(4)), 0.26, -1)
                _blob(rgb, t, cx, cy - r // 2, r, rng)
                x += 2 * r + ri(0, 15)
                continue
            bw = ri(60, 130)
            bh = int(rng.integers(int(0.25 * hz), max(int(0.25 * hz) + 1, int(0.85 * hz))))
            top = hz - bh
            base = np.array([rng.uniform(60, 150), rng.uniform(70, 150), rng.uniform(90, 190)],
                            np.float32)
            ys, xs = slice(max(top, 0), hz), slice(max(x, 0), max(min(x + bw, W), 0))
            rgb[ys, xs] = base + 10 * tex[ys, xs, None]
            bt = float(rng.uniform(0.22, 0.34))
            t[ys, xs] = bt
            for wy in range(top + px(8), hz - px(14), px(18)):
                for wx in range(x + px(7), x + bw - px(12), px(16)):
                    lit = rng.random() < 0.35
                    col = (90, 200, 240) if lit else (70, 60, 50)
                    cv2.rectangle(rgb, (wx, wy), (wx + px(8), wy + px(10)), col, -1)
                    cv2.rectangle(t, (wx, wy), (wx + px(8), wy + px(10)),
                                  bt + (0.10 if lit else -0.06), -1)
            cv2.line(rgb, (x, top), (x + bw, top), (40, 40, 40), px(2))
            x += bw + ri(0, 12)

        # Coloured street furniture (ambient temperature in LWIR): bins, hydrant, sign, cones.
        def on_sidewalk() -> int:
            return int(rng.integers(hz + px(20), max(hz + px(20) + 1, road0 - px(2))))

        for _ in range(5):
            ox = ri(10, W / k - 30)
            kind = int(rng.integers(0, 3))
            y1 = on_sidewalk()
            if kind == 0:      # blue bin
                cv2.rectangle(rgb, (ox, y1 - px(26)), (ox + px(18), y1), (170, 80, 20), -1)
                cv2.rectangle(t, (ox, y1 - px(26)), (ox + px(18), y1), 0.33, -1)
            elif kind == 1:    # red hydrant
                cv2.rectangle(rgb, (ox, y1 - px(18)), (ox + px(9), y1), (30, 30, 200), -1)
                cv2.circle(rgb, (ox + px(4), y1 - px(19)), px(5), (30, 30, 200), -1)
                cv2.rectangle(t, (ox, y1 - px(18)), (ox + px(9), y1), 0.30, -1)
            else:              # yellow sign on a pole
                cv2.line(rgb, (ox + px(8), y1), (ox + px(8), y1 - px(50)), (120, 120, 120), px(2))
                cv2.rectangle(rgb, (ox, y1 - px(66)), (ox + px(16), y1 - px(50)), (20, 210, 230),
                              -1)
                cv2.line(t, (ox + px(8), y1), (ox + px(8), y1 - px(50)), 0.27, px(2))
                cv2.rectangle(t, (ox, y1 - px(66)), (ox + px(16), y1 - px(50)), 0.25, -1)
        for _ in range(3):     # orange cones on the road edge
            ox = ri(10, W / k - 20)
            y1 = road1 - ri(2, 12)
            pts = np.array([[ox, y1], [ox + px(14), y1], [ox + px(7), y1 - px(22)]], np.int32)
            cv2.fillConvexPoly(rgb, pts, (20, 110, 245))
            cv2.fillConvexPoly(t, pts, 0.36)

        self._bg_t = np.clip(cv2.GaussianBlur(t, (0, 0), 0.8), 0.0, 1.0)
        rgb = np.clip(cv2.GaussianBlur(rgb, (0, 0), 0.6), 0.0, 255.0)
        self._bg_rgb = np.ascontiguousarray(rgb.transpose(2, 0, 1))   # planar (3, H, W)
        self._road = (road0 - _PAD, road1 - _PAD)

    def _build_actors(self, rng: np.random.Generator) -> None:
        H, W = self.height, self.width
        hz = self._horizon
        road0, road1 = self._road

        def height_at(y_feet: float) -> int:
            return max(12, int(round(0.72 * (y_feet - hz) + 0.05 * H)))

        clothes = [((110, 60, 30), (60, 50, 40)),    # blue jacket, dark trousers
                   ((40, 40, 160), (50, 50, 50)),    # red jacket
                   ((80, 120, 130), (90, 80, 60)),   # khaki
                   ((70, 70, 70), (30, 30, 30))]     # grey / black
        # (relative y_feet, vx px/frame, relative start x)
        plan = [(0.575, 1.1, 0.10), (0.66, -1.7, 0.65), (0.78, 2.3, 0.35), (0.93, -0.9, 0.85)]
        actors: list[_Actor] = []
        for k, (ry, vx, rx) in enumerate(plan):
            y_feet = ry * H
            h = height_at(y_feet)
            vx = vx * h / 110.0 * rng.uniform(0.9, 1.1)       # nearer people move faster on screen
            top, bottom = clothes[k % len(clothes)]
            skin_t = rng.uniform(0.86, 0.92)
            sprites = tuple(_figure_sprite(h, p / _POSES, vx < 0, top, bottom, skin_t)
                            for p in range(_POSES))
            actors.append(_Actor("figure", rx * W, y_feet, vx, rng.uniform(0, 1), 0.9 * h,
                                 sprites))
        # An idling car crawling along the road: hot engine, warm tyres, cold glass.
        vy = road0 + 0.55 * (road1 - road0)
        ch = height_at(vy)
        car = _vehicle_sprite(int(round(1.9 * ch)), int(round(0.75 * ch)))
        actors.append(_Actor("vehicle", 0.55 * W, vy, -0.6, 0.0, 1.0, (car,)))
        self._actors = actors
        self._sorted_actors = sorted(actors, key=lambda a: a.y_feet)   # far to near

    def _build_noise(self, rng: np.random.Generator) -> None:
        H, W = self.height + _NOISE_PAD, self.width + _NOISE_PAD
        self._tnoise = rng.normal(0.0, 0.010, size=(H, W)).astype(np.float32)
        # RGB noise sigma 2 + 9 * (1 - gain), for the dark map at its mean light level,
        # baked into the bank (aligned with the frame at crop offset _RGB_NOISE_PAD // 2).
        q = _RGB_NOISE_PAD // 2
        dark = cv2.copyMakeBorder(self._dark, q, q, q, q, cv2.BORDER_REPLICATE)
        dark = dark[_PAD:_PAD + self.height + _RGB_NOISE_PAD,
                    _PAD:_PAD + self.width + _RGB_NOISE_PAD]
        sigma = 2.0 + 9.0 * (1.0 - 0.78 * dark)
        shape = (3, self.height + _RGB_NOISE_PAD, self.width + _RGB_NOISE_PAD)
        self._cnoise = (rng.normal(0.0, 1.0, size=shape) * sigma).astype(np.float32)
        col = rng.normal(0.0, 0.006, size=self.width).astype(np.float32)
        self._col_fpn = col - col.mean()
        self._fpn_plane = np.ascontiguousarray(np.broadcast_to(self._col_fpn,
                                                               (self.height, self.width)))

    def _build_smoke(self, rng: np.random.Generator) -> None:
        lh = -(-self.height // _SMOKE_DOWN)
        lw = -(-self.width // _SMOKE_DOWN)
        ts = 1 << max(7, int(math.ceil(math.log2(max(lh, lw) + 2))))
        self._smoke_tex = _tileable_noise(rng, ts, 0.045)
        tex2 = _tileable_noise(rng, ts, 0.09)
        # Tile 2x2 so any window (with wrapped offsets) can be cut without wrapping.
        self._smoke_tile = np.tile(self._smoke_tex, (2, 2))
        self._smoke_tile2 = np.tile(tex2, (2, 2))
        self._smoke_off = (rng.uniform(0, ts), rng.uniform(0, ts), rng.uniform(0, ts),
                           rng.uniform(0, ts), rng.uniform(0, 2 * math.pi))
        # Plume envelope: a broad band around 40 % of the width, densest at street level.
        x = (np.arange(lw, dtype=np.float32) + 0.5) / lw
        y = (np.arange(lh, dtype=np.float32) + 0.5) / lh
        band = np.minimum(1.0, 1.4 * np.exp(-0.5 * ((x - 0.40) / 0.15) ** 2))
        vert = np.clip(0.5 + 1.3 * (y - 0.3), 0.4, 1.0)
        self._smoke_env = (vert[:, None] * band[None, :]).astype(np.float32)
        self._smoke_color = np.array([175, 180, 185], np.float32)

    def _build_darkness(self) -> None:
        """Illumination gain: an unlit zone under an overpass on the right of the street."""
        H, W = self.height + 2 * _PAD, self.width + 2 * _PAD
        x = (np.arange(W, dtype=np.float32) - _PAD) / self.width
        y = (np.arange(H, dtype=np.float32) - _PAD) / self.height
        side = 1.0 / (1.0 + np.exp(-(x - 0.74) / 0.025))              # 0 left .. 1 right
        low = 1.0 / (1.0 + np.exp(-(y - 0.30) / 0.04))                # below the overpass deck
        dark = side[None, :] * low[:, None]
        self._dark = (1.0 - 0.93 * dark).astype(np.float32)


# ---------------------------------------------------------------------- helpers


def _clip_region(x: int, y: int, shape: tuple[int, int], frame_shape: tuple[int, ...]):
    h, w = shape
    H, W = frame_shape[-2:]
    fx0, fy0 = max(x, 0), max(y, 0)
    fx1, fy1 = min(x + w, W), min(y + h, H)
    if fx1 <= fx0 or fy1 <= fy0:
        return None
    return (fy0, fy1, fx0, fx1), (fy0 - y, fy1 - y, fx0 - x, fx1 - x)


def _paste(img: np.ndarray, sprite: _Sprite, premult: np.ndarray, x: int, y: int,
           scale: np.ndarray | None = None) -> None:
    """
    Composite a premultiplied sprite into ``img`` (in place) with its top-left at (x, y).

    ``img`` is (H, W) or planar (C, H, W); ``premult`` (one of the sprite's) matches it.
    ``scale`` (H, W), when given, multiplies the sprite as it lands (``img`` already
    carries that factor).
    """
    region = _clip_region(x, y, sprite.alpha.shape, img.shape)
    if region is None:
        return
    (fy0, fy1, fx0, fx1), (sy0, sy1, sx0, sx1) = region
    inv = sprite.inv_alpha[sy0:sy1, sx0:sx1]
    p = premult[..., sy0:sy1, sx0:sx1]
    if scale is not None:
        p = p * scale[fy0:fy1, fx0:fx1]
    dst = img[..., fy0:fy1, fx0:fx1]
    dst *= inv
    dst += p


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Smooth noise of roughly unit amplitude with features about ``cell`` px wide."""
    h, w = shape
    small = rng.normal(0.0, 1.0,
                       size=(max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    big = cv2.resize(small, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)
    return big[cell:cell + h, cell:cell + w] / 1.5


def _tileable_noise(rng: np.random.Generator, size: int, cutoff: float) -> np.ndarray:
    """Periodic low-frequency noise in [0, 1] (Gaussian-filtered white noise via FFT)."""
    white = rng.normal(0.0, 1.0, size=(size, size))
    f = np.fft.fftfreq(size)
    r2 = f[:, None] ** 2 + f[None, :] ** 2
    spec = np.fft.fft2(white) * np.exp(-r2 / (2 * cutoff ** 2))
    n = np.real(np.fft.ifft2(spec))
    n = (n - n.mean()) / (n.std() + 1e-9)
    return np.clip(0.5 + 0.22 * n, 0.0, 1.0).astype(np.float32)


def _blob(rgb: np.ndarray, t: np.ndarray, cx: int, cy: int, r: int,
          rng: np.random.Generator) -> None:
    """Draw a foliage crown: clustered ellipses, textured green, cool in LWIR."""
    for _ in range(9):
        ox, oy = rng.normal(0, r * 0.35, size=2)
        rr = int(r * rng.uniform(0.45, 0.75))
        col = (float(rng.uniform(20, 50)), float(rng.uniform(80, 140)), float(rng.uniform(30, 70)))
        center = (int(cx + ox), int(cy + oy))
        cv2.ellipse(rgb, center, (rr, int(rr * 0.85)), 0, 0, 360, col, -1, cv2.LINE_AA)
        cv2.ellipse(t, center, (rr, int(rr * 0.85)), 0, 0, 360, float(rng.uniform(0.20, 0.26)), -1)
    # Leafy speckle.
    y0, y1 = max(cy - 2 * r, 0), min(cy + r, rgb.shape[0])
    x0, x1 = max(cx - 2 * r, 0), min(cx + 2 * r, rgb.shape[1])
    if y1 > y0 and x1 > x0:
        sub = rgb[y0:y1, x0:x1]
        leafy = (sub[..., 1] > sub[..., 2] + 25) & (sub[..., 1] > sub[..., 0] + 25)
        speck = rng.normal(0.0, 22.0, size=leafy.shape).astype(np.float32)
        sub[leafy] += speck[leafy][:, None] * np.array([0.4, 1.0, 0.5], np.float32)


def _figure_sprite(h: int, phase: float, facing_left: bool, top_bgr, bottom_bgr,
                   skin_t: float) -> _Sprite:
    """Make a walking person of height ``h`` px at gait ``phase`` in [0, 1), soft-edged."""
    w = max(8, int(round(0.62 * h)))
    pad = 3
    H, W = h + 2 * pad, w + 2 * pad
    alpha = np.zeros((H, W), np.float32)
    therm = np.zeros((H, W), np.float32)
    color = np.zeros((H, W, 3), np.float32)
    cx = W / 2.0
    s = 2 * math.pi * phase
    swing = math.radians(28) * math.sin(s)
    arm = math.radians(24) * math.sin(s)
    head_r = 0.065 * h
    neck_y = pad + 2 * head_r + 0.01 * h
    hip_y = pad + 0.52 * h
    thigh, shin = 0.25 * h, 0.23 * h
    limb = max(2, int(round(0.075 * h)))
    arm_w = max(2, int(round(0.055 * h)))
    skin = (120, 150, 200)

    def pt(x, y):
        return (int(round(x * 4)), int(round(y * 4)))     # 2 fractional bits for cv2

    def draw(poly_fn, therm_v, bgr):
        m = np.zeros((H, W), np.float32)
        poly_fn(m)
        # Painter's order: later parts cover earlier ones.
        alpha[:] = np.maximum(alpha, m)
        therm[:] = therm * (1 - m) + therm_v * m
        color[:] = color * (1 - m[..., None]) + np.array(bgr, np.float32) * m[..., None]

    def leg(sign, shade):
        a = sign * swing
        kx, ky = cx + thigh * math.sin(a), hip_y + thigh * math.cos(a)
        bend = math.radians(25) * max(0.0, -sign * math.sin(s + 0.6))
        b = a - bend
        fx, fy = kx + shin * math.sin(b), ky + shin * math.cos(b)

        def f(m):
            cv2.line(m, pt(cx, hip_y), pt(kx, ky), 1.0, limb, cv2.LINE_AA, 2)
            cv2.line(m, pt(kx, ky), pt(fx, fy), 1.0, limb, cv2.LINE_AA, 2)
            cv2.line(m, pt(fx, fy), pt(fx + 0.07 * h, fy), 1.0, max(2, limb // 2 + 1), cv2.LINE_AA,
                     2)
        draw(f, skin_t - 0.14 - shade, tuple(c * (1 - shade * 2) for c in bottom_bgr))

    def arm_(sign, shade):
        a = -sign * arm
        sx, sy = cx, neck_y + 0.03 * h
        ex, ey = sx + 0.17 * h * math.sin(a), sy + 0.17 * h * math.cos(a)
        b = a + math.radians(20)
        hx, hy = ex + 0.16 * h * math.sin(b), ey + 0.16 * h * math.cos(b)

        def f(m):
            cv2.line(m, pt(sx, sy), pt(ex, ey), 1.0, arm_w, cv2.LINE_AA, 2)
            cv2.line(m, pt(ex, ey), pt(hx, hy), 1.0, arm_w, cv2.LINE_AA, 2)
        draw(f, skin_t - 0.10 - shade, tuple(c * (1 - shade * 2) for c in top_bgr))

        def hand(m):
            cv2.circle(m, pt(hx, hy), int(round(0.03 * h * 4)), 1.0, -1, cv2.LINE_AA, 2)
        draw(hand, skin_t - 0.02, skin)

    leg(-1, 0.04)      # far leg, slightly cooler/darker
    arm_(-1, 0.04)

    def torso(m):
        pts = np.array([pt(cx - 0.10 * h, neck_y + 0.01 * h), pt(cx + 0.10 * h, neck_y + 0.01 * h),
                        pt(cx + 0.085 * h, hip_y + 0.03 * h),
                        pt(cx - 0.085 * h, hip_y + 0.03 * h)], np.int32)
        cv2.fillConvexPoly(m, pts, 1.0, cv2.LINE_AA, 2)
    draw(torso, skin_t - 0.09, top_bgr)
    leg(1, 0.0)

    def head(m):
        cv2.circle(m, pt(cx + 0.01 * h, pad + head_r), int(round(head_r * 4)), 1.0, -1,
                   cv2.LINE_AA, 2)
        cv2.line(m, pt(cx, pad + 1.5 * head_r), pt(cx, neck_y + 0.02 * h), 1.0,
                 max(2, int(0.05 * h)), cv2.LINE_AA, 2)
    draw(head, skin_t, skin)
    arm_(1, 0.0)

    if facing_left:
        alpha, therm, color = alpha[:, ::-1], therm[:, ::-1], color[:, ::-1]
    return _soft_sprite(alpha, therm, color, sigma=0.7 + 0.006 * h)


def _vehicle_sprite(w: int, h: int) -> _Sprite:
    """
    Side view of an idling car facing left.

    Hot engine bay, warm tyres and exhaust, cold glass (it reflects the sky in
    LWIR).
    """
    pad = 3
    H, W = h + 2 * pad, w + 2 * pad
    alpha = np.zeros((H, W), np.float32)
    therm = np.zeros((H, W), np.float32)
    color = np.zeros((H, W, 3), np.float32)
    body_top = pad + int(0.42 * h)
    body_bot = pad + int(0.85 * h)
    x0, x1 = pad, pad + w

    def fill(draw_fn, tv, bgr):
        m = np.zeros((H, W), np.float32)
        draw_fn(m)
        alpha[:] = np.maximum(alpha, m)
        therm[:] = therm * (1 - m) + tv * m
        color[:] = color * (1 - m[..., None]) + np.array(bgr, np.float32) * m[..., None]

    body = (40, 40, 150)
    fill(lambda m: cv2.rectangle(m, (x0, body_top), (x1 - 1, body_bot), 1.0, -1), 0.50, body)
    cabin = np.array([[x0 + int(0.22 * w), body_top], [x0 + int(0.32 * w), pad],
                      [x0 + int(0.70 * w), pad], [x0 + int(0.84 * w), body_top]], np.int32)
    fill(lambda m: cv2.fillConvexPoly(m, cabin, 1.0, cv2.LINE_AA), 0.47, body)
    win = np.array([[x0 + int(0.27 * w), body_top - 2], [x0 + int(0.345 * w), pad + int(0.08 * h)],
                    [x0 + int(0.68 * w), pad + int(0.08 * h)], [x0 + int(0.78 * w), body_top - 2]],
                   np.int32)
    fill(lambda m: cv2.fillConvexPoly(m, win, 1.0, cv2.LINE_AA), 0.18, (90, 70, 50))
    # Engine bay (front = left) and exhaust (rear, low).
    fill(lambda m: cv2.rectangle(m, (x0 + 2, body_top + 3), (x0 + int(0.22 * w), body_bot - 4),
                                 1.0, -1),
         0.97, body)
    fill(lambda m: cv2.rectangle(m, (x1 - 8, body_bot - 5), (x1 - 1, body_bot - 1), 1.0, -1), 0.93,
         (30, 30, 30))
    fill(lambda m: cv2.rectangle(m, (x0, body_top + 4), (x0 + 5, body_top + 10), 1.0, -1), 0.6,
         (200, 240, 250))
    for fx in (0.2, 0.8):
        c = (x0 + int(fx * w), body_bot)
        r = int(0.17 * h)
        fill(lambda m, c=c, r=r: cv2.circle(m, c, r, 1.0, -1, cv2.LINE_AA), 0.70, (25, 25, 25))
        fill(lambda m, c=c, r=r: cv2.circle(m, c, max(1, r // 2), 1.0, -1, cv2.LINE_AA), 0.62,
             (150, 150, 150))
    return _soft_sprite(alpha, therm, color, sigma=0.9)


def _soft_sprite(alpha: np.ndarray, therm: np.ndarray, color: np.ndarray, sigma: float) -> _Sprite:
    """Blur premultiplied values and alpha together: soft edges without dark fringes."""
    a = cv2.GaussianBlur(np.ascontiguousarray(alpha), (0, 0), sigma)
    pt = cv2.GaussianBlur(np.ascontiguousarray(therm * alpha), (0, 0), sigma)
    pc = cv2.GaussianBlur(np.ascontiguousarray(color * alpha[..., None]), (0, 0), sigma)
    pc = np.ascontiguousarray(pc.transpose(2, 0, 1), dtype=np.float32)     # planar (3, h, w)
    a = np.clip(a, 0, 1).astype(np.float32)
    return _Sprite(a, 1.0 - a, pt.astype(np.float32), pc)
