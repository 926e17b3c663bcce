"""Device parameter: a robot without torch gets a reason, not a traceback."""

import sys

import pytest

from thermal_visible_fusion.device import resolve_device


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cpu", "auto"])
def test_a_device_without_torch_is_a_clear_error(monkeypatch, spec):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ValueError, match="needs torch, which is not installed"):
        resolve_device(spec)


def test_a_bad_device_is_refused_before_torch_is_needed(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu' or 'cuda"):
        resolve_device("gpu")


def test_cpu_resolves_with_torch():
    torch = pytest.importorskip("torch")
    assert resolve_device("cpu") == torch.device("cpu")
