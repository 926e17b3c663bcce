"""``tvf fuse``: one PNG per input frame, strict weights, look-ahead handled in order."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from thermal_visible_fusion.cli import main as tvf
from thermal_visible_fusion.learned.runtime import StreamingRunner

N, W, H = 8, 64, 48


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """Two folders of N small frames: uint8 thermal (passes the normaliser unchanged)."""
    root = tmp_path_factory.mktemp("fuse_frames")
    rng = np.random.default_rng(7)
    base_t = cv2.GaussianBlur(rng.integers(0, 256, (H, W)).astype(np.uint8), (5, 5), 0)
    base_c = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3)).astype(np.uint8), (5, 5), 0)
    (root / "ir").mkdir()
    (root / "vis").mkdir()
    for i in range(N):  # a scene drifting one pixel per frame, plus noise
        noise = rng.integers(-8, 9, (H, W, 3))
        thermal = np.clip(np.roll(base_t, i, axis=1) + noise[..., 0], 0, 255).astype(np.uint8)
        rgb = np.clip(np.roll(base_c, i, axis=1) + noise, 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "ir" / f"{i:03d}.png"), thermal)
        cv2.imwrite(str(root / "vis" / f"{i:03d}.png"), rgb)
    return root


@pytest.fixture(scope="module")
def weights(fresh_weights) -> Path:
    """Provide a fresh network whose memory (and so look-ahead) visibly matters (conftest)."""
    return fresh_weights


def fuse(frames: Path, out: Path, *extra: str) -> int:
    return tvf(["fuse", "--ir", str(frames / "ir"), "--rgb", str(frames / "vis"),
                "--out", str(out), "--device", "cpu", *extra])


def read_outputs(out: Path) -> list[np.ndarray]:
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:04d}.png" for i in range(N)]
    return [cv2.imread(str(out / name)) for name in names]


def test_classic_fuser_writes_one_png_per_frame(frames, tmp_path):
    assert fuse(frames, tmp_path / "out", "--fuser", "multiscale") == 0
    outputs = read_outputs(tmp_path / "out")
    assert all(o.shape == (H, W, 3) for o in outputs)


def test_learned_with_missing_weights_is_an_error_naming_the_file(frames, tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    assert fuse(frames, tmp_path / "out", "--fuser", "learned", "--weights", str(missing)) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "error" in err and "falling back" not in err
    assert not (tmp_path / "out").exists()
    # explicit --weights with auto is just as strict
    assert fuse(frames, tmp_path / "out", "--weights", str(missing)) == 2
    assert str(missing) in capsys.readouterr().err


@pytest.mark.parametrize("extra", [("--fuser", "multiscale"), ("--fuser", "average"),
                                   ("--fuser", "learned", "--no-memory")])
def test_lookahead_needs_the_learned_fuser_with_memory(frames, tmp_path, capsys, extra):
    assert fuse(frames, tmp_path / "out", "--lookahead", "2", *extra) == 2
    err = capsys.readouterr().err
    assert "--lookahead" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def _expected(frames: Path, weights: Path, lookahead: int) -> list[np.ndarray]:
    """
    Return what the network gives offline for each frame, in order.

    The look-ahead runner's restored pairs (learned.runtime.StreamingRunner, eager), fused by the
    multi-scale rule with the frame's chroma, as the learned fuser does.
    """
    from thermal_visible_fusion.fusers.classic import MultiScaleFuser, merge_luma
    from thermal_visible_fusion.learned.weights import load_model

    model = load_model(weights)
    thermal = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((frames / "ir").iterdir())]
    ycrcb = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2YCrCb)
             for p in sorted((frames / "vis").iterdir())]

    def tensor(a):
        return torch.from_numpy(a).float()[None, None] / 255.0

    runner = StreamingRunner(model, lookahead=lookahead)
    pairs = [runner.push(tensor(t), tensor(c[..., 0])) for t, c in zip(thermal, ycrcb)]
    pairs = (pairs + runner.flush())[-N:]  # without the warm-up repeats of frame 0
    out = []
    for pair, c in zip(pairs, ycrcb):
        ir, y = (pair[0] * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
        out.append(merge_luma(MultiScaleFuser().fuse_luma(ir, y), c.copy()))
    return out


def test_learned_lookahead_writes_every_frame_in_order(frames, weights, tmp_path):
    args = ("--fuser", "learned", "--weights", str(weights))
    assert fuse(frames, tmp_path / "plain", *args) == 0
    assert fuse(frames, tmp_path / "ahead", *args, "--lookahead", "2") == 0
    plain, ahead = read_outputs(tmp_path / "plain"), read_outputs(tmp_path / "ahead")
    expected = _expected(frames, weights, 2)
    for k in range(N):
        # frame k is the network's look-ahead output for frame k (traced vs eager: +-1)
        diff = np.abs(ahead[k].astype(int) - expected[k].astype(int))
        assert diff.max() <= 3 and diff.mean() < 0.5, (k, diff.max(), diff.mean())
        # ... and not that of a neighbouring frame
        for j in (k - 1, k + 1):
            if 0 <= j < N:
                assert np.abs(ahead[k].astype(int) - expected[j].astype(int)).mean() > 2, (k, j)
    assert any(not np.array_equal(a, p) for a, p in zip(ahead, plain))


def test_learned_lookahead_longer_than_the_clip(frames, weights, tmp_path):
    out = tmp_path / "out"
    assert fuse(frames, out, "--fuser", "learned", "--weights", str(weights),
                "--lookahead", str(N + 2)) == 0
    expected = _expected(frames, weights, N + 2)
    for k, image in enumerate(read_outputs(out)):
        assert np.abs(image.astype(int) - expected[k].astype(int)).max() <= 3, k
