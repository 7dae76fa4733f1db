"""Tests of maasrec.device: the one device rule, with CUDA presence mocked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import maasrec
from maasrec import device as device_mod
from maasrec.device import amp_dtype, cuda_available, resolve_device
from maasrec.exceptions import DeviceError

ENV = "MAASREC_DEVICE"


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


@pytest.fixture
def with_cuda(monkeypatch):
    """Pretend two CUDA devices exist."""
    monkeypatch.setattr(device_mod, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def without_cuda(monkeypatch):
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_cuda_available_is_a_bool():
    assert isinstance(cuda_available(), bool)


# -- precedence: argument > env > CUDA available > CPU -----------------------------------------


@pytest.mark.parametrize("spec", [None, "auto", "AUTO", " auto "])
def test_auto_picks_cuda_when_available(no_env, with_cuda, spec):
    assert resolve_device(spec) == torch.device("cuda")


@pytest.mark.parametrize("spec", [None, "auto"])
def test_auto_picks_cpu_without_cuda(no_env, without_cuda, spec):
    assert resolve_device(spec) == torch.device("cpu")


def test_env_beats_cuda_availability(monkeypatch, with_cuda):
    monkeypatch.setenv(ENV, "cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_argument_beats_env(monkeypatch, with_cuda):
    monkeypatch.setenv(ENV, "cpu")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    monkeypatch.setenv(ENV, "cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_argument_beats_broken_env(monkeypatch, without_cuda):
    monkeypatch.setenv(ENV, "no-such-device")
    assert resolve_device("cpu") == torch.device("cpu")


def test_env_auto_or_empty_falls_through(monkeypatch, with_cuda):
    for value in ("auto", "", "   "):
        monkeypatch.setenv(ENV, value)
        assert resolve_device() == torch.device("cuda")


def test_env_selects_cuda_index(monkeypatch, with_cuda):
    monkeypatch.setenv(ENV, " CUDA:1 ")
    assert resolve_device() == torch.device("cuda:1")


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu ", torch.device("cpu")])
def test_cpu_always_works(no_env, with_cuda, spec):
    assert resolve_device(spec) == torch.device("cpu")


def test_torch_device_argument(no_env, with_cuda):
    assert resolve_device(torch.device("cuda", 0)) == torch.device("cuda:0")


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_absent_by_argument(no_env, without_cuda, spec):
    with pytest.raises(DeviceError, match="CUDA is not available") as info:
        resolve_device(spec)
    msg = str(info.value)
    assert "cuda" in msg and "argument" in msg
    assert ENV not in msg


def test_cuda_absent_by_env(monkeypatch, without_cuda):
    monkeypatch.setenv(ENV, "cuda")
    with pytest.raises(DeviceError, match="CUDA is not available") as info:
        resolve_device()
    msg = str(info.value)
    assert "'cuda'" in msg and f"environment variable {ENV}" in msg


def test_cuda_index_out_of_range(no_env, with_cuda):
    with pytest.raises(DeviceError, match=r"CUDA device 5.*only 2 device") as info:
        resolve_device("cuda:5")
    assert "argument" in str(info.value)


@pytest.mark.parametrize("spec", ["gpu", "no-such-device", "", "cuda:x", "cpu:-1:2"])
def test_spec_not_understood(no_env, without_cuda, spec):
    with pytest.raises(DeviceError, match="not understood") as info:
        resolve_device(spec)
    assert repr(spec) in str(info.value)


def test_bad_env_spec_names_env(monkeypatch, without_cuda):
    monkeypatch.setenv(ENV, "tpu-please")
    with pytest.raises(DeviceError, match="not understood") as info:
        resolve_device()
    assert "tpu-please" in str(info.value) and ENV in str(info.value)


@pytest.mark.parametrize("spec", ["meta", "mps"])
def test_unsupported_device_type(no_env, without_cuda, spec):
    with pytest.raises(DeviceError, match="supports 'cpu' and 'cuda'") as info:
        resolve_device(spec)
    assert repr(spec) in str(info.value)


def test_device_error_is_runtime_error(no_env, without_cuda):
    with pytest.raises(RuntimeError):
        resolve_device("cuda")


def test_public_alias():
    assert maasrec.resolve_device is resolve_device


# -- amp_dtype ---------------------------------------------------------------------------------


def test_amp_dtype_cpu_is_none():
    assert amp_dtype(torch.device("cpu")) is None


def test_amp_dtype_cuda_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert amp_dtype(torch.device("cuda")) is torch.bfloat16


def test_amp_dtype_cuda_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert amp_dtype(torch.device("cuda:1")) is torch.float16


# -- the device rule: only device.py asks torch about CUDA -------------------------------------


def test_only_device_module_queries_cuda_availability():
    root = Path(maasrec.__file__).parent
    pattern = re.compile(r"cuda\s*\.\s*is_available|cuda\.device_count|is_bf16_supported")
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "device.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert not offenders, "only maasrec/device.py may ask torch about CUDA:\n" + "\n".join(
        offenders
    )
