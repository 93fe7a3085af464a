"""The fused no-grad LSTM step (``lft.rules.lstm_fused``) equals the reference kernel to float32
rounding, and the reference kernel runs whenever the fused one cannot (``LFT_NO_COMPILE``)."""

import ctypes
import platform
import subprocess

import pytest
import torch

import lft.rules.lstm_fused as lstm_fused
from lft.rules import build

CONFIGS = [
    {"type": "lstm", "hidden": 10, "layers": 1, "features": ["logsign", "adam", "role"],
     "output_scale": 0.01},
    {"type": "lstm", "hidden": 5, "layers": 2, "bias": True,
     "features": ["raw", "logsign", "role", "param", "adam"]},
    {"type": "lstm", "hidden": 7, "layers": 1, "features": ["logsign"], "bounded": False},
]


def _steps(rule, theta, roles, fused: bool, monkeypatch, steps: int = 4):
    monkeypatch.setenv("LFT_NO_COMPILE", "" if fused else "1")
    state, out = rule.init(theta, roles), []
    for k in range(steps):
        g = torch.randn(theta.shape, generator=torch.Generator().manual_seed(k)) * 10.0 ** -k
        with torch.no_grad():
            delta, state = rule.update(g, state, theta)
        out.append((delta, state))
    return out


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("roles_shape", [(1001,), (3, 1001)])
def test_fused_step_equals_the_reference_kernel(config, roles_shape, monkeypatch):
    """Several steps (Adam moments, LSTM state carried), runs of roles crossing chunk and block
    boundaries, a tail shorter than a chunk, roles shared by the tasks or per task."""
    if not lstm_fused.compile_info()["available"]:
        pytest.skip(f"no fused kernel here: {lstm_fused.compile_info()['error']}")
    torch.manual_seed(0)
    rule = build(config)
    for p in rule.parameters():
        p.data.normal_(0.0, 0.5)
    theta = torch.randn(3, 1001)
    roles = torch.randint(0, 6, roles_shape)
    roles.view(-1)[:600] = 2  # one run longer than a block
    fused = _steps(rule, theta, roles, True, monkeypatch)
    ref = _steps(rule, theta, roles, False, monkeypatch)
    for (d_f, s_f), (d_r, s_r) in zip(fused, ref):
        assert not torch.equal(d_f, torch.zeros_like(d_f))
        torch.testing.assert_close(d_f, d_r, rtol=1e-5, atol=1e-6)
        for a, b in zip(s_f, s_r):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _isa_builds() -> list[list[str]]:
    """Builds besides the native one: the portable fallback (no -march), and on an x86 host
    with AVX2 an AVX2-only one (8-float vectors, no AVX-512 intrinsics)."""
    builds = [[]]
    flags = lstm_fused._cpu_id()
    if platform.machine() in ("x86_64", "AMD64") and " avx2" in flags and " fma" in flags:
        builds.append(["-march=x86-64-v3"])
    return builds


@pytest.mark.parametrize("extra", _isa_builds(), ids=lambda f: " ".join(f) or "portable")
def test_other_instruction_set_builds_equal_the_reference_kernel(extra, tmp_path, monkeypatch):
    """The kernel's code paths for other targets (vector widths 4 and 8, clamps and 2^n without
    AVX-512 intrinsics) agree with the reference kernel as the native build does."""
    if not lstm_fused.compile_info()["available"]:
        pytest.skip("no fused kernel here")
    so = tmp_path / "kernel.so"
    subprocess.run([lstm_fused._compiler(), *lstm_fused.FLAGS, *extra, "-o", str(so),
                    str(lstm_fused.SOURCE)], check=True, capture_output=True, timeout=300)
    lib = ctypes.CDLL(str(so))
    lib.lft_lstm_step.restype = ctypes.c_int
    lstm_fused._argtypes(lib)
    for config in CONFIGS[:2]:
        torch.manual_seed(0)
        rule = build(config)
        for p in rule.parameters():
            p.data.normal_(0.0, 0.5)
        theta, roles = torch.randn(2, 1003), torch.randint(0, 6, (1003,))
        monkeypatch.setitem(lstm_fused._KERNEL, "lib", lib)
        fused = _steps(rule, theta, roles, True, monkeypatch, steps=3)
        ref = _steps(rule, theta, roles, False, monkeypatch, steps=3)
        for (d_f, s_f), (d_r, s_r) in zip(fused, ref):
            torch.testing.assert_close(d_f, d_r, rtol=1e-5, atol=1e-6)
            for a, b in zip(s_f, s_r):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fused_kernel_is_used_and_differs_from_no_kernel_only_by_rounding(monkeypatch):
    """The fused path really runs (its polynomial sigmoid/tanh round differently from torch's,
    so the results are close but, over 10^4 coordinates, not bit-identical)."""
    if not lstm_fused.compile_info()["available"]:
        pytest.skip("no fused kernel here")
    rule = build(CONFIGS[0])
    theta, roles = torch.randn(10_000), torch.zeros(10_000, dtype=torch.long)
    (d_f, _), = _steps(rule, theta, roles, True, monkeypatch, steps=1)
    (d_r, _), = _steps(rule, theta, roles, False, monkeypatch, steps=1)
    torch.testing.assert_close(d_f, d_r, rtol=1e-5, atol=1e-7)
    assert not torch.equal(d_f, d_r)


def test_disabled_compilation_runs_the_reference_kernel(monkeypatch):
    monkeypatch.setenv("LFT_NO_COMPILE", "1")
    assert lstm_fused.kernel() is None
    assert not lstm_fused.compile_info()["available"]
    rule = build(CONFIGS[0])
    theta = torch.randn(2, 50)
    state = rule.init(theta, torch.zeros(50, dtype=torch.long))
    assert lstm_fused.fused_step(rule, torch.randn(2, 50), state, theta,
                                 torch.zeros(50, dtype=torch.int32)) is None
    with torch.no_grad():
        delta, _ = rule.update(torch.randn(2, 50), state, theta)
    assert delta.shape == (2, 50) and torch.isfinite(delta).all()


def test_float64_and_autograd_steps_fall_back(monkeypatch):
    monkeypatch.setenv("LFT_NO_COMPILE", "")
    rule = build(CONFIGS[0]).double()
    theta = torch.randn(2, 50, dtype=torch.float64)
    state = rule.init(theta, torch.zeros(50, dtype=torch.long))
    assert lstm_fused.fused_step(rule, torch.randn(2, 50, dtype=torch.float64), state, theta,
                                 torch.zeros(50, dtype=torch.int32)) is None
    rule = build(CONFIGS[0])
    theta = torch.randn(2, 50)
    delta, _ = rule.update(torch.randn(2, 50), rule.init(theta, torch.zeros(50).long()), theta)
    assert delta.requires_grad  # parameters require grad: the autograd step ran


def test_compile_info_reports_the_build():
    info = lstm_fused.compile_info()
    assert set(info) == {"available", "seconds", "cached", "path", "error"}
    assert info["seconds"] >= 0.0
    assert info["available"] == (info["error"] is None)
