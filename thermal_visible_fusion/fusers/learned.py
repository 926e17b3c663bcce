"""LearnedFuser: the streaming fusion network behind the Fuser protocol.

The network restores luminance: the thermal frame and the Y channel of the RGB frame go
in, the restored pair comes out and is fused by the multi-scale rule
(``fusers.classic.MultiScaleFuser``, the same rule the network trains with, in OpenCV)
with the Cr/Cb of the RGB frame.  The network's temporal memory is kept between ``fuse``
calls; ``reset()`` clears it (call it when the stream jumps), ``use_memory=False`` clears
it before every frame.

Weights files carry their own ``ModelConfig``: a ``.pt`` file is a plain dict loaded with
``torch.load(weights_only=True)``; a ``.safetensors`` file (used when the ``safetensors``
package is installed) stores the config in its metadata.
"""

from __future__ import annotations

import json
import warnings
from collections import OrderedDict, deque
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from torch import nn

from thermal_visible_fusion.device import inference_dtype, resolve_device
from thermal_visible_fusion.fusers.classic import MultiScaleFuser, merge_luma
from thermal_visible_fusion.model import (MemoryState, ModelConfig, StreamingFusionNet,
                                          StreamingRunner)

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "streaming_fusion.pt"
WEIGHTS_FORMAT = "tvf-streaming-fusion"
WEIGHTS_VERSION = 2  # 1: the network before restore-then-fuse, refused


class WeightsError(RuntimeError):
    """A weights file is missing, unreadable or not a streaming-fusion weights file."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot load fusion weights {self.path}: {reason}")


def _reason(exc: Exception) -> str:
    """Why torch.load refused a file, without its advice to load it unsafely."""
    text = str(exc)
    if "Weights only load failed" in text or "weights_only" in text:
        return "it holds objects other than tensors and plain data, which the safe loader refuses"
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def default_weights_path() -> Path:
    """The shipped weights: ``DEFAULT_WEIGHTS`` or its ``.safetensors`` sibling."""
    safetensors_path = DEFAULT_WEIGHTS.with_suffix(".safetensors")
    if not DEFAULT_WEIGHTS.exists() and safetensors_path.exists():
        return safetensors_path
    return DEFAULT_WEIGHTS


def save_weights(model: StreamingFusionNet, path: str | Path, meta: dict | None = None) -> Path:
    """Write model weights + config (+ str/number ``meta``) to ``.pt`` or ``.safetensors``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous()
             for k, v in model.state_dict().items()}
    meta = dict(meta or {})
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import save_file
        except ImportError as exc:
            raise RuntimeError("saving .safetensors needs the 'safetensors' package; "
                               "use a .pt path instead") from exc
        header = {"format": WEIGHTS_FORMAT, "version": str(WEIGHTS_VERSION),
                  "config": json.dumps(model.config.to_dict()), "meta": json.dumps(meta)}
        save_file(state, str(tmp), metadata=header)
    else:
        torch.save({"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION,
                    "config": model.config.to_dict(), "meta": meta, "state_dict": state}, tmp)
    tmp.replace(path)
    return path


def load_weights(path: str | Path) -> tuple[ModelConfig, dict, dict]:
    """Read (config, state_dict, meta) from a weights file; WeightsError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(path, "file not found")
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open
        except ImportError:
            raise WeightsError(path, "reading .safetensors needs the 'safetensors' package")
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
            config, meta = json.loads(header["config"]), json.loads(header.get("meta", "{}"))
            fmt, version = header.get("format"), header.get("version")
        except Exception as exc:  # corrupt file, missing metadata
            raise WeightsError(path, f"not a readable safetensors weights file ({exc})") from exc
    else:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, not a torch file, unsafe pickle
            raise WeightsError(path, f"not a readable torch weights file ({_reason(exc)})"
                               ) from exc
        if not isinstance(data, dict):
            raise WeightsError(path, "expected a dict with 'config' and 'state_dict'")
        fmt, config, version = data.get("format"), data.get("config"), data.get("version")
        state, meta = data.get("state_dict"), data.get("meta", {})
    if fmt != WEIGHTS_FORMAT or not isinstance(config, dict) or not isinstance(state, dict):
        raise WeightsError(path, f"not a {WEIGHTS_FORMAT} weights file (format={fmt!r})")
    if str(version) != str(WEIGHTS_VERSION):
        raise WeightsError(path, f"written for another version of the network (version "
                                 f"{version!r}, this release reads {WEIGHTS_VERSION}); use the "
                                 "weights shipped with this release or retrain (tvf train)")
    try:
        model_config = ModelConfig.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise WeightsError(path, f"bad model config ({exc})") from exc
    return model_config, state, meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> StreamingFusionNet:
    """A StreamingFusionNet in eval mode with the weights of ``path``."""
    config, state, _ = load_weights(path)
    model = StreamingFusionNet(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(path, f"weights do not match the model ({exc})") from exc
    return model.to(device).eval()


def _restore(model: StreamingFusionNet, ir: torch.Tensor, vis: torch.Tensor,
             state: MemoryState | None) -> tuple[torch.Tensor, MemoryState]:
    """One eager step: (restored IR and visible as (B,2,H,W), new memory)."""
    out, new = model(ir, vis, state, fuse=False)
    return torch.cat([out.restored_ir, out.restored_vis], 1), new


def _step_inputs(ir: torch.Tensor, vis: torch.Tensor, state: MemoryState | None) -> tuple:
    return (ir, vis) + (tuple(state) if state is not None else ())


def _step_key(ir: torch.Tensor, state: MemoryState | None) -> tuple:
    """A compiled step per input size, dtype and device, and per memory presence."""
    return tuple(ir.shape), ir.dtype, ir.device, state is None


def _cached(cache: OrderedDict, key: tuple, make: Callable, limit: int):
    """``cache[key]``, made by ``make()`` on first use; least recently used out past
    ``limit`` (sizes come from messages: the cache must stay bounded)."""
    if key not in cache:
        cache[key] = make()
        while len(cache) > limit:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


class FrozenStep:
    """The model's inference step, traced and frozen with TorchScript per input size.

    Two graphs per size (first frame without memory, later frames with it); faster than
    eager on a CPU.  Falls back to eager, with a warning, if tracing fails.  Each trace
    keeps a few MB that freeing the graph never returns, so a stream whose size keeps
    changing would grow without bound: after ``MAX_TRACES`` traces, new sizes run eager.
    """

    MAX_GRAPHS = 8
    MAX_TRACES = 16

    def __init__(self, model: StreamingFusionNet):
        self.model = model
        self.graphs: OrderedDict[tuple, torch.jit.ScriptModule | None] = OrderedDict()
        self.traces = 0

    class _Wrapped(nn.Module):
        def __init__(self, model: StreamingFusionNet, with_state: bool):
            super().__init__()
            self.model, self.with_state = model, with_state

        def forward(self, ir, vis, *state):
            restored, new = _restore(self.model, ir, vis,
                                     MemoryState(*state) if self.with_state else None)
            return (restored,) + tuple(new)

    def _trace(self, inputs: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule | None:
        if self.traces >= self.MAX_TRACES:
            if self.traces == self.MAX_TRACES:
                warnings.warn(f"{self.MAX_TRACES} frame sizes traced; further sizes run eager")
                self.traces += 1
            return None
        self.traces += 1
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                wrapped = self._Wrapped(self.model, len(inputs) > 2).eval()
                return torch.jit.freeze(torch.jit.trace(wrapped, inputs, check_trace=False))
        except Exception as exc:  # unsupported torch build, exotic op: stay eager
            warnings.warn(f"tracing the fusion network failed ({exc}); running eager")
            return None

    def _graph(self, ir: torch.Tensor, vis: torch.Tensor, state: MemoryState | None):
        inputs = _step_inputs(ir, vis, state)
        return _cached(self.graphs, _step_key(ir, state), lambda: self._trace(inputs),
                       self.MAX_GRAPHS)

    def __call__(self, ir: torch.Tensor, vis: torch.Tensor, state: MemoryState | None
                 ) -> tuple[torch.Tensor, MemoryState]:
        graph = self._graph(ir, vis, state)
        if graph is None:
            return _restore(self.model, ir, vis, state)
        restored, *new = graph(*_step_inputs(ir, vis, state))
        return restored, MemoryState(*new)


class CudaGraphStep:
    """The model's inference step replayed as CUDA graphs, one per input size and dtype
    and per memory presence (first frame without it).

    An 80k-parameter network runs a few hundred small kernels a frame: on a GPU their
    launches, not the arithmetic, bound the frame rate, and a graph launches them all at
    once.  Inputs are copied into the graph's static buffers and the outputs cloned out,
    so callers (the look-ahead keeps several) hold ordinary tensors.  Falls back to eager,
    with a warning, if capture fails.
    """

    MAX_GRAPHS = 8  # each holds its own memory pool

    def __init__(self, model: StreamingFusionNet):
        self.model = model
        self.graphs: OrderedDict[tuple, tuple | None] = OrderedDict()

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> tuple:
        static = tuple(t.clone() for t in inputs)

        def run() -> tuple[torch.Tensor, ...]:
            state = MemoryState(*static[2:]) if len(static) > 2 else None
            restored, new = _restore(self.model, static[0], static[1], state)
            return (restored,) + tuple(new)

        side = torch.cuda.Stream()  # on the current device: the caller selects the input's
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture: kernel choices, allocator
            for _ in range(3):
                run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread-local: CUDA calls of other threads in the process do not break the capture
        with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
            outputs = run()
        return graph, static, outputs

    def _capture_or_eager(self, inputs: tuple[torch.Tensor, ...]) -> tuple | None:
        try:
            return self._capture(inputs)
        except torch.cuda.OutOfMemoryError:
            raise  # transient: this frame fails, the next one tries again
        except RuntimeError as exc:  # an op that cannot be captured: this size stays eager
            warnings.warn(f"capturing the fusion network as a CUDA graph failed ({exc}); "
                          "running eager")
            return None

    def __call__(self, ir: torch.Tensor, vis: torch.Tensor, state: MemoryState | None
                 ) -> tuple[torch.Tensor, MemoryState]:
        inputs = _step_inputs(ir, vis, state)
        with torch.cuda.device(ir.device):  # capture and replay on the input's GPU (cuda:N)
            entry = _cached(self.graphs, _step_key(ir, state),
                            lambda: self._capture_or_eager(inputs), self.MAX_GRAPHS)
            if entry is None or any(b.shape != v.shape for b, v in zip(entry[1], inputs)):
                # no graph, or a memory of another size: eager, which says what is wrong
                return _restore(self.model, ir, vis, state)
            graph, static, outputs = entry
            for buffer, value in zip(static, inputs):
                buffer.copy_(value)
            graph.replay()
            restored, *new = (t.clone() for t in outputs)
            return restored, MemoryState(*new)


class LearnedFuser:
    """Streaming learned fusion with temporal memory.

    ``lookahead=k`` delays the output by k frames and uses them (see ``StreamingRunner``);
    ``flush()`` returns the frames still held back.  ``threads`` sets torch's CPU threads.
    ``jit`` (default: on CPU) runs a TorchScript-frozen trace of the network, made per
    frame size on first use (``warmup`` does it ahead of time); ``cuda_graphs`` (default:
    on CUDA without jit) replays it as CUDA graphs (``CudaGraphStep``), captured the same
    way.
    """

    name = "learned"

    def __init__(self, weights: str | Path | None = None, device: str = "auto",
                 use_memory: bool = True, lookahead: int = 0, threads: int | None = None,
                 jit: bool | None = None, cuda_graphs: bool | None = None):
        if lookahead and not use_memory:
            raise ValueError("lookahead needs the memory (use_memory=True)")
        if threads:
            torch.set_num_threads(int(threads))
        self.weights = Path(weights) if weights is not None else default_weights_path()
        self.device = resolve_device(device)
        self.dtype = inference_dtype(self.device)
        model = load_model(self.weights, "cpu")
        self.model = model.to(self.device, self.dtype).to(memory_format=torch.channels_last)
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
        self.runner = StreamingRunner(self.model, use_memory=use_memory, lookahead=lookahead,
                                      step=self._step)
        self._chroma: deque = deque()  # YCrCb frames matching the runner's look-ahead window
        self._size: tuple[int, int] | None = None

    @property
    def use_memory(self) -> bool:
        return self.runner.use_memory

    @use_memory.setter
    def use_memory(self, value: bool) -> None:
        """Switching the memory off (or on) restarts the stream; off also drops look-ahead."""
        if bool(value) != self.runner.use_memory:
            self.runner = StreamingRunner(self.model, use_memory=bool(value),
                                          lookahead=self._lookahead if value else 0,
                                          step=self._step)
            self.reset()

    @property
    def lookahead(self) -> int:
        return self.runner.lookahead

    def reset(self) -> None:
        self.runner.reset()
        self._chroma.clear()
        self._size = None

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        # Frames decoded from messages can be read-only views: copy only then.
        t = torch.from_numpy(np.require(image, requirements=["C", "W"])).to(self.device)
        return (t.to(self.dtype) / 255.0)[None, None]

    def _to_bgr(self, restored: torch.Tensor, ycrcb: np.ndarray) -> np.ndarray:
        """Restored IR and Y, fused by the multi-scale rule, + the frame's chroma -> BGR."""
        ir, y = (restored[0].float() * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8).cpu().numpy()
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
        ycrcb = cv2.cvtColor(rgb, cv2.COLOR_BGR2YCrCb)
        with torch.inference_mode():
            fused = self.runner.push(self._to_tensor(thermal), self._to_tensor(ycrcb[..., 0]))
            if self.lookahead:
                self._chroma.append(ycrcb)
                if len(self._chroma) > self.lookahead + 1:
                    self._chroma.popleft()
                ycrcb = self._chroma[0]
            return self._to_bgr(fused, ycrcb)

    def flush(self) -> list[np.ndarray]:
        """With look-ahead: the fused frames not yet returned, in order (else empty)."""
        with torch.inference_mode():
            outputs = self.runner.flush()
        frames = [self._to_bgr(f, c) for f, c in zip(outputs, list(self._chroma)[1:])]
        self._chroma.clear()
        return frames

    def warmup(self, height: int, width: int, frames: int = 3) -> None:
        """Run a few frames of this size (allocations, kernel selection), then reset."""
        thermal = np.zeros((height, width), np.uint8)
        rgb = np.zeros((height, width, 3), np.uint8)
        for _ in range(frames):
            self.fuse(thermal, rgb)
        self.flush()
        self.reset()
