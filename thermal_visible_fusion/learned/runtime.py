"""
How the network runs over a stream.

The memory carried frame to frame, the look-ahead window, and the compiled forms
of one step.

``StreamingRunner`` carries the ``MemoryState`` across a stream, with an optional
look-ahead of k frames (frame t's output averages the forward-memory output with one from
a memory run from frame t+k down to t); ``fuse_sequence`` does it offline.  Each window
entry can carry a caller's tag (the learned fuser's chroma), handed back with its frame.
``FrozenStep`` (TorchScript, CPU) and ``CudaGraphStep`` (CUDA graphs) replace the eager
step, one compiled graph per input size, dtype, memory presence, noise presence and
``Mode``, in a bounded cache.
"""

from __future__ import annotations

from collections import deque, OrderedDict
from typing import Any, Callable, NamedTuple
import warnings

import torch
from torch import nn

from thermal_visible_fusion.learned.model import MemoryState, multiscale_fuse, StreamingFusionNet


class Mode(NamedTuple):
    """How a step runs (``StreamingFusionNet.forward``'s arguments of the same names)."""

    estimate: bool = True
    every: int = 1
    restore_ir: bool = True
    deblur: bool = True


FULL = Mode()


def _restore(model: StreamingFusionNet, ir: torch.Tensor, vis: torch.Tensor,
             state: MemoryState | None, mode: Mode = FULL,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, MemoryState]:
    """One eager step: (restored IR and visible as (B,2,H,W), new memory)."""
    out, new = model(ir, vis, state, fuse=False, noise=noise, **mode._asdict())
    return torch.cat([out.restored_ir, out.restored_vis], 1), new


def _step_inputs(ir: torch.Tensor, vis: torch.Tensor, state: MemoryState | None,
                 noise: torch.Tensor | None) -> tuple:
    """Return a compiled step's inputs: ir, vis, then the noise and memory where given."""
    return (ir, vis) + ((noise,) if noise is not None else ()) + \
        (tuple(state) if state is not None else ())


def _split_inputs(inputs: tuple, with_noise: bool, with_state: bool) -> tuple:
    """``_step_inputs`` back to (ir, vis, state, noise)."""
    ir, vis, *rest = inputs
    noise = rest.pop(0) if with_noise else None
    return ir, vis, MemoryState(*rest) if with_state else None, noise


def _step_key(ir: torch.Tensor, state: MemoryState | None, mode: Mode,
              noise: torch.Tensor | None) -> tuple:
    """Return a compiled step's key: input size, dtype, device, memory, noise, mode."""
    return (tuple(ir.shape), ir.dtype, ir.device, state is None, noise is None) + tuple(mode)


def _cached(cache: OrderedDict, key: tuple, make: Callable, limit: int):
    """
    Return ``cache[key]``, made by ``make()`` on first use.

    Least recently used out past ``limit`` (sizes come from messages: the cache
    must stay bounded).
    """
    if key not in cache:
        cache[key] = make()
        while len(cache) > limit:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


class FrozenStep:
    """
    The model's inference step, traced and frozen with TorchScript per input size.

    One graph per size and ``Mode`` (and one for the first frame, without memory): up to
    nine a size (``StreamingRunner.modes``); faster than eager on a CPU.  Falls back to
    eager, with a warning, if tracing fails.  Each trace keeps a few MB that freeing the
    graph never returns, so a stream whose size keeps changing would grow without bound:
    after ``MAX_TRACES`` traces, steps not traced yet run eager.
    """

    MAX_GRAPHS = 18  # two sizes' nine: a stream switching between two sizes keeps them
    MAX_TRACES = 32

    def __init__(self, model: StreamingFusionNet):
        self.model = model
        self.graphs: OrderedDict[tuple, torch.jit.ScriptModule | None] = OrderedDict()
        self.traces = 0

    class _Wrapped(nn.Module):

        def __init__(self, model: StreamingFusionNet, mode: Mode, with_noise: bool,
                     with_state: bool):
            super().__init__()
            self.model, self.mode = model, mode
            self.with_noise, self.with_state = with_noise, with_state

        def forward(self, *inputs):
            ir, vis, state, noise = _split_inputs(inputs, self.with_noise, self.with_state)
            restored, new = _restore(self.model, ir, vis, state, self.mode, noise)
            return (restored,) + tuple(new)

    def _trace(self, inputs: tuple[torch.Tensor, ...], mode: Mode, with_noise: bool,
               with_state: bool) -> torch.jit.ScriptModule | None:
        if self.traces >= self.MAX_TRACES:
            if self.traces == self.MAX_TRACES:
                warnings.warn(f"{self.MAX_TRACES} steps traced; steps of new sizes or modes "
                              "run eager")
                self.traces += 1
            return None
        self.traces += 1
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                wrapped = self._Wrapped(self.model, mode, with_noise, with_state).eval()
                return torch.jit.freeze(torch.jit.trace(wrapped, inputs, check_trace=False))
        except Exception as exc:  # unsupported torch build, exotic op: stay eager
            warnings.warn(f"tracing the fusion network failed ({exc}); running eager")
            return None

    def __call__(self, ir: torch.Tensor, vis: torch.Tensor, state: MemoryState | None,
                 mode: Mode = FULL, noise: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, MemoryState]:
        inputs = _step_inputs(ir, vis, state, noise)
        graph = _cached(self.graphs, _step_key(ir, state, mode, noise),
                        lambda: self._trace(inputs, mode, noise is not None, state is not None),
                        self.MAX_GRAPHS)
        if graph is None:
            return _restore(self.model, ir, vis, state, mode, noise)
        restored, *new = graph(*inputs)
        return restored, MemoryState(*new)


class CudaGraphStep:
    """
    The model's inference step replayed as CUDA graphs.

    The model's inference step replayed as CUDA graphs, one per input size, dtype,
    memory presence (first frame without it) and ``Mode``.

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

    def _capture(self, inputs: tuple[torch.Tensor, ...], mode: Mode, with_noise: bool,
                 with_state: bool) -> tuple:
        static = tuple(t.clone() for t in inputs)

        def run() -> tuple[torch.Tensor, ...]:
            ir, vis, state, noise = _split_inputs(static, with_noise, with_state)
            restored, new = _restore(self.model, ir, vis, state, mode, noise)
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

    def _capture_or_eager(self, inputs: tuple[torch.Tensor, ...], mode: Mode,
                          with_noise: bool, with_state: bool) -> tuple | None:
        try:
            return self._capture(inputs, mode, with_noise, with_state)
        except torch.cuda.OutOfMemoryError:
            raise  # transient: this frame fails, the next one tries again
        except RuntimeError as exc:  # an op that cannot be captured: this size stays eager
            warnings.warn(f"capturing the fusion network as a CUDA graph failed ({exc}); "
                          "running eager")
            return None

    def __call__(self, ir: torch.Tensor, vis: torch.Tensor, state: MemoryState | None,
                 mode: Mode = FULL, noise: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, MemoryState]:
        inputs = _step_inputs(ir, vis, state, noise)
        with torch.cuda.device(ir.device):  # capture and replay on the input's GPU (cuda:N)
            entry = _cached(self.graphs, _step_key(ir, state, mode, noise),
                            lambda: self._capture_or_eager(inputs, mode, noise is not None,
                                                           state is not None),
                            self.MAX_GRAPHS)
            if entry is None or any(b.shape != v.shape for b, v in zip(entry[1], inputs)):
                # no graph, or a memory of another size: eager, which says what is wrong
                return _restore(self.model, ir, vis, state, mode, noise)
            graph, static, outputs = entry
            for buffer, value in zip(static, inputs):
                buffer.copy_(value)
            graph.replay()
            restored, *new = (t.clone() for t in outputs)
            return restored, MemoryState(*new)


class StreamingRunner:
    """
    Feeds a stream of frames through the model, carrying the memory.

    ``push`` returns the restored pair, (1,2,H,W): IR then visible, ready to fuse.
    ``lookahead=0``: the restored pair of the frames just pushed.
    ``lookahead=k``: the output is delayed by k frames; ``push`` returns the output
    of the pair pushed k calls earlier: call i returns frame max(0, i - k), so frame 0 is
    repeated while the window fills and every call returns exactly one frame; ``flush``
    returns the frames after the last one returned (``fuse_sequence`` does it all offline).
    ``push(..., tag=x)`` keeps ``x`` with the frame: after each push ``tag`` is the tag of
    the frame just returned, and ``flush_tagged`` returns (frame, tag) pairs; the learned
    fuser tags each frame with its chroma, so a delayed frame gets its own colours.
    A delayed frame t is the average of the forward-memory output (memory of frames ..t-1)
    and a backward-memory output (memory run from frame t+k down to t+1, then applied to t).

    Tensors are (1,1,H,W) in [0, 1] on the model's device.  ``use_memory=False`` runs every
    frame with an empty memory (and disables look-ahead, which needs the memory).
    ``estimate_every=k``: after the first ``dense`` frames of a memory, the stream's stripes
    and blur are estimated on every k-th frame only (they are fixed per camera; the memory
    keeps them between estimates).
    ``skip_idle``: steps skip the restorations that would be the identity on their frame
    (``StreamingFusionNet.needed``; same output): a clean camera costs a fraction of a
    noisy one.  Deciding costs a look at the frame before the step, a device sync on a GPU.
    ``needed`` is then what the last frame needed, (IR restoration, visible deblur), the
    deblur judged by the blur memory (frames that estimate the blur run it anyway).
    ``step(ir, vis, state, mode, noise) -> (restored pair, new_state)`` replaces the model
    call (e.g. a ``FrozenStep`` or ``CudaGraphStep``); ``noise`` is the frame's
    ``measure_noise`` where deciding measured it, else None (the step measures it).
    """

    def __init__(self, model: StreamingFusionNet, use_memory: bool = True, lookahead: int = 0,
                 step: Callable | None = None, estimate_every: int = 1, dense: int = 64,
                 skip_idle: bool = False):
        if lookahead < 0:
            raise ValueError("lookahead must be >= 0")
        if isinstance(estimate_every, bool) or not isinstance(estimate_every, int) or \
                not 1 <= estimate_every <= 64:
            raise ValueError(f"estimate_every must be an integer in 1..64, got {estimate_every!r}")
        if dense < 0 or dense % estimate_every:
            raise ValueError(f"dense must be a multiple of estimate_every >= 0, got {dense}")
        self.model = model
        self.step = step or self._model_step
        self.use_memory = use_memory
        self.lookahead = lookahead if use_memory else 0
        self.estimate_every, self.dense = estimate_every, dense
        self.skip_idle = skip_idle
        self.reset()

    def _model_step(self, ir: torch.Tensor, vis: torch.Tensor, state: MemoryState | None,
                    mode: Mode = FULL, noise: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, MemoryState]:
        return _restore(self.model, ir, vis, state, mode, noise)

    def reset(self) -> None:
        self.frames = 0  # since the memory was last empty
        self.state: MemoryState | None = None
        self.needed: tuple[bool, bool] | None = None  # judged from the second frame on
        self.window: deque = deque()  # (ir, vis, forward output, tag); window[0] output last
        self.tag: Any = None  # the tag of the frame the last push returned

    @torch.no_grad()
    def _step(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        mode, noise = FULL, self._noise(ir, self.state)  # measured to decide, then stepped
        if self.state is not None:
            every = self.estimate_every if self.frames >= self.dense else 1
            mode = Mode(self.frames % every == 0, every)
        if noise is not None:
            self.needed = ir_needed, blurred = self.model.needed(noise, self.state)
            mode = mode._replace(restore_ir=ir_needed, deblur=blurred or mode.estimate)
        restored, state = self.step(ir, vis, self.state, mode, noise)
        self.state = state if self.use_memory else None
        self.frames = self.frames + 1 if self.use_memory else 0
        return restored

    def modes(self) -> list[Mode]:
        """Every mode a stream's steps after the first may run in (``warm`` runs them)."""
        if not self.use_memory:
            return []
        choices = (True, False) if self.skip_idle else (True,)
        every = self.estimate_every
        modes = [Mode(True, 1, ir) for ir in choices]  # the dense start
        if every > 1:
            modes += [Mode(True, every, ir) for ir in choices]
            modes += [Mode(False, every, ir, deblur) for ir in choices for deblur in choices]
        return modes

    @torch.no_grad()
    def warm(self, ir: torch.Tensor, vis: torch.Tensor) -> None:
        """Run every kind of step a stream of this size takes (traces, allocations); reset."""
        _, state = self.step(ir, vis, None, FULL, None)
        for mode in self.modes():
            self.step(ir, vis, state, mode, self._noise(ir, state))
        self.reset()

    def _noise(self, ir: torch.Tensor, state: MemoryState | None) -> torch.Tensor | None:
        """Return the noise a step with memory gets where steps are decided (their traces)."""
        return self.model.measure_noise(ir) if self.skip_idle and state is not None else None

    @torch.no_grad()
    def _with_lookahead(self, index: int) -> torch.Tensor:
        """Output for window[index], using the frames after it in the window."""
        state = None
        for j in range(len(self.window) - 1, index, -1):  # newest down to index+1
            ir, vis = self.window[j][:2]
            _, state = self.step(ir, vis, state, FULL, self._noise(ir, state))
        ir, vis, forward, _ = self.window[index]
        if state is None:
            return forward
        backward, _ = self.step(ir, vis, state, FULL, self._noise(ir, state))
        return 0.5 * (forward + backward)

    def push(self, ir: torch.Tensor, vis: torch.Tensor, tag: Any = None) -> torch.Tensor:
        restored = self._step(ir, vis)
        if self.lookahead == 0:
            self.tag = tag
            return restored
        self.window.append((ir, vis, restored, tag))
        if len(self.window) > self.lookahead + 1:
            self.window.popleft()
        self.tag = self.window[0][3]
        # while the window fills, frame 0 is output with the look-ahead available so far
        return self._with_lookahead(0)

    def flush_tagged(self) -> list[tuple[torch.Tensor, Any]]:
        """
        Return (frame, tag) of the frames still held back by the look-ahead.

        (frame, tag) of the frames still held back by the look-ahead (empty when
        lookahead=0), in order.
        """
        outputs = [(self._with_lookahead(i), self.window[i][3])
                   for i in range(1, len(self.window))]
        self.window.clear()
        return outputs

    def flush(self) -> list[torch.Tensor]:
        """Return the frames still held back by the look-ahead (empty when lookahead=0)."""
        return [frame for frame, _ in self.flush_tagged()]


@torch.no_grad()
def fuse_sequence(model: StreamingFusionNet, irs, viss, use_memory: bool = True,
                  lookahead: int = 0) -> list[torch.Tensor]:
    """Offline: exactly one fused (1,1,H,W) tensor per input pair, in order."""
    irs, viss = list(irs), list(viss)
    runner = StreamingRunner(model, use_memory=use_memory, lookahead=lookahead)
    outputs = [runner.push(ir, vis) for ir, vis in zip(irs, viss)]
    outputs += runner.flush()
    return [multiscale_fuse(pair[:, :1], pair[:, 1:])  # drop the warm-up repeats of frame 0
            for pair in outputs[len(outputs) - len(irs):]]
