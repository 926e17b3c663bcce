"""
Train the streaming fusion network (``tvf train``, or ``python -m`` this module).

Configuration: ``TrainConfig`` defaults, then an optional ``--config`` JSON/YAML file of
its fields, then flags (every field is one: ``--max-minutes 40``, ``--exclude-scenes a b``;
model fields as ``--model-channels 24``).

The memory is trained the way it runs: each sample is a long sequence (``sequence``
consecutive frames of a real video, or of a still pair moved by a synthetic camera),
degraded on the fly with the camera's degradation fixed for the whole sequence (IR column
stripes, visible blur) and fresh noise every frame.  The network runs through it frame by
frame carrying its memory, and the gradient flows back through ``window`` frames at a
time (truncated back-propagation through time: the memory is carried on, detached, into
the next window), so the steady state deep into a stream is what the loss sees.  A share
``p_clean`` of the sequences stays clean, and then the target is the input itself: the
network learns to leave a clean camera alone.

Losses, against the clean frames: L1 of each restored frame, L1 of the fused frame
against the multi-scale rule's fusion of the clean frames, and a temporal loss (TemCoCo):
the restored IR frame's change between frames, along the true motion, should be the
clean frame's change.  The learning rate follows a cosine over ``max(step / max_steps,
elapsed / max_minutes)``, so a run ends annealed whichever comes first.  The weights
(a few tens of kB) go to ``--out``, never by default to the shipped file.  ``--init
FILE`` starts from a weights file instead of a fresh network (fine-tuning, e.g. on a
robot's own recordings; a lower ``--lr`` suits it).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
import json
import math
import os
from pathlib import Path
import sys
import time

import torch
import torch.nn.functional as F

from thermal_visible_fusion.learned.model import (MemoryState, ModelConfig, multiscale_fuse,
                                                  StreamingFusionNet)
from thermal_visible_fusion.learned.weights import (DEFAULT_WEIGHTS, load_model, save_weights,
                                                    WeightsError)
from thermal_visible_fusion.training.data import (ClipBatches, ClipConfig, ClipSampler,
                                                  default_cache_dir, discover, EVAL_SCENES)
from thermal_visible_fusion.training.degrade import DegradeConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_root() -> Path:
    return Path(os.environ.get("TVF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@dataclass
class TrainConfig:
    # data: folders (relative to data_root unless absolute) in any layout of training.data;
    # the M3SVD evaluation clips' scenes are held out
    data_root: str = ""                      # "": $TVF_SHARED_DATA or <repo>/../shared/data
    data: list[str] = field(default_factory=lambda: ["m3svd/videos", "roadscene", "tno"])
    exclude_scenes: list[str] = field(default_factory=lambda: list(EVAL_SCENES))
    out: str = "runs/streaming_fusion/streaming_fusion.pt"  # never the shipped file by default
    init: str = ""                           # weights to start from (fine-tuning), their config
    # schedule
    max_steps: int = 100_000
    max_minutes: float = 30.0
    lr: float = 2e-3
    batch_size: int = 4
    crop: int = 112                          # square crop side (a multiple of 8)
    sequence: int = 48                       # frames a sample; the memory runs through all
    window: int = 8                          # frames a backward pass (truncated BPTT)
    p_clean: float = 0.3                     # share of sequences left clean
    # loss weights (restoration L1 of each modality weighs 1)
    fused_weight: float = 1.0
    temporal_weight: float = 0.5
    # run
    seed: int = 0
    threads: int = 0                         # torch CPU threads (0: torch's default)
    workers: int = 1                         # data loader processes (0: in the main one)
    device: str = "cpu"
    log_every: int = 25
    model: dict = field(default_factory=dict)  # ModelConfig fields

    def __post_init__(self) -> None:
        if self.crop % 8 or self.crop < 32:
            raise ValueError(f"crop must be a multiple of 8 and >= 32, got {self.crop}")
        if not 1 <= self.window <= self.sequence:
            raise ValueError("need 1 <= window <= sequence")
        if not 0.0 <= self.p_clean <= 1.0:
            raise ValueError(f"p_clean must be in [0, 1], got {self.p_clean}")
        for name in ("max_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        ModelConfig.from_dict(self.model)  # fail early on a bad model field
        if self.init and self.model:
            raise ValueError("init takes the model config of its weights: no model fields")


# ----------------------------------------------------------------------------- the step

def luma(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB -> (..., 1, H, W) Y, as OpenCV's YCrCb."""
    r, g, b = rgb.unbind(-3)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample x at (pixel + flow), bilinear; flow (B,2,H,W) in pixels."""
    _, _, h, w = x.shape
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    grid = torch.stack([(xs + flow[:, 0]) * (2.0 / w) + (1.0 / w - 1.0),
                        (ys + flow[:, 1]) * (2.0 / h) + (1.0 / h - 1.0)], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def sequence_losses(model: StreamingFusionNet, batch: dict[str, torch.Tensor],
                    cfg: TrainConfig, optimiser: torch.optim.Optimizer | None = None
                    ) -> dict[str, float]:
    """
    Run the model through a batch of sequences, window by window.

    With an optimiser, step it after each window.  Returns the mean of each loss
    over the frames.
    """
    ir_in, vis_in = batch["ir_degraded"], luma(batch["vis_degraded"])
    ir_ref, vis_ref = batch["ir"], luma(batch["vis"])
    flow, valid = batch["flow"], batch["valid"]
    frames = ir_in.shape[1]
    state: MemoryState | None = None
    prev_out = None
    totals: dict[str, float] = {}
    for start in range(0, frames, cfg.window):
        parts: dict[str, torch.Tensor] = {}
        for t in range(start, min(start + cfg.window, frames)):
            out, state = model(ir_in[:, t], vis_in[:, t], state)
            terms = {"ir": (out.restored_ir - ir_ref[:, t]).abs().mean(),
                     "vis": (out.restored_vis - vis_ref[:, t]).abs().mean(),
                     "fused": cfg.fused_weight * (
                         out.fused - multiscale_fuse(ir_ref[:, t], vis_ref[:, t])).abs().mean()}
            if prev_out is not None:  # change along the true motion = the clean change
                change = out.restored_ir - warp(prev_out, flow[:, t])
                clean = ir_ref[:, t] - warp(ir_ref[:, t - 1], flow[:, t])
                mask = valid[:, t]
                terms["temporal"] = cfg.temporal_weight * (
                    ((change - clean).abs() * mask).sum() / mask.sum().clamp(min=1))
            prev_out = out.restored_ir
            for name, value in terms.items():
                parts[name] = parts.get(name, 0) + value
        loss = sum(parts.values()) / frames
        if optimiser is not None:
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
        state = MemoryState(*(s.detach() for s in state))  # carried on, not through
        prev_out = prev_out.detach()
        for name, value in parts.items():
            totals[name] = totals.get(name, 0.0) + float(value.detach()) / frames
    totals["total"] = sum(totals.values())
    return totals


# ----------------------------------------------------------------------------- the run

def _samplers(cfg: TrainConfig):
    root = Path(cfg.data_root) if cfg.data_root else default_data_root()
    sequences, stills = [], []
    for entry in cfg.data:
        folder = Path(entry) if Path(entry).is_absolute() else root / entry
        found, found_stills = discover(folder, default_cache_dir(), cfg.exclude_scenes)
        sequences += found
        stills += found_stills
    # long sequences: real frame rate, and a gentle synthetic camera for the stills
    clip = ClipConfig(clip_len=cfg.sequence, crop_min=cfg.crop, crop_max=cfg.crop, max_step=1,
                      still_speed=1.5, still_zoom=0.002, still_roll=0.05)
    # the network cannot know a thermal camera's gain or offset: train without them, or it
    # learns to guess one and shifts clean frames
    degrade = DegradeConfig(p_clean=cfg.p_clean, ir_gain=(1.0, 1.0), ir_stripe_mean=(0.0, 0.0))

    def make(seed: int) -> ClipSampler:
        return ClipSampler(sequences, stills, clip, degrade, seed)

    return make, len(sequences), len(stills)


def lr_factor(step: int, elapsed_min: float, cfg: TrainConfig) -> float:
    progress = min(1.0, max(step / cfg.max_steps, elapsed_min / cfg.max_minutes))
    warmup = min(1.0, (step + 1) / 50)
    return warmup * 0.5 * (1 + math.cos(math.pi * progress))


def run(cfg: TrainConfig) -> dict:
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    model = load_model(cfg.init) if cfg.init else \
        StreamingFusionNet(ModelConfig.from_dict(cfg.model))
    model = model.to(device).train()
    make_sampler, n_seq, n_still = _samplers(cfg)
    print(f"data: {n_seq} sequences, {n_still} still pairs", flush=True)
    batches = ClipBatches(make_sampler, cfg.batch_size, cfg.seed)
    loader = iter(torch.utils.data.DataLoader(batches, batch_size=None,
                                              num_workers=cfg.workers))
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    start, step, history = time.monotonic(), 0, []
    saved = start
    while step < cfg.max_steps:
        elapsed = (time.monotonic() - start) / 60
        if elapsed >= cfg.max_minutes:
            break
        for group in optimiser.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, elapsed, cfg)
        batch = {k: v.to(device) for k, v in next(loader).items()}
        losses = sequence_losses(model, batch, cfg, optimiser)
        step += 1
        history.append(losses)
        if time.monotonic() - saved > 600:  # a file to look at while the run goes on
            save_weights(model, cfg.out, {"steps": step, "partial": 1})
            saved = time.monotonic()
        if step % cfg.log_every == 0 or step == 1:
            recent = history[-cfg.log_every:]
            mean = {k: sum(h[k] for h in recent) / len(recent) for k in recent[-1]}
            print(f"step {step} {elapsed:.1f} min " +
                  " ".join(f"{k} {v:.4f}" for k, v in mean.items()), flush=True)
    minutes = (time.monotonic() - start) / 60
    meta = {"steps": step, "minutes": round(minutes, 1), "train_config": json.dumps(
        {k: v for k, v in asdict(cfg).items() if k != "model"})}
    path = save_weights(model.cpu().eval(), cfg.out, meta)
    print(f"wrote {path} after {step} steps, {minutes:.1f} min", flush=True)
    return {"steps": step, "minutes": minutes, "out": str(path)}


# ----------------------------------------------------------------------------- the command

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="JSON or YAML file of TrainConfig fields")
    for f in fields(TrainConfig):
        if f.name == "model":
            continue
        default = f.default_factory() if callable(f.default_factory) else f.default
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, list):
            parser.add_argument(flag, nargs="*", default=argparse.SUPPRESS,
                                help=f"(default: {' '.join(default) or 'none'})")
        else:
            parser.add_argument(flag, type=type(default), default=argparse.SUPPRESS,
                                help=f"(default: {default!r})")
    for f in fields(ModelConfig):
        if f.name == "deblur_sigmas":
            kind = {"type": float, "nargs": "+"}
        else:
            kind = {"type": type(f.default)}
        parser.add_argument("--model-" + f.name.replace("_", "-"), dest="model__" + f.name,
                            default=argparse.SUPPRESS, help=f"(default: {f.default!r})",
                            **kind)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict = {}
    if getattr(args, "config", None):
        text = Path(args.config).read_text()
        if args.config.endswith((".yaml", ".yml")):
            import yaml
            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError(f"{args.config}: expected a mapping of TrainConfig fields")
    model = dict(values.get("model", {}))
    for key, value in vars(args).items():
        if key.startswith("model__"):
            model[key[len("model__"):]] = value
        elif key != "config":
            values[key] = value
    values["model"] = model
    unknown = set(values) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
    return TrainConfig(**values)


def main(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"tvf train: {exc}", file=sys.stderr)
        return 2
    if Path(cfg.out).resolve() == DEFAULT_WEIGHTS.resolve():
        print(f"note: writing the shipped weights {DEFAULT_WEIGHTS}", file=sys.stderr)
    try:
        run(cfg)
    except WeightsError as exc:  # --init names no usable weights file
        print(f"tvf train: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="tvf train", description=__doc__.strip().splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
