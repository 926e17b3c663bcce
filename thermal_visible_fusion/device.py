"""Torch device selection shared by the node, the tools and the learned fuser."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only when a device is resolved: classic fusers need none
    import torch

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def validate_device(spec: str) -> str | None:
    """Return why ``spec`` is not a valid device parameter, or None when it is."""
    if not isinstance(spec, str) or not _DEVICE_PATTERN.fullmatch(spec):
        return f"device must be 'auto', 'cpu' or 'cuda[:N]', got {spec!r}"
    return None


def resolve_device(spec: str = "auto") -> "torch.device":
    """
    Turn a device parameter into a torch.device; 'auto' takes CUDA when available.

    Asking for CUDA on a machine without it is an error rather than a silent fallback,
    so a robot misconfigured for its GPU says so at start-up.
    """
    problem = validate_device(spec)
    if problem:
        raise ValueError(problem)
    try:
        import torch
    except ImportError as error:  # a robot without pip torch: say so, no traceback
        raise ValueError(f"device {spec!r} needs torch, which is not installed ({error}); "
                         "install it (README, On a robot) or use a non-learned fuser "
                         "on the CPU") from error
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} requested but only "
                             f"{torch.cuda.device_count()} CUDA device(s) exist")
    return device


def inference_dtype(device: "torch.device") -> "torch.dtype":
    """Half precision on CUDA (twice the throughput, fusion needs no more), float32 on CPU."""
    import torch

    return torch.float16 if device.type == "cuda" else torch.float32


def native_bf16() -> bool:
    """
    Say whether this CPU has bfloat16 arithmetic (x86: AVX512-BF16 or AMX).

    Elsewhere oneDNN emulates bfloat16 convolutions (it offers them on any AVX-512 CPU),
    slower than float32.
    """
    import platform

    import torch

    try:
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            return bool(torch.cpu._is_avx512_bf16_supported()
                        or torch.cpu._is_amx_tile_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # Arm: BF16 extensions
    except (AttributeError, RuntimeError):  # a torch build without the queries: float32
        return False
