"""
Weights files of the streaming fusion network: where they ship, how they are written and read back.

Importable without torch: ``fusers.create_fuser`` asks ``default_weights()`` before it
imports anything heavy, so an install with only the classic fusers never needs torch.
torch (and the network) are imported inside the functions that need them.

A ``.pt`` file is a plain dict loaded with ``torch.load(weights_only=True)``; a
``.safetensors`` file (used when the ``safetensors`` package is installed) stores the
``ModelConfig`` in its metadata.  Both carry their own config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from thermal_visible_fusion.learned.model import ModelConfig, StreamingFusionNet

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # package data
DEFAULT_WEIGHTS = WEIGHTS_DIR / "streaming_fusion.pt"
WEIGHTS_FORMAT = "tvf-streaming-fusion"
WEIGHTS_VERSION = 2  # 1: the network before restore-then-fuse, refused


def default_weights() -> Path | None:
    """
    Return the shipped weights file.

    ``DEFAULT_WEIGHTS``, else its ``.safetensors`` sibling; None when the package
    ships neither.
    """
    for path in (DEFAULT_WEIGHTS, DEFAULT_WEIGHTS.with_suffix(".safetensors")):
        if path.is_file():
            return path
    return None


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


def save_weights(model: StreamingFusionNet, path: str | Path, meta: dict | None = None) -> Path:
    """Write model weights + config (+ str/number ``meta``) to ``.pt`` or ``.safetensors``."""
    import torch

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
    import torch

    from thermal_visible_fusion.learned.model import ModelConfig

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
    """Load a StreamingFusionNet in eval mode with the weights of ``path``."""
    from thermal_visible_fusion.learned.model import StreamingFusionNet

    config, state, _ = load_weights(path)
    model = StreamingFusionNet(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(path, f"weights do not match the model ({exc})") from exc
    return model.to(device).eval()
