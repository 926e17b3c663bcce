"""
Training tests.

Data layouts, degradations, the configuration, the truncated-BPTT step and a smoke run.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from thermal_visible_fusion.fusers.learned import LearnedFuser
from thermal_visible_fusion.learned.model import ModelConfig, StreamingFusionNet
from thermal_visible_fusion.learned.weights import DEFAULT_WEIGHTS, load_weights
from thermal_visible_fusion.training import train
from thermal_visible_fusion.training.data import ClipConfig, ClipSampler, discover
from thermal_visible_fusion.training.degrade import degrade_clip, DegradeConfig

torch.set_num_threads(1)


def texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.random((h // 8 + 2, w // 8 + 2)).astype(np.float32)
    big = cv2.resize(base, (w + 16, h + 16), interpolation=cv2.INTER_CUBIC)
    return np.clip(big * 255, 0, 255).astype(np.uint8)


def make_dataset(root: Path, size: int = 72, frames: int = 6) -> Path:
    """Stills ({ir,vi}), a video pair and a clip folder, with a moving texture."""
    rng = np.random.default_rng(0)
    stills = root / "stills"
    for sub in ("ir", "vi"):
        (stills / sub).mkdir(parents=True)
    for i in range(3):
        ir = texture(size, size, rng)[:size, :size]
        vis = cv2.cvtColor(texture(size, size, rng)[:size, :size], cv2.COLOR_GRAY2BGR)
        cv2.imwrite(str(stills / "ir" / f"{i:02d}.png"), ir)
        cv2.imwrite(str(stills / "vi" / f"{i:02d}.png"), vis)
    scene_ir, scene_vis = texture(size, size + frames, rng), texture(size, size + frames, rng)
    videos = root / "videos"
    videos.mkdir()
    writers = {m: cv2.VideoWriter(str(videos / f"scene_a_{m}.mp4"),
                                  cv2.VideoWriter_fourcc(*"mp4v"),
                                  10, (size, size)) for m in ("infrared", "visible")}
    clip = root / "clips" / "scene_b"
    for sub in ("ir", "vis", "ir_degraded", "vis_degraded"):
        (clip / sub).mkdir(parents=True)
    for t in range(frames):
        ir = scene_ir[:size, t:t + size]
        vis = cv2.cvtColor(scene_vis[:size, t:t + size], cv2.COLOR_GRAY2BGR)
        writers["infrared"].write(cv2.cvtColor(ir, cv2.COLOR_GRAY2BGR))
        writers["visible"].write(vis)
        cv2.imwrite(str(clip / "ir" / f"{t:04d}.png"), ir)
        cv2.imwrite(str(clip / "vis" / f"{t:04d}.png"), vis)
        noisy = np.clip(ir.astype(int) + rng.integers(-20, 21, ir.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(clip / "ir_degraded" / f"{t:04d}.png"), noisy)
        cv2.imwrite(str(clip / "vis_degraded" / f"{t:04d}.png"),
                    cv2.GaussianBlur(vis, (5, 5), 1.5))
    for w in writers.values():
        w.release()
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def frame_cache(tmp_path, monkeypatch):
    """Give runs a temporary cache folder (they decode videos into the user's)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg_cache"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    train.add_arguments(p)
    return p


def small_config(dataset: Path, out: Path, **overrides) -> train.TrainConfig:
    cfg = train.TrainConfig(
        data_root=str(dataset), data=["videos", "clips", "stills"], exclude_scenes=[],
        out=str(out / "w.pt"), max_steps=2, batch_size=1, crop=32, sequence=4, window=2,
        threads=1, workers=0, device="cpu", log_every=1,
        model={"channels": 8, "layers": 2})
    return replace(cfg, **overrides)


# ----------------------------------------------------------------------------- data

def test_discover_layouts_and_exclusion(dataset, tmp_path):
    seqs, stills = discover(dataset / "videos", tmp_path / "cache")
    assert [s.scene for s in seqs] == ["scene_a"] and not stills
    ir, vis = seqs[0].frame(0)
    assert ir.ndim == 2 and vis.shape == ir.shape + (3,)
    assert list((tmp_path / "cache").glob("*.u8"))  # decoded once into the cache
    seqs, _ = discover(dataset / "clips")
    assert [s.scene for s in seqs] == ["scene_b"] and len(seqs[0]) == 6
    seqs, _ = discover(dataset / "clips", None, exclude=["scene_b"])
    assert not seqs
    _, stills = discover(dataset / "stills")
    assert len(stills) == 3
    with pytest.raises(ValueError, match="no known data layout"):
        discover(tmp_path / "cache")


def test_sampler_clips_and_flows(dataset):
    seqs, _ = discover(dataset / "clips")
    _, stills = discover(dataset / "stills")
    sampler = ClipSampler(seqs, stills, ClipConfig(clip_len=3, crop_min=32, crop_max=32), seed=0)
    batch = sampler.batch(3)
    assert batch["ir"].shape == (3, 3, 1, 32, 32) and batch["vis"].shape == (3, 3, 3, 32, 32)
    assert batch["flow"].shape == (3, 3, 2, 32, 32) and batch["valid"].shape == (3, 3, 1, 32, 32)
    assert float(batch["ir"].min()) >= 0 and float(batch["ir"].max()) <= 1
    # the still clips' flow is exact: warping the previous frame gives the current one
    sampler = ClipSampler([], stills, ClipConfig(clip_len=3, crop_min=48, crop_max=48), seed=1)
    clip = sampler.sample(48)
    warped = train.warp(clip["vis"][:-1], clip["flow"][1:])
    mask = clip["valid"][1:]
    err = ((warped - clip["vis"][1:]).abs().mean(1, keepdim=True) * mask).sum() / mask.sum()
    assert err < 0.03
    unaligned = ((clip["vis"][:-1] - clip["vis"][1:]).abs().mean(1, keepdim=True) * mask).sum()
    assert float(unaligned / mask.sum()) > 2 * float(err)  # the camera did move


def test_degradations_follow_the_protocol():
    ir = torch.full((4, 1, 256, 64), 0.5)
    vis = torch.rand(4, 3, 256, 64)
    cfg = DegradeConfig(p_clean=0, p_low_light=0, p_haze=0, ir_stripe_mean=(0.0, 0.0))
    ir_d, vis_d, target = degrade_clip(ir, vis, cfg, torch.Generator().manual_seed(0))
    assert target is vis  # no low light: the clean frame is the target
    diff = ir_d - ir
    columns = diff.mean(2, keepdim=True)  # stripes: fixed over rows and frames
    corr = torch.corrcoef(torch.stack([columns[0].flatten(), columns[1].flatten()]))[0, 1]
    assert corr > 0.8
    assert 3 / 255 < float(columns[0].std()) < 20 / 255
    assert not torch.allclose(diff[0], diff[1])  # per-frame noise
    assert float(vis_d.std()) < float(vis.std())  # blurred
    assert torch.equal(ir, torch.full((4, 1, 256, 64), 0.5))  # inputs untouched
    clean = DegradeConfig(p_clean=1.0)
    ir_c, vis_c, target = degrade_clip(ir, vis, clean, torch.Generator().manual_seed(0))
    assert torch.equal(ir_c, ir) and torch.equal(vis_c, vis) and target is vis


def test_ir_tone_change_keeps_its_pivot_level():
    ramp = torch.linspace(0, 1, 256).view(1, 1, 1, 256).expand(2, 1, 8, 256)
    cfg = DegradeConfig(p_clean=0, p_low_light=0, p_haze=0, ir_noise=(0.0, 0.0),
                        ir_stripe=(0.0, 0.0), ir_stripe_mean=(0.0, 0.0), ir_gain=(0.8, 0.8),
                        ir_pivot=(1.0, 1.0))
    ir_d, _, _ = degrade_clip(ramp, torch.rand(2, 3, 8, 256), cfg, torch.Generator())
    # a thermal camera's gain control as measured on the M3SVD degraded clips: contrast
    # 0.8 about white, so dark parts are lifted by ~0.2 and white stays white
    assert torch.allclose(ir_d, torch.round((0.2 + 0.8 * ramp) * 255) / 255, atol=1e-6)


def test_low_light_is_tellable_from_a_dim_clean_frame():
    """
    Low light is tellable from a dim clean frame.

    Low light is darker than a third of the clean level and noisy, so a dim clean frame
    does not look like it; its target keeps the scene's light level (dark, noise-free),
    so the network learns to denoise dark frames, never to brighten them.
    """
    vis = torch.full((3, 3, 64, 64), 0.3)  # a dim clean scene
    cfg = DegradeConfig(p_clean=0, p_low_light=1, p_haze=0, vis_blur=(0.5, 0.5))
    for seed in range(20):
        _, dark, target = degrade_clip(torch.zeros(3, 1, 64, 64), vis, cfg,
                                       torch.Generator().manual_seed(seed))
        assert float(dark.mean()) < 0.1
        assert float(dark[0].std()) > 2 / 255
        # the target keeps the scene's light level but not its noise
        assert abs(float(target.mean()) - float(dark.mean())) < 4 / 255
        assert float(target[0].std()) < 1e-6


def test_training_degradations_leave_the_ir_tone_alone(dataset, monkeypatch):
    """
    The network cannot know a thermal camera's gain or offset.

    Training draws neither, or it would learn to guess one and shift clean frames.
    """
    made = {}
    real = train.ClipSampler

    def spy(sequences, stills, clip, degrade, seed):
        made["clip"], made["degrade"] = clip, degrade
        return real(sequences, stills, clip, degrade, seed)
    monkeypatch.setattr(train, "ClipSampler", spy)
    cfg = small_config(dataset, Path("unused"), p_clean=0.25, sequence=5)
    make, n_seq, n_still = train._samplers(cfg)
    batch = make(0).batch(1)
    assert (n_seq, n_still) == (2, 3)
    assert made["degrade"].ir_gain == (1.0, 1.0) and made["degrade"].ir_stripe_mean == (0.0, 0.0)
    assert made["degrade"].p_clean == 0.25
    assert batch["ir"].shape == (1, 5, 1, 32, 32)  # sequence frames of crop x crop


# ----------------------------------------------------------------------------- configuration

def test_config_file_then_cli_overrides(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"batch_size": 7, "lr": 0.5, "crop": 64,
                                                 "model": {"channels": 8, "layers": 3}}))
    args = parser().parse_args(["--config", str(tmp_path / "c.json"), "--lr", "0.1",
                                "--exclude-scenes", "a", "b", "--model-channels", "12",
                                "--model-deblur-sigmas", "1.5", "3", "--window", "4"])
    cfg = train.config_from_args(args)
    assert (cfg.batch_size, cfg.lr, cfg.crop, cfg.window) == (7, 0.1, 64, 4)
    assert cfg.exclude_scenes == ["a", "b"]
    assert cfg.model == {"channels": 12, "layers": 3, "deblur_sigmas": [1.5, 3.0]}
    assert ModelConfig.from_dict(cfg.model).deblur_sigmas == (1.5, 3.0)
    # an empty list flag is an empty list, not the default
    assert train.config_from_args(parser().parse_args(["--exclude-scenes"])).exclude_scenes == []
    (tmp_path / "c.yaml").write_text("max_minutes: 110\nexclude_scenes: [x]\n")
    cfg = train.config_from_args(parser().parse_args(["--config", str(tmp_path / "c.yaml")]))
    assert (cfg.max_minutes, cfg.exclude_scenes) == (110, ["x"])
    defaults = train.config_from_args(parser().parse_args([]))
    assert defaults == train.TrainConfig()


def test_unknown_fields_and_flags_are_refused(tmp_path):
    (tmp_path / "typo.json").write_text(json.dumps({"batchsize": 2}))
    with pytest.raises(ValueError, match="batchsize"):
        train.config_from_args(parser().parse_args(["--config", str(tmp_path / "typo.json")]))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="mapping"):
        train.config_from_args(parser().parse_args(["--config", str(tmp_path / "list.json")]))
    (tmp_path / "model.json").write_text(json.dumps({"model": {"colour": True}}))
    with pytest.raises(ValueError, match="colour"):
        train.config_from_args(parser().parse_args(["--config", str(tmp_path / "model.json")]))
    for flag in (["--resume"], ["--stage", "colour"], ["--model-typo", "1"]):
        with pytest.raises(SystemExit):
            parser().parse_args(flag)


@pytest.mark.parametrize("bad", [
    {"crop": 36}, {"crop": 24}, {"window": 0}, {"window": 9, "sequence": 8},
    {"p_clean": 1.5}, {"p_clean": -0.1}, {"max_steps": 0}, {"batch_size": 0},
    {"model": {"channels": -1}}, {"model": {"layers": 1}}, {"model": {"colour": True}}])
def test_invalid_train_config_values_raise(bad):
    with pytest.raises(ValueError):
        train.TrainConfig(**bad)


def test_a_bad_config_is_a_usage_error_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train, "run", lambda cfg: pytest.fail("must not train"))
    assert train.main(parser().parse_args(["--crop", "30"])) == 2
    assert "crop" in capsys.readouterr().err
    assert train.main(parser().parse_args(["--config", str(tmp_path / "missing.json")])) == 2


def test_train_never_writes_the_shipped_weights_by_default():
    cfg = train.config_from_args(parser().parse_args([]))
    assert Path(cfg.out).resolve() != DEFAULT_WEIGHTS.resolve()
    assert Path(cfg.out).suffix == ".pt"
    assert DEFAULT_WEIGHTS.parent.resolve() not in Path(cfg.out).resolve().parents


def test_the_learning_rate_ends_annealed_whichever_limit_comes_first():
    cfg = train.TrainConfig(max_steps=1000, max_minutes=10.0)
    assert train.lr_factor(0, 0.0, cfg) < 0.1  # warm-up
    assert 0.9 < train.lr_factor(100, 0.1, cfg) <= 1.0
    assert train.lr_factor(1000, 0.1, cfg) == pytest.approx(0.0, abs=1e-9)  # steps
    assert train.lr_factor(100, 10.0, cfg) == pytest.approx(0.0, abs=1e-9)  # minutes
    assert train.lr_factor(500, 0.0, cfg) == pytest.approx(0.5, abs=0.01)


# ----------------------------------------------------------------------------- the step

def sequence_batch(frames: int = 4, size: int = 32, batch: int = 2, noise: float = 0.05,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """
    Make a camera panning one pixel per frame over a smooth scene.

    ``flow`` is that motion, the degraded frames get noise.
    """
    g = torch.Generator().manual_seed(seed)
    scene = torch.nn.functional.interpolate(torch.rand(batch, 4, 8, 8 + frames, generator=g),
                                            size=(size, size + frames), mode="bicubic",
                                            align_corners=False).clamp(0, 1)
    ir = torch.stack([scene[:, :1, :, t:t + size] for t in range(frames)], 1)
    vis = torch.stack([scene[:, 1:, :, t:t + size] for t in range(frames)], 1)
    flow = torch.zeros(batch, frames, 2, size, size)
    flow[:, 1:, 0] = 1.0  # prev(x + 1) = cur(x)
    valid = torch.ones(batch, frames, 1, size, size)
    valid[..., -1:] = 0  # seen first in this frame
    valid[:, 0] = 0
    return {"ir": ir, "vis": vis,
            "ir_degraded": ir + noise * torch.randn(ir.shape, generator=g),
            "vis_degraded": vis + noise * torch.randn(vis.shape, generator=g),
            "flow": flow, "valid": valid}


def identity_model() -> StreamingFusionNet:
    """
    Return a network that returns its inputs.

    Blur class "none", no temporal gain, no stripe removal.
    """
    model = StreamingFusionNet(ModelConfig(stripe_floor=100.0, stripe_full=101.0))
    with torch.no_grad():
        model.blur_classifier[-1].weight.zero_()
        model.blur_classifier[-1].bias.copy_(torch.tensor([30.0, 0, 0, 0, 0]))
        model.denoiser[-1].bias[4:] = -30.0
    return model


def test_losses_vanish_for_a_network_that_returns_the_clean_frames():
    """
    Losses vanish for a network that returns the clean frames.

    When the output is the target (clean input, identity network) every term, the
    temporal one included, is zero; noisy input makes each restoration term positive.
    """
    model = identity_model().train()
    clean = sequence_batch(noise=0.0)
    mask = clean["valid"][:, 1].bool()  # the batch's flow is the camera's motion
    assert torch.equal(train.warp(clean["ir"][:, 0], clean["flow"][:, 1])[mask],
                       clean["ir"][:, 1][mask])
    clean["ir_degraded"], clean["vis_degraded"] = clean["ir"], clean["vis"]
    cfg = train.TrainConfig(sequence=4, window=2)
    losses = train.sequence_losses(model, clean, cfg)
    assert set(losses) == {"ir", "vis", "fused", "temporal", "total"}
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in losses.values()), losses
    noisy = train.sequence_losses(model, sequence_batch(noise=0.05), cfg)
    for name in ("ir", "vis", "fused", "temporal"):
        assert noisy[name] > 1e-3, name
    assert noisy["total"] == pytest.approx(sum(noisy[k] for k in ("ir", "vis", "fused",
                                                                  "temporal")))


def test_sequence_losses_step_once_per_window_and_carry_the_memory():
    """
    Truncated BPTT.

    The memory runs through the whole sequence (the last state has seen every frame),
    the gradient only through a window (the state entering a window has no graph), and
    the optimiser steps once per window.
    """
    torch.manual_seed(0)
    model = StreamingFusionNet(ModelConfig(channels=8, layers=2)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = []
    step = optimiser.step
    optimiser.step = lambda *a, **k: (steps.append(1), step(*a, **k))[1]
    calls = []
    model.register_forward_hook(lambda m, args, out: calls.append((args[2], out[1])))
    cfg = train.TrainConfig(sequence=6, window=2)
    losses = train.sequence_losses(model, sequence_batch(frames=6), cfg, optimiser)
    assert all(np.isfinite(v) for v in losses.values())
    assert len(steps) == 3 and len(calls) == 6
    assert calls[0][0] is None
    for t, (state_in, state_out) in enumerate(calls):
        assert state_out.count.flatten().tolist() == [t + 1, t + 1]  # one memory, carried
        if t % cfg.window == 0 and t:
            assert all(s.grad_fn is None for s in state_in), t  # detached at the window
        elif t:
            assert state_in.ir.grad_fn is not None, t  # the gradient runs within a window
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # without an optimiser: losses only, the weights stay
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    train.sequence_losses(model, sequence_batch(frames=6), cfg)
    assert all(torch.equal(v, frozen[k]) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- a run

def test_smoke_run_writes_loadable_weights(dataset, tmp_path):
    cfg = small_config(dataset, tmp_path)
    summary = train.run(cfg)
    assert list((tmp_path / "xdg_cache").rglob("*.u8"))  # the video was decoded there
    assert summary["steps"] == 2 and summary["out"] == cfg.out
    config, _, meta = load_weights(cfg.out)
    assert config == ModelConfig(channels=8, layers=2)
    assert meta["steps"] == 2 and json.loads(meta["train_config"])["sequence"] == 4
    fuser = LearnedFuser(cfg.out, device="cpu")
    thermal = np.zeros((20, 30), np.uint8)
    assert fuser.fuse(thermal, np.zeros((20, 30, 3), np.uint8)).shape == (20, 30, 3)


def test_time_budget_stops_training(dataset, tmp_path):
    cfg = small_config(dataset, tmp_path, max_steps=1000, max_minutes=1e-6)
    steps = train.run(cfg)["steps"]
    assert steps <= 1  # the budget is checked before each step
    assert load_weights(cfg.out)[2]["steps"] == steps  # and the weights are still written


def test_fine_tuning_starts_from_the_given_weights(dataset, tmp_path):
    """``--init`` continues from a weights file: its config, and its values as the start."""
    first = small_config(dataset, tmp_path / "a")
    train.run(first)
    _, start, _ = load_weights(first.out)
    # another seed: a fresh network of that config would start from other values
    tuned = replace(small_config(dataset, tmp_path / "b", init=first.out, model={}), lr=1e-3,
                    seed=1)
    train.run(tuned)
    config, after, meta = load_weights(tuned.out)
    assert config == ModelConfig(channels=8, layers=2)  # the init file's, not the default
    assert json.loads(meta["train_config"])["init"] == first.out
    moved = [float((after[k] - start[k]).abs().max()) for k in start]
    assert 0 < max(moved) < 0.05  # trained on from there, not from a fresh network


def test_init_takes_no_model_fields_and_must_load(tmp_path, capsys):
    with pytest.raises(ValueError, match="init"):
        train.TrainConfig(init="w.pt", model={"channels": 8})
    missing = str(tmp_path / "missing.pt")
    assert train.main(parser().parse_args(["--init", missing, "--out",
                                           str(tmp_path / "w.pt")])) == 2
    assert "missing.pt" in capsys.readouterr().err
