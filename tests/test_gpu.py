"""The CUDA path: every method, the fallbacks, chunking and compilation on a GPU against the CPU (float64).

Skipped where CUDA is not available.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from helpers import requires_cuda
from pipeline import sensitivity
from pipeline.derivatives.methods import METHODS
from pipeline.models import Composite, Oscillator
from zoo import cases

pytestmark = [pytest.mark.gpu, requires_cuda]


def both(model, x, params, **kwargs):
    """The same study on the GPU and on the CPU."""
    return (sensitivity(model, x, params, device=device, **kwargs) for device in ("cuda", "cpu"))


@pytest.mark.parametrize("method", ["auto", *METHODS])
def test_every_method_on_cuda_matches_the_cpu(method):
    torch.manual_seed(0)
    x = torch.randn(32, 4, dtype=torch.float64)
    gpu, cpu = both(Composite(), x, {"C": np.linspace(-1, 1, 5)}, bind={"C": "encoder.0.weight[0,1]"}, method=method)
    assert gpu.attrs["device"].startswith("cuda") and cpu.attrs["device"] == "cpu"
    np.testing.assert_allclose(gpu.y.values, cpu.y.values, rtol=1e-12, atol=1e-14)
    # Differences carry round-off of eps / h (~1e-11 here), which differs between devices.
    rtol = 1e-6 if method.startswith("finite_difference") else 1e-9
    np.testing.assert_allclose(gpu.dy_dC.values, cpu.dy_dC.values, rtol=rtol, atol=1e-12)
    np.testing.assert_array_equal(gpu.dy_dC_connected.values, cpu.dy_dC_connected.values)


@pytest.mark.parametrize("name", ["torchdiffeq rk4", "Newton, early exit", "nn.LSTM", "TransformerEncoderLayer (eval)"])
def test_zoo_models_fall_back_the_same_way_on_cuda(name):
    case = cases()[name]
    x = case.x.to("cuda") if isinstance(case.x, torch.Tensor) else case.x
    gpu = sensitivity(case.model, x, case.params, bind=case.bind, dtype="float64", device="cuda")
    cpu = sensitivity(case.model, case.x, case.params, bind=case.bind, dtype="float64", device="cpu")
    # cuDNN's LSTM has no forward-mode rule and no double backward: reverse mode per point with one
    # vjp per output on a GPU, where the CPU runs forward mode; never differences.
    assert not gpu.attrs["method"].startswith("finite_difference"), gpu.attrs.get("fallback_reason")
    np.testing.assert_allclose(gpu.dy_dC.values, cpu.dy_dC.values, rtol=1e-8, atol=1e-12)


def test_chunking_on_cuda_reads_the_allocator_and_changes_nothing():
    x = torch.randn(2000, 2, dtype=torch.float32)
    values = np.linspace(0.1, 2.0, 256)
    model = Oscillator(dt=0.05, steps=50)
    one = sensitivity(model, x, {"C": values}, bind={"C": "damping"}, device="cuda", chunk_size=256)
    auto = sensitivity(model, x, {"C": values}, bind={"C": "damping"}, device="cuda", max_memory_mb=64)
    chunk = int(re.search(r"chunk size (\d+)", auto.attrs["history"])[1])
    assert 1 <= chunk < 256
    np.testing.assert_allclose(auto.dy_dC.values, one.dy_dC.values, rtol=1e-5, atol=1e-6)


def test_float32_on_cuda_against_float64():
    x = torch.randn(128, 2, dtype=torch.float64)
    model = Oscillator(dt=0.05, steps=100)
    f32 = sensitivity(model, x, {"C": [0.2, 0.9]}, bind={"C": "damping"}, device="cuda", dtype="float32")
    f64 = sensitivity(model, x, {"C": [0.2, 0.9]}, bind={"C": "damping"}, device="cpu", dtype="float64")
    scale = np.abs(f64.dy_dC.values).max()
    assert np.abs(f32.dy_dC.values - f64.dy_dC.values).max() / scale < 1e-4


def test_compiled_timestepper_on_cuda():
    x = torch.randn(64, 2, dtype=torch.float64)
    model = Oscillator(dt=0.05, steps=40)
    compiled = sensitivity(model, x, {"C": [0.3, 1.1]}, bind={"C": "damping"}, device="cuda", compile=True)
    eager = sensitivity(model, x, {"C": [0.3, 1.1]}, bind={"C": "damping"}, device="cpu")
    np.testing.assert_allclose(compiled.dy_dC.values, eager.dy_dC.values, rtol=1e-10, atol=1e-12)


def test_float32_convolutions_on_cuda_are_ieee_not_tf32():
    """cuDNN runs float32 convolutions as TF32 by default (errors near 1e-3): not while sensweep computes."""
    g = torch.Generator().manual_seed(0)
    kernels = [torch.randn(8, 4, 5, generator=g, dtype=torch.float64) / 4, torch.randn(8, 8, 5, generator=g) / 6]
    x = torch.randn(64, 4, 64, generator=g, dtype=torch.float64)

    def conv(weights):
        def model(x, C):
            h = torch.tanh(torch.nn.functional.conv1d(x, weights[0] * C, padding=2))
            return torch.nn.functional.conv1d(h, weights[1], padding=2)

        return model

    values = np.linspace(0.5, 1.5, 4)
    tf32 = torch.backends.cudnn.allow_tf32
    f32 = sensitivity(conv([k.float().cuda() for k in kernels]), x.float(), {"C": values}, device="cuda")
    f64 = sensitivity(conv([k.double() for k in kernels]), x, {"C": values}, device="cpu")
    assert torch.backends.cudnn.allow_tf32 == tf32  # restored
    scale = np.abs(f64.dy_dC.values).max()
    assert np.abs(f32.dy_dC.values - f64.dy_dC.values).max() / scale < 1e-4


@pytest.mark.parametrize("pin_max_bytes", [2**26, 0])
def test_results_reach_the_host_intact(monkeypatch, pin_max_bytes):
    """Into page-locked memory, or staged through small page-locked buffers in many pieces: same values."""
    import pipeline.derivatives.methods

    monkeypatch.setattr(pipeline.derivatives.methods, "PIN_MAX_BYTES", pin_max_bytes)
    monkeypatch.setattr(pipeline.derivatives.methods, "STAGE_BYTES", 4096)
    x = torch.randn(300, 2, dtype=torch.float64)
    model = Oscillator(dt=0.05, steps=30)
    gpu, cpu = both(model, x, {"C": np.linspace(0.1, 1.0, 7)}, bind={"C": "damping"}, chunk_size=3)
    np.testing.assert_allclose(gpu.y.values, cpu.y.values, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gpu.dy_dC.values, cpu.dy_dC.values, rtol=1e-10, atol=1e-13)
