"""
The CUDA path (half precision, channels-last, CUDA graphs).

These run on a CUDA machine (``scripts/gpu_benchmark.sh`` runs them first) and skip
elsewhere.  They use a fresh network whose memory matters (conftest
``fresh_weights``), not the shipped file: they compare execution paths, not what the
weights learned.
"""

import numpy as np
import pytest
import torch

from thermal_visible_fusion.data.synthetic import SyntheticScene
from thermal_visible_fusion.fusers.learned import LearnedFuser
from thermal_visible_fusion.learned.runtime import _restore, CudaGraphStep

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture
def weights(fresh_weights):
    return fresh_weights


def _stream(frames: int, width: int = 160, height: int = 120) -> list:
    scene = SyntheticScene(width, height)
    return [scene.frame(i) for i in range(frames)]


def _fuse_all(fuser: LearnedFuser, frames: list) -> list[np.ndarray]:
    return [fuser.fuse(thermal, rgb) for thermal, rgb in frames] + fuser.flush()


@needs_cuda
@pytest.mark.parametrize("lookahead", [0, 2])
def test_cuda_graphs_fuse_the_frames_eager_execution_fuses(weights, lookahead):
    # two sizes in one stream: each gets its own graphs, the memory restarts between them
    frames = _stream(6) + _stream(4, 96, 64)
    graphs = LearnedFuser(weights, device="cuda", lookahead=lookahead)
    eager = LearnedFuser(weights, device="cuda", lookahead=lookahead, cuda_graphs=False)
    with_graphs, without = _fuse_all(graphs, frames), _fuse_all(eager, frames)
    captured = graphs.runner.step.graphs
    assert len(captured) == 4 and all(entry is not None for entry in captured.values())
    assert [f.shape for f in with_graphs] == [f.shape for f in without]
    for a, b in zip(with_graphs, without):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


@needs_cuda
def test_half_precision_on_the_gpu_fuses_what_the_cpu_fuses(weights):
    frames = _stream(10, 320, 240)
    gpu, cpu = LearnedFuser(weights, device="cuda"), LearnedFuser(weights, device="cpu")
    diffs = [np.abs(gpu.fuse(t, r).astype(int) - cpu.fuse(t, r).astype(int)) for t, r in frames]
    assert np.mean([d.mean() for d in diffs]) < 1.0  # grey levels
    assert max(d.max() for d in diffs) <= 32


def test_cuda_graphs_need_a_cuda_device(weights):
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device"):
        LearnedFuser(weights, device="cpu", cuda_graphs=True)


@needs_cuda
def test_a_failed_capture_warns_and_fuses_eager(weights, monkeypatch):
    frames = _stream(4)
    eager = _fuse_all(LearnedFuser(weights, device="cuda", cuda_graphs=False), frames)

    class Uncapturable:

        def __init__(self):
            raise RuntimeError("capture not supported here")

    monkeypatch.setattr(torch.cuda, "CUDAGraph", Uncapturable)
    fuser = LearnedFuser(weights, device="cuda")
    with pytest.warns(UserWarning, match="CUDA graph failed"):
        fused = _fuse_all(fuser, frames)
    assert list(fuser.runner.step.graphs.values()) == [None, None]
    for a, b in zip(fused, eager):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


@needs_cuda
def test_the_graph_cache_is_bounded(weights):
    fuser = LearnedFuser(weights, device="cuda")
    fuser.runner.step.MAX_GRAPHS = 2
    for width in (64, 96, 128):
        _fuse_all(fuser, _stream(2, width, 48))
    assert len(fuser.runner.step.graphs) == 2  # the newest size's two graphs


@needs_cuda
def test_bf16_is_refused_on_a_gpu(weights):
    with pytest.raises(ValueError, match="bf16 is for a CPU"):
        LearnedFuser(weights, device="cuda", bf16=True)


@needs_cuda
def test_cuda_graphs_and_the_torchscript_trace_exclude_each_other(weights):
    traced = LearnedFuser(weights, device="cuda", jit=True)
    assert traced.runner.step.__class__.__name__ == "FrozenStep"
    with pytest.raises(ValueError, match="jit off"):
        LearnedFuser(weights, device="cuda", jit=True, cuda_graphs=True)


@needs_cuda
@pytest.mark.parametrize("given_noise", [False, True])
def test_a_graph_step_returns_the_restored_pair_and_memory_of_an_eager_step(
        weights, given_noise):
    """
    The replayed step gives what the model gives.

    The restored (IR, visible) pair, (1,2,H,W), and the same memory, frame after
    frame (a graph per memory presence), also with the noise measured outside the step.
    """
    fuser = LearnedFuser(weights, device="cuda", cuda_graphs=False)
    model, step = fuser.model, CudaGraphStep(fuser.model)
    g = torch.Generator().manual_seed(0)
    state_graph = state_eager = None
    with torch.inference_mode():
        for _ in range(4):
            ir, vis = (torch.rand(1, 1, 48, 64, generator=g).to("cuda", fuser.dtype)
                       for _ in range(2))
            noise = model.measure_noise(ir) if given_noise and state_graph is not None \
                else None
            pair, state_graph = step(ir, vis, state_graph, noise=noise)
            expected, state_eager = _restore(model, ir, vis, state_eager)
            assert pair.shape == (1, 2, 48, 64)
            assert (pair - expected).abs().max() < 2 / 255
            for a, b in zip(state_graph, state_eager):
                assert (a.float() - b.float()).abs().max() < 2 / 255
    assert len(step.graphs) == 2 and all(v is not None for v in step.graphs.values())
