"""
LearnedFuser: the streaming fusion network behind the Fuser protocol.

The network restores luminance: the thermal frame and the Y channel of the RGB frame go
in, the restored pair comes out and is fused by the multi-scale rule
(``fusers.classic.MultiScaleFuser``, the same rule the network trains with, in OpenCV)
with the Cr/Cb of the RGB frame.  The network's temporal memory is kept between ``fuse``
calls; ``reset()`` clears it (call it when the stream jumps), ``use_memory=False`` clears
it before every frame.  The network, its weights files and how it runs over a stream
live in ``thermal_visible_fusion.learned``; this module only adapts them to a Fuser.
"""

from __future__ import annotations

from pathlib import Path
import time

import cv2
import numpy as np
import torch

from thermal_visible_fusion.device import inference_dtype, native_bf16, resolve_device
from thermal_visible_fusion.fusers.classic import merge_luma, MultiScaleFuser
from thermal_visible_fusion.host_memory import retain_freed_memory
from thermal_visible_fusion.learned.runtime import CudaGraphStep, FrozenStep, StreamingRunner
from thermal_visible_fusion.learned.threads import DEFAULT_MOST, ThreadTuner
from thermal_visible_fusion.learned.weights import DEFAULT_WEIGHTS, default_weights, load_model


# After a memory's first 64 frames the camera's stripes and blur are estimated on every 4th
# frame: they are fixed per camera, their memory averages over 64-256 frames, and they cost
# a sixth of a CPU frame.
ESTIMATE_EVERY = 4


class LearnedFuser:
    """
    Streaming learned fusion with temporal memory.

    ``lookahead=k`` delays the output by k frames and uses them (see ``StreamingRunner``);
    ``flush()`` returns the frames still held back.  On a CPU a ``ThreadTuner`` runs torch
    on 1 or ``threads`` threads (default: torch's own count, the cores), whichever fuses
    faster now.
    ``jit`` (default: on CPU) runs a TorchScript-frozen trace of the network, made per
    frame size on first use (``warmup`` does it ahead of time); ``cuda_graphs`` (default:
    on CUDA without jit) replays it as CUDA graphs (``CudaGraphStep``), captured the same
    way.
    ``bf16`` (None, the default: on a CPU that has bfloat16 arithmetic) runs the IR
    denoiser's convolutions in bfloat16, the rest of the network in float32: less time a
    degraded frame, the fused frames about 0.01 grey levels (mean) from float32's
    (``docs/model.md``, Speed on a CPU).
    """

    name = "learned"

    def __init__(self, weights: str | Path | None = None, device: str = "auto",
                 use_memory: bool = True, lookahead: int = 0, threads: int | None = None,
                 jit: bool | None = None, cuda_graphs: bool | None = None,
                 bf16: bool | None = None):
        if lookahead and not use_memory:
            raise ValueError("lookahead needs the memory (use_memory=True)")
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        self.weights = Path(weights) if weights is not None else \
            default_weights() or DEFAULT_WEIGHTS  # missing: load_model says so
        self.device = resolve_device(device)
        self.dtype = inference_dtype(self.device)
        self._tuner = None
        if self.device.type == "cpu":
            retain_freed_memory()  # the frame's temporaries: no page faults per frame
            # trials in whole estimation cycles: every k-th frame is the slow one
            self._tuner = ThreadTuner((1, int(threads or DEFAULT_MOST)), trial=3,
                                      cycle=ESTIMATE_EVERY)
        model = load_model(self.weights, "cpu")
        self.model = model.to(self.device, self.dtype).to(memory_format=torch.channels_last)
        self.bf16 = self.device.type == "cpu" and native_bf16() if bf16 is None else bf16
        if self.bf16 and self.device.type != "cpu":
            raise ValueError(f"bf16 is for a CPU, got {self.device} (which runs half precision)")
        if self.bf16:  # where the time goes: the convolutions (their input is cast to it)
            self.model.denoiser.to(torch.bfloat16)
        self.jit = self.device.type == "cpu" if jit is None else jit
        if cuda_graphs is None:
            cuda_graphs = self.device.type == "cuda" and not self.jit
        if cuda_graphs and (self.device.type != "cuda" or self.jit):
            raise ValueError(f"cuda_graphs needs a CUDA device and jit off, got {self.device}"
                             f"{' with jit' if self.jit else ''}")
        self._step = FrozenStep(self.model) if self.jit else \
            CudaGraphStep(self.model) if cuda_graphs else None
        self._rule = MultiScaleFuser()
        self._lookahead = lookahead  # as asked; the runner drops it while memory is off
        self.runner = self._runner(use_memory)
        self._size: tuple[int, int] | None = None

    @property
    def use_memory(self) -> bool:
        return self.runner.use_memory

    @use_memory.setter
    def use_memory(self, value: bool) -> None:
        """Switching the memory off (or on) restarts the stream; off also drops look-ahead."""
        if bool(value) != self.runner.use_memory:
            self.runner = self._runner(bool(value))
            self.reset()

    def _runner(self, use_memory: bool) -> StreamingRunner:
        # Skipping idle restorations needs a look at each frame first: on a CPU that is
        # free, on a GPU it would stall the queue for a step that is fast anyway.
        return StreamingRunner(self.model, use_memory=use_memory,
                               lookahead=self._lookahead if use_memory else 0,
                               step=self._step, estimate_every=ESTIMATE_EVERY,
                               skip_idle=self.device.type == "cpu")

    @property
    def max_threads(self) -> int | None:
        """Return the most torch threads the fuser uses on a CPU (None on a GPU)."""
        return self._tuner.counts[-1] if self._tuner else None

    @property
    def restoring(self) -> str | None:
        """
        Say what the stream needs restored now: "thermal", "visible", both, or "none".

        None where it is not judged (on a GPU, where every restoration runs; before a
        stream's second frame).
        """
        needed = self.runner.needed
        if needed is None:
            return None
        return ", ".join(name for name, on in zip(("thermal", "visible"), needed) if on) \
            or "none"

    @property
    def lookahead(self) -> int:
        return self.runner.lookahead

    def reset(self) -> None:
        self.runner.reset()
        self._size = None

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        # Frames decoded from messages can be read-only views: copy only then.
        t = torch.from_numpy(np.require(image, requirements=["C", "W"])).to(self.device)
        return t.to(self.dtype).mul_(1 / 255.0)[None, None]

    def _to_bgr(self, restored: torch.Tensor, ycrcb: np.ndarray) -> np.ndarray:
        """Restored IR and Y, fused by the multi-scale rule, + the frame's chroma -> BGR."""
        # whole grey levels (as the uint8 frames a classical fuser sees), kept in float32:
        # the rule works in float32
        levels = restored[0].float().mul(255.0).round_().clamp_(0, 255)
        ir, y = levels.cpu().numpy()
        return merge_luma(self._rule.fuse_luma(ir, y), ycrcb)  # ycrcb's own Y is spent

    @staticmethod
    def _check(thermal: np.ndarray, rgb: np.ndarray) -> None:
        if thermal.dtype != np.uint8 or rgb.dtype != np.uint8:
            raise ValueError("thermal and rgb must be uint8")
        if thermal.ndim != 2 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected thermal (H,W) and rgb (H,W,3), got {thermal.shape} "
                             f"and {rgb.shape}")
        if thermal.shape != rgb.shape[:2]:
            raise ValueError(f"thermal {thermal.shape} and rgb {rgb.shape[:2]} differ in size")

    def fuse(self, thermal: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        self._check(thermal, rgb)
        if self._size != thermal.shape:
            self.reset()  # the memory is tied to the frame size
            self._size = thermal.shape
        start = time.perf_counter()
        if self._tuner:
            self._tuner.begin()
        ycrcb = cv2.cvtColor(rgb, cv2.COLOR_BGR2YCrCb)
        with torch.inference_mode():
            # the chroma rides with its frame through the runner's look-ahead window
            fused = self.runner.push(self._to_tensor(thermal), self._to_tensor(ycrcb[..., 0]),
                                     tag=ycrcb)
            out = self._to_bgr(fused, self.runner.tag)
        if self._tuner:
            self._tuner.end(time.perf_counter() - start)
        return out

    def flush(self) -> list[np.ndarray]:
        """With look-ahead: the fused frames not yet returned, in order (else empty)."""
        with torch.inference_mode():
            return [self._to_bgr(fused, ycrcb) for fused, ycrcb in self.runner.flush_tagged()]

    def warmup(self, height: int, width: int, frames: int = 3) -> None:
        """
        Run frames of this size (allocations, kernel selection, traces), then reset.

        ``frames`` frames, then every kind of step a stream of this size runs
        (``StreamingRunner.warm``): each is traced here, not on a live frame.
        """
        thermal = np.zeros((height, width), np.uint8)
        rgb = np.zeros((height, width, 3), np.uint8)
        for _ in range(frames):
            self.fuse(thermal, rgb)
        self.flush()
        with torch.inference_mode():
            self.runner.warm(self._to_tensor(thermal), self._to_tensor(thermal))
        self.reset()
        if self._tuner:  # warm-up frames (traces, allocations) time nothing real
            self._tuner.restart()
