"""Training smoke tests: data layouts, degradations, a few steps, resume, DDP on gloo."""

from __future__ import annotations

import argparse
import json
import os
import socket
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from thermal_visible_fusion import train
from thermal_visible_fusion.fusers.learned import LearnedFuser
from thermal_visible_fusion.training.data import ClipConfig, ClipSampler, discover
from thermal_visible_fusion.training.degrade import DegradeConfig, degrade_clip
from thermal_visible_fusion.training.losses import multiscale_target, temporal_loss

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
    writers = {m: cv2.VideoWriter(str(videos / f"scene_a_{m}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
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
        cv2.imwrite(str(clip / "vis_degraded" / f"{t:04d}.png"), cv2.GaussianBlur(vis, (5, 5), 1.5))
    for w in writers.values():
        w.release()
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


def small_config(dataset: Path, out: Path, **overrides) -> train.TrainConfig:
    cfg = train.TrainConfig(
        data_root=str(dataset), data=["videos", "clips", "stills"], exclude_scenes=[],
        cache_dir=str(out / "cache"), clip_len=2, crop_min=32, crop_max=40, batch_size=1,
        max_steps=2, threads=1, device="cpu", out_dir=str(out / "run"), log_every=1,
        ckpt_every=0, val_data="", export=str(out / "exported.pt"), warmup_steps=1,
        calibrate_batches=2,
        model={"channels": 16, "semantic_channels": 16, "align_channels": 16})
    return replace(cfg, **overrides)


# ----------------------------------------------------------------------------- data

def test_discover_layouts_and_exclusion(dataset, tmp_path):
    seqs, stills = discover(dataset / "videos", tmp_path / "cache")
    assert [s.scene for s in seqs] == ["scene_a"] and not stills
    ir, vis = seqs[0].frame(0)
    assert ir.ndim == 2 and vis.shape == ir.shape + (3,)
    assert list((tmp_path / "cache").glob("*.u8"))  # decoded once into the cache
    seqs, _ = discover(dataset / "clips", None, exclude=["scene_b"])
    assert not seqs
    _, stills = discover(dataset / "stills")
    assert len(stills) == 3
    with pytest.raises(ValueError, match="no known data layout"):
        discover(tmp_path)


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
    from thermal_visible_fusion.model import warp
    warped = warp(clip["vis"][:-1], clip["flow"][1:])
    mask = clip["valid"][1:]
    err = ((warped - clip["vis"][1:]).abs().mean(1, keepdim=True) * mask).sum() / mask.sum()
    assert err < 0.03


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
    """Low light is darker than a third of the clean level and noisy, so a dim clean frame
    does not look like it; its target keeps the scene's light level (dark, noise-free),
    so the network learns to denoise dark frames, never to brighten them."""
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


def test_multiscale_target_is_the_multiscale_fuser():
    """The training target is what ``--fuser multiscale`` makes of the clean frames."""
    from thermal_visible_fusion.fusers.classic import MultiScaleFuser
    from thermal_visible_fusion.synthetic import SyntheticScene

    for w, h in ((160, 120), (97, 83)):  # odd sizes too; >= 64 px keeps all 4 levels
        thermal, rgb = SyntheticScene(w, h).frame(3)
        expected = cv2.cvtColor(MultiScaleFuser().fuse(thermal, rgb), cv2.COLOR_BGR2YCrCb)[..., 0]
        luma = cv2.cvtColor(rgb, cv2.COLOR_BGR2YCrCb)[..., 0]

        def tensor(a):
            return torch.from_numpy(a).float().div(255)[None, None]

        got = multiscale_target(tensor(thermal), tensor(luma))[0, 0].clamp(0, 1) * 255
        assert cv2.PSNR(expected, got.round().byte().numpy()) > 40
    assert multiscale_target(torch.rand(1, 1, 9, 9), torch.rand(1, 1, 9, 9)).shape == (1, 1, 9, 9)


def test_temporal_loss_is_zero_for_consistent_motion():
    x = torch.rand(1, 1, 16, 16)
    flow = torch.zeros(1, 2, 16, 16)
    valid = torch.ones(1, 1, 16, 16)
    same = temporal_loss(x, x, x, x, x, x, flow, valid)
    assert float(same["excess"]) == 0 and float(same["flicker"]) == 0
    noisy = temporal_loss(x + 0.1 * torch.rand_like(x), x, x, x, x, x, flow, valid)
    assert float(noisy["flicker"]) > 0


# ----------------------------------------------------------------------------- CLI / config

def test_config_file_then_cli_overrides(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"batch_size": 7, "lr": 0.5,
                                                 "model": {"channels": 16}}))
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(["--config", str(tmp_path / "c.json"), "--lr", "0.1",
                              "--exclude-scenes", "a", "b", "--model-semantic-channels", "8",
                              "--resume"])
    cfg = train.config_from_args(args)
    assert (cfg.batch_size, cfg.lr, cfg.exclude_scenes) == (7, 0.1, ["a", "b"])
    assert cfg.model == {"channels": 16, "semantic_channels": 8} and cfg.resume == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--teacher", "resnet"])
    legacy = train.config_from_args(parser.parse_args(["--no-model-band-fusion"]))
    assert legacy.model == {"band_fusion": False}
    (tmp_path / "c.yaml").write_text("max_minutes: 110\nexclude_scenes: [x]\n")
    cfg = train.config_from_args(parser.parse_args(["--config", str(tmp_path / "c.yaml")]))
    assert (cfg.max_minutes, cfg.exclude_scenes) == (110, ["x"])
    (tmp_path / "bad.json").write_text(json.dumps({"teacher": "resnet"}))
    with pytest.raises(ValueError, match="teacher"):
        train.config_from_args(parser.parse_args(["--config", str(tmp_path / "bad.json")]))
    (tmp_path / "target.json").write_text(json.dumps({"fusion_target": "mean"}))
    with pytest.raises(ValueError, match="fusion_target"):
        train.config_from_args(parser.parse_args(["--config", str(tmp_path / "target.json")]))
    (tmp_path / "typo.json").write_text(json.dumps({"batchsize": 2}))
    with pytest.raises(ValueError, match="batchsize"):
        train.config_from_args(parser.parse_args(["--config", str(tmp_path / "typo.json")]))


# ----------------------------------------------------------------------------- training

def test_smoke_training_checkpoint_resume_export(dataset, tmp_path):
    cfg = small_config(dataset, tmp_path)
    summary = train.run(cfg)
    assert summary["step"] == 2
    ckpt = torch.load(summary["checkpoint"], weights_only=True)
    assert ckpt["step"] == 2
    fuser = LearnedFuser(summary["exported"], device="cpu")  # exported weights load
    thermal = np.zeros((20, 30), np.uint8)
    assert fuser.fuse(thermal, np.zeros((20, 30, 3), np.uint8)).shape == (20, 30, 3)
    resumed = train.run(replace(cfg, max_steps=3, resume="auto"))
    assert resumed["step"] == 3
    log = [json.loads(line) for line in (Path(cfg.out_dir) / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log][-1] == 3
    assert {"distill", "flow", "colour"} <= set(log[-1])


def test_colour_stage_trains_only_the_colour_branch(dataset, tmp_path):
    from thermal_visible_fusion.fusers.learned import load_model, load_weights, save_weights
    from thermal_visible_fusion.model import ModelConfig, StreamingFusionNet

    small = {"channels": 16, "semantic_channels": 16, "align_channels": 16}
    base = StreamingFusionNet(ModelConfig(colour=False, **small))
    init = save_weights(base, tmp_path / "base.pt", {"steps": 7, "minutes": 1.5})
    with pytest.raises(ValueError, match="--init"):
        train.config_from_args(argparse.Namespace(stage="colour"))
    summary = train.run(small_config(dataset, tmp_path, stage="colour", init=str(init),
                                     max_steps=3, batch_size=2, lr=1e-2, model={}))
    trained = load_model(summary["exported"])
    assert trained.chroma is not None
    before = base.state_dict()
    for name, value in trained.state_dict().items():
        if name.startswith("chroma."):
            continue
        assert torch.equal(value, before[name]), name  # the fusion is frozen bit for bit
    assert any(p.abs().sum() > 0 for p in trained.chroma.head.parameters())  # it learned
    _, _, meta = load_weights(summary["exported"])
    assert meta["steps"] == 7 and meta["colour_steps"] == 3  # both trainings on record
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert set(log[-1]) >= {"colour"} and "intensity" not in log[-1]


def test_finetuning_adds_the_band_statistics_and_counts_the_whole_training(dataset, tmp_path):
    from thermal_visible_fusion.fusers.learned import load_model, load_weights, save_weights
    from thermal_visible_fusion.model import ModelConfig, StreamingFusionNet

    small = {"channels": 16, "semantic_channels": 16, "align_channels": 16}
    base = StreamingFusionNet(ModelConfig(colour=False, band_statistics=False, **small))
    init = save_weights(base, tmp_path / "base.pt", {"steps": 7, "minutes": 1.5})
    summary = train.run(small_config(dataset, tmp_path, init=str(init), max_steps=2,
                                     batch_size=2, lr=1e-2, model={"band_statistics": True}))
    tuned = load_model(summary["exported"])
    assert tuned.statistics is not None
    assert float(tuned.statistics.weight.detach().abs().sum()) > 0  # the new part learned
    _, _, meta = load_weights(summary["exported"])
    assert (meta["steps"], meta["finetune_steps"]) == (9, 2)
    assert meta["minutes"] == pytest.approx(1.5 + meta["finetune_minutes"], abs=0.02)


def test_burn_in_gives_the_loss_older_memories(dataset):
    """Frames before the clip run without gradient and hand their memory to the loss's
    frames, their number drawn per step from 0..burn_in_max."""
    from thermal_visible_fusion.model import ModelConfig, StreamingFusionNet

    cfg = small_config(dataset, Path("unused"), clip_len=2, burn_in_max=3)
    model = StreamingFusionNet(ModelConfig.from_dict(cfg.model))
    trainer = train.ClipTrainer(model, None, cfg)
    seqs, stills = discover(dataset / "clips")[0], discover(dataset / "stills")[1]
    batch = ClipSampler(seqs, stills, ClipConfig(clip_len=5, crop_min=32, crop_max=32),
                        DegradeConfig(), seed=0).batch(1)
    calls: list[tuple[bool, bool, torch.Tensor]] = []
    model.register_forward_hook(lambda m, args, out: calls.append(
        (torch.is_grad_enabled(), args[2] is not None, args[0])))
    burn_ins = set()
    for _ in range(16):
        calls.clear()
        total, _ = trainer(batch, None)
        assert torch.isfinite(total) and total.requires_grad
        graded = [c for c in calls if c[0]]
        assert len(graded) == cfg.clip_len  # the loss sees clip_len frames, the last ones
        assert all(torch.equal(c[2], batch["ir_degraded"][:, 3 + i])
                   for i, c in enumerate(graded))
        burn = len(calls) - cfg.clip_len
        assert graded[0][1] == (burn > 0)  # their memory is carried into the clip
        burn_ins.add(burn)
    assert burn_ins == {0, 1, 2, 3}
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    with pytest.raises(ValueError, match="burn_in_max"):
        train.config_from_args(parser.parse_args(["--burn-in-max", "-1"]))


def _blocky_batches(blur: float = 0.0, noise: float = 0.0, n: int = 3, size: int = 48
                    ) -> list[dict[str, torch.Tensor]]:
    """3-frame clips of sharp-edged block textures; the degraded frames are the clean ones
    blurred by ``blur`` px and with Gaussian noise of std ``noise``."""
    from thermal_visible_fusion.training.degrade import gaussian_blur

    g = torch.Generator().manual_seed(0)

    def blocks(channels: int) -> torch.Tensor:  # (1,T,C,S,S)
        x = torch.rand(3, 1, size // 4, size // 4, generator=g).repeat_interleave(4, -1)
        return x.repeat_interleave(4, -2).expand(-1, channels, -1, -1)[None].contiguous()

    def degrade(x: torch.Tensor) -> torch.Tensor:
        if blur:
            x = gaussian_blur(x.flatten(0, 1), blur).unflatten(0, x.shape[:2])
        return x + noise * torch.randn(x.shape, generator=g)

    return [{"ir": ir, "vis": vis, "ir_degraded": degrade(ir), "vis_degraded": degrade(vis)}
            for ir, vis in ((blocks(1), blocks(3)) for _ in range(n))]


def test_detail_gain_gives_the_fused_frames_the_targets_edge_strength():
    """A network that fuses blurred inputs shows softer edges than the target fusion of
    the clean frames: the calibrated unsharp mask brings their mean Sobel magnitude to the
    target's; it never blurs an output that is already sharper (noisy)."""
    from thermal_visible_fusion.model import ModelConfig, StreamingFusionNet
    from thermal_visible_fusion.training import losses, sharpness

    model = StreamingFusionNet(ModelConfig(detail_gain=0.3)).eval()
    blurred = _blocky_batches(blur=1.5)
    calibration = sharpness.calibrate_detail_gain(model, blurred)
    assert model.config.detail_gain == 0.3  # measured unmasked, left as it was
    assert calibration.edge_ratio < 0.9 and 0.2 < calibration.gain < sharpness.MAX_GAIN
    assert calibration.frames == 9

    def edge_strengths(gain: float) -> tuple[float, float]:
        model.config.detail_gain = gain
        shown = target = 0.0
        with torch.no_grad():
            for batch in blurred:
                state = None
                for t in range(3):
                    vis = losses.clip_luma(batch["vis"])[:, t]
                    out, state = model(batch["ir_degraded"][:, t],
                                       losses.clip_luma(batch["vis_degraded"])[:, t], state)
                    shown += float(losses.sobel_magnitude(out.fused.clamp(0, 1)).mean())
                    reference = losses.fusion_reference(batch["ir"][:, t], vis)
                    target += float(losses.sobel_magnitude(reference).mean())
        return shown, target

    shown, target = edge_strengths(calibration.gain)
    assert shown == pytest.approx(target, rel=0.01)
    assert edge_strengths(0.0)[0] < 0.9 * target
    noisy = sharpness.calibrate_detail_gain(model, _blocky_batches(noise=0.5))
    assert noisy.edge_ratio > 1.0 and noisy.gain == 0.0


def _still_noisy_batches(n: int = 2, frames: int = 8, size: int = 32
                         ) -> list[dict[str, torch.Tensor]]:
    """Clips of a still scene (zero flow, every pixel valid) whose inputs get fresh noise
    every frame: a fusion without memory flickers, the output filter steadies it."""
    g = torch.Generator().manual_seed(3)
    batches = []
    for _ in range(n):
        ir = torch.rand(1, 1, 1, size, size, generator=g).expand(-1, frames, -1, -1, -1)
        vis = torch.rand(1, 1, 3, size, size, generator=g).expand(-1, frames, -1, -1, -1)
        batches.append({
            "ir": ir, "vis": vis,
            "ir_degraded": ir + 0.1 * torch.randn(ir.shape, generator=g),
            "vis_degraded": vis + 0.1 * torch.randn(vis.shape, generator=g),
            "flow": torch.zeros(1, frames, 2, size, size),
            "valid": torch.ones(1, frames, 1, size, size)})
    return batches


def test_output_pull_is_the_weakest_that_steadies_the_output_enough():
    """The calibration scales the output filter's gain down to the weakest grid value whose
    fused frames change, flow-warped, by at most ``1 - reduction`` of no memory's; a target
    the full pull cannot reach keeps the full pull.  The model is left as it was."""
    from thermal_visible_fusion.model import ModelConfig, StreamingFusionNet
    from thermal_visible_fusion.training import steadiness

    torch.manual_seed(0)
    model = StreamingFusionNet(ModelConfig(detail_gain=0.4, output_pull=0.5)).train()
    with torch.no_grad():
        model.head.bias[32:64] = -20.0  # the restoration's temporal filter closed
        model.head.bias[-16:] = 1.0  # the output filter's gate about 0.73 open
    batches = _still_noisy_batches()
    loose = steadiness.calibrate_output_pull(model, batches, reduction=0.3)
    assert (model.config.detail_gain, model.config.output_pull) == (0.4, 0.5)
    assert model.training  # measured in eval mode, mode restored
    assert loose.full_ratio < loose.ratio <= 0.7 and loose.reached
    assert 0.0 < loose.pull < 1.0 and loose.frames == 16
    model.eval()
    # one grid step weaker would not have been steady enough
    model.config.output_pull = loose.pull - 1 / steadiness.GRID_STEPS
    model.config.detail_gain = 0.0
    weaker = steadiness._change(model, batches, True) / steadiness._change(model, batches, False)
    assert weaker > 0.7
    model.config.detail_gain, model.config.output_pull = 0.4, 0.5
    tight = steadiness.calibrate_output_pull(model, batches, reduction=0.95)
    assert tight.pull == 1.0 and tight.ratio == tight.full_ratio > 0.05 and not tight.reached
    with pytest.raises(ValueError, match="reduction"):
        steadiness.calibrate_output_pull(model, batches, reduction=0.0)


def test_weights_are_calibrated_after_training_and_train_unmasked(dataset, tmp_path):
    """``--init W --max-steps 0`` re-measures an existing file's gain; training itself
    always sees the unmasked frames."""
    from thermal_visible_fusion.fusers.learned import load_weights, save_weights
    from thermal_visible_fusion.model import ModelConfig, StreamingFusionNet

    small = {"channels": 16, "semantic_channels": 16, "align_channels": 16}
    calibrated = ModelConfig(detail_gain=2.5, output_pull=0.33, **small)  # 0.33: off the grid
    init = save_weights(StreamingFusionNet(calibrated), tmp_path / "base.pt",
                        {"steps": 7, "minutes": 1.5, "output_pull_ratio": 0.5})
    cfg = small_config(dataset, tmp_path, init=str(init), max_steps=0, model={})
    initial = train._initial_model(cfg)[0].config
    assert (initial.detail_gain, initial.output_pull) == (0.0, 1.0)  # the loss's view
    summary = train.run(cfg)
    config, _, meta = load_weights(summary["exported"])
    assert config.detail_gain == summary["detail_gain"] != 2.5
    assert config.output_pull == summary["output_pull"] != 0.33
    assert meta["output_pull_ratio"] != 0.5  # measured again, not the init's
    assert meta["steps"] == 7 and "finetune_steps" not in meta  # no training was added
    assert 0 < meta["detail_edge_ratio"] < 1
    uncalibrated = train.run(replace(cfg, calibrate_batches=0,
                                     export=str(tmp_path / "plain.pt")))
    plain, _, plain_meta = load_weights(uncalibrated["exported"])
    assert (plain.detail_gain, plain.output_pull) == (0.0, 1.0)
    assert "output_pull" not in uncalibrated and "output_pull_ratio" not in plain_meta
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    with pytest.raises(ValueError, match="calibrate_batches"):
        train.config_from_args(parser.parse_args(["--calibrate-batches", "-1"]))
    with pytest.raises(ValueError, match="detail_gain is measured"):
        train.config_from_args(parser.parse_args(["--model-detail-gain", "0.5"]))
    with pytest.raises(ValueError, match="output_pull is measured"):
        train.config_from_args(parser.parse_args(["--model-output-pull", "0.5"]))
    with pytest.raises(ValueError, match="steadiness_reduction"):
        train.config_from_args(parser.parse_args(["--steadiness-reduction", "1.0"]))


def test_rgb_to_crcb_is_the_ycrcb_conversion_of_the_nodes():
    from thermal_visible_fusion.training.losses import rgb_to_crcb
    rgb = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    expected = cv2.cvtColor(rgb[..., ::-1].copy(), cv2.COLOR_BGR2YCrCb)[..., 1:]
    got = rgb_to_crcb(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
    assert np.abs(got[0].permute(1, 2, 0).numpy() * 255 - expected).max() < 1.0


def test_validation_on_degraded_clips(dataset):
    from thermal_visible_fusion.model import StreamingFusionNet
    val = train.validate(StreamingFusionNet(), dataset / "clips", 1.0, torch.device("cpu"),
                         max_frames=3)
    for mode in ("mem", "nomem", "average"):
        for metric in ("flowD", "vif", "qabf", "ssim"):
            assert np.isfinite(val[f"{mode}/{metric}"])
    assert val["psnr_ir"] > 10
    assert val["psnr_crcb"] == pytest.approx(val["psnr_crcb_input"], abs=0.05)  # idle branch


def test_time_budget_stops_training(dataset, tmp_path):
    cfg = small_config(dataset, tmp_path, max_steps=1000, max_minutes=1e-6, export="",
                       teacher="none", w_distill=0.0)
    assert train.run(cfg)["step"] == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg: train.TrainConfig, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    summary = train.run(cfg)
    Path(out, f"rank{rank}.json").write_text(json.dumps(summary))


def test_ddp_two_cpu_processes(dataset, tmp_path):
    cfg = small_config(dataset, tmp_path, export="", teacher="none", w_distill=0.0)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), cfg, str(tmp_path)),
                                nprocs=2, join=True)
    summaries = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert summaries[0]["step"] == 2
    assert summaries[0]["checksum"] == pytest.approx(summaries[1]["checksum"], abs=1e-5)
