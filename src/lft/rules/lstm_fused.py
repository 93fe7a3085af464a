"""The coordinate LSTM's no-grad step fused into one compiled pass (CPU, float32).

:mod:`lft.rules.lstm_inference` runs the step as torch operations over blocks of coordinates:
each operation passes over its block, so every coordinate's features, gates and 20 floats of
LSTM state go through memory several times, and sigmoid/tanh run as separate passes. On a CPU
that traffic, not arithmetic, bounds it (5.6-6.5x an Adam step on the MNIST MLP). Here one C++
loop (``lstm_fused.cpp``) does the whole update per vector of coordinates (16 with AVX-512) in
registers: the features from the gradient (updating the Adam moments), every LSTM layer, the
head and its ``tanh``; each coordinate's state is read once and written once, and the step is
bound by arithmetic (~26 ns per coordinate on the default rule, one Zen 4 core).

The source is compiled at first use with the system's C++ compiler (``$CXX``, else ``c++``/
``g++``; ~0.3-1 s) into a shared library cached under ``$XDG_CACHE_HOME/lft/kernels`` (default
``~/.cache/lft/kernels``), keyed by the source, the compiler and the CPU, and called through
``ctypes``: no torch headers to compile, no Python extension ABI. Whenever the kernel cannot
be used (``LFT_NO_COMPILE=1``, no compiler, a failed build, not float32 on the CPU, more than
64 hidden units or layers), :func:`fused_step` returns ``None`` and the caller runs the reference
kernel, which stays the exact fallback. The fused kernel's sigmoid, tanh, exp and log are
float32 polynomial approximations, so its results equal the reference's to float32 rounding
(tests: ``tests/test_lstm_fused.py``). On CUDA the reference kernel runs (one block, launch
bound; see ``benchmarks/README.md``). :func:`compile_info` reports the build and its time.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import torch

from lft.rules.features import N_ROLES, feature_width

SOURCE = Path(__file__).with_name("lstm_fused.cpp")
HEADER = Path(__file__).with_name("lstm_fused_math.h")  # included by SOURCE
FEATURE_CODES = {"raw": 0, "logsign": 1, "adam": 2, "param": 3, "role": 4}
MAX_HIDDEN, MAX_INPUTS, MAX_LAYERS = 64, 8, 64  # the kernel's fixed arrays (lstm_fused.cpp)
FLAGS = ["-O3", "-fno-math-errno", "-fPIC", "-shared", "-std=c++17"]
_log = logging.getLogger(__name__)
#: the compiled-kernel cache: {"lib": ctypes.CDLL | None, "info": dict}, filled on first use
_KERNEL: dict = {}


def disabled() -> bool:
    """Whether compilation is switched off (``LFT_NO_COMPILE`` set to anything but 0/empty)."""
    return os.environ.get("LFT_NO_COMPILE", "") not in ("", "0")


def cache_dir() -> Path:
    """Where built kernels are kept: ``$XDG_CACHE_HOME/lft/kernels`` or ``~/.cache/lft/...``."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "lft" / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_id() -> str:
    """The machine and its CPU flags: ``-march=native`` code runs only where it was built."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return platform.machine() + flags


def _build(cxx: str) -> tuple[Path, bool]:
    """The kernel's shared library, compiled unless cached; returns ``(path, was_cached)``."""
    source = SOURCE.read_bytes() + HEADER.read_bytes()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    attempts = [FLAGS + ["-march=native"], FLAGS]
    key = hashlib.sha256(source + repr((version, attempts, _cpu_id())).encode()).hexdigest()
    path = cache_dir() / f"lstm_fused-{key[:20]}.so"
    if path.exists():
        return path, True
    path.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for flags in attempts:
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
        os.close(fd)
        proc = subprocess.run([cxx, *flags, "-o", tmp, str(SOURCE)], capture_output=True,
                              text=True, timeout=300)
        if proc.returncode == 0:
            os.replace(tmp, path)  # atomic: concurrent builders leave one complete library
            return path, False
        os.unlink(tmp)
        errors.append(proc.stderr.strip()[-2000:])
    raise RuntimeError("compiling the fused LSTM kernel failed:\n" + "\n".join(errors))


def _load() -> None:
    info: dict = {"available": False, "seconds": 0.0, "cached": False, "path": None,
                  "error": None}
    lib = None
    t0 = time.perf_counter()
    try:
        cxx = _compiler()
        if cxx is None:
            raise RuntimeError("no C++ compiler found ($CXX, c++, g++, clang++)")
        path, cached = _build(cxx)
        lib = ctypes.CDLL(str(path))
        lib.lft_lstm_step.restype = ctypes.c_int
        _argtypes(lib)
        info.update(available=True, cached=cached, path=str(path))
    except Exception as e:  # noqa: BLE001 - any failure means: use the reference kernel
        info["error"] = f"{type(e).__name__}: {e}"
        warnings.warn(f"lft: fused LSTM kernel unavailable, using the reference kernel "
                      f"({info['error'][:300]})", RuntimeWarning, stacklevel=3)
    info["seconds"] = time.perf_counter() - t0
    if lib is not None:
        _log.info("fused LSTM kernel %s in %.2f s: %s",
                  "loaded from the cache" if info["cached"] else "compiled",
                  info["seconds"], info["path"])
    _KERNEL.update(lib=lib, info=info)


def kernel():
    """The compiled kernel (a ``ctypes`` library), built at first use; ``None`` when disabled
    (``LFT_NO_COMPILE``) or unavailable."""
    if disabled():
        return None
    if not _KERNEL:
        _load()
    return _KERNEL["lib"]


def compile_info() -> dict:
    """The first use's build: ``available``, ``seconds`` (compile or cache load, wall time),
    ``cached`` (found already built), ``path`` and ``error``; builds now if not yet tried."""
    if disabled():
        return {"available": False, "seconds": 0.0, "cached": False, "path": None,
                "error": "disabled by LFT_NO_COMPILE"}
    kernel()
    return dict(_KERNEL["info"])


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


#: gather indices of :func:`_pack`, per layout (hidden, layers, column counts, role column,
#: bias); a handful of small int64 tensors
_PACK_INDEX: dict = {}


def _pack_index(hidden: int, widths: tuple[int, ...], role_col: int | None,
                bias: bool) -> tuple[torch.Tensor, int, int]:
    """Indices into the concatenated flat parameters (every layer's weight ``(4 hidden,
    K_l)``, then every layer's bias ``(4 hidden,)``) that give, in one gather: the weights as
    ``(hidden, K, 4)`` per layer (gates i, f, g, o; role columns removed), the biases as
    ``(hidden, 4)`` per layer, and the role columns as ``(N_ROLES, hidden, 4)``. Returns
    ``(index, n_weights, n_biases)``."""
    key = (hidden, widths, role_col, bias)
    if key not in _PACK_INDEX:
        h, parts, base = hidden, [], 0
        for i, k in enumerate(widths):
            cols = torch.arange(k)
            if i == 0 and role_col is not None:
                cols = torch.cat([cols[:role_col], cols[role_col + N_ROLES:]])
            rows = torch.arange(4).mul(h).unsqueeze(0) + torch.arange(h).unsqueeze(1)  # (h, 4)
            parts.append((base + rows.unsqueeze(1) * k + cols.view(1, -1, 1)).reshape(-1))
            base += 4 * h * k
        n_w = sum(t.numel() for t in parts)
        if bias:
            for _ in widths:
                rows = torch.arange(4).mul(h).unsqueeze(0) + torch.arange(h).unsqueeze(1)
                parts.append((base + rows).reshape(-1))
                base += 4 * h
        n_b = sum(t.numel() for t in parts) - n_w
        if role_col is not None:  # (N_ROLES, h, 4) of the first layer's weight
            k = widths[0]
            rows = torch.arange(4).mul(h).unsqueeze(0) + torch.arange(h).unsqueeze(1)
            parts.append((rows.unsqueeze(0) * k + role_col
                          + torch.arange(N_ROLES).view(-1, 1, 1)).reshape(-1))
        _PACK_INDEX[key] = (torch.cat(parts), n_w, n_b)
    return _PACK_INDEX[key]


def _pack(rule, role_col: int | None) -> tuple[torch.Tensor, torch.Tensor | None,
                                               torch.Tensor | None]:
    """Gate weights as one ``(hidden, K, 4)`` block per layer (gates i, f, g, o, role columns
    removed), biases as ``(hidden, 4)`` per layer, and the role table ``(N_ROLES, hidden, 4)``
    (role columns plus the first layer's bias), all float32 and contiguous: one gather from
    the parameters (read afresh every step, so no cache can go stale)."""
    h, cells = rule.hidden, rule.cells
    bias = cells[0].bias is not None
    widths = tuple(c.weight.shape[1] for c in cells)
    index, n_w, n_b = _pack_index(h, widths, role_col, bias)
    flat = [c.weight.detach().reshape(-1) for c in cells]
    if bias:
        flat += [c.bias.detach() for c in cells]
    flat = flat[0] if len(flat) == 1 else torch.cat(flat)
    packed = flat.take(index)
    wpack = packed[:n_w]
    bias_t = packed[n_w:n_w + n_b] if bias else None
    table = None
    if role_col is not None:
        table = packed[n_w + n_b:]
        if bias:
            table = table.view(N_ROLES, h * 4).add(bias_t[:h * 4])
    return wpack, bias_t, table


def _argtypes(lib) -> None:
    p, i, n = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    lib.lft_lstm_step.argtypes = [n, i, i, i, p, p, p, p, p, p, p, p, n, p, p, p, p, p, p, p,
                                  i, p, p, p]


def _params(rule) -> list[torch.Tensor]:
    cells, head = rule.cells, rule.head
    out = [t for c in cells for t in (c.weight, c.bias) if t is not None]
    return out + [t for t in (head.weight, head.bias) if t is not None]


#: per feature tuple: (the kernel's feature codes as int32, whether they fit, role column)
_FEATURES: dict = {}


def _features(feats: tuple[str, ...]) -> tuple[torch.Tensor, bool, int | None]:
    info = _FEATURES.get(feats)
    if info is None:
        plain = tuple(f for f in feats if f != "role")
        codes = torch.tensor([FEATURE_CODES[f] for f in plain], dtype=torch.int32)
        role_col = feature_width(feats[:feats.index("role")]) if "role" in feats else None
        info = _FEATURES[feats] = (codes, feature_width(plain) <= MAX_INPUTS, role_col)
    return info


def _f32_cpu(tensors) -> bool:
    f32 = torch.float32
    return all(t.dtype == f32 and t.is_cpu for t in tensors)


def supported(rule, grad: torch.Tensor, state: tuple, theta: torch.Tensor | None) -> bool:
    """Whether the fused kernel can run this step (else the reference kernel does)."""
    return _supported(rule, grad, state, theta, _params(rule))


def _supported(rule, grad, state, theta, params) -> bool:
    return (_f32_cpu((grad,)) and _f32_cpu(state) and _f32_cpu(params)
            and rule.hidden <= MAX_HIDDEN and rule.layers <= MAX_LAYERS
            and _features(rule.features)[1]
            and ("param" not in rule.features
                 or (theta is not None and _f32_cpu((theta,)) and theta.shape == grad.shape))
            and kernel() is not None)


def _contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_contiguous() else t.contiguous()


#: per (p, raw_scale, output_scale): the kernel's constants as a float32 tensor
_SCALARS: dict = {}


def _scalars(rule) -> torch.Tensor:
    """The features' constants as the reference kernel rounds them (Python floats cast to
    float32); the bias corrections and the head's bias are filled in by the kernel."""
    key = (rule.p, rule.raw_scale, rule.output_scale)
    if key not in _SCALARS:
        p = rule.p
        _SCALARS[key] = torch.tensor(
            [1.0 / p, math.exp(-p), math.exp(p), rule.raw_scale, 1 - 0.9, 0.999, 1 - 0.999,
             1.0, 1.0, 1e-8 * 1e-8, 0.0, rule.output_scale], dtype=torch.float32)
    return _SCALARS[key]


def fused_step(rule, grad: torch.Tensor, state: tuple, theta: torch.Tensor | None,
               role_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple] | None:
    """One no-grad step of a :class:`~lft.rules.lstm.CoordinateLSTM`, fused; ``None`` when
    the kernel cannot run it (the caller then runs the reference kernel).

    ``role_ids``: with the ``role`` feature, the role index per coordinate of one period of
    the flattened optimisee (``int32``; coordinate ``i`` has role ``role_ids[i % period]``).
    Returns ``(delta, new_state)`` as :meth:`CoordinateLSTM.update` does.
    """
    params = _params(rule)
    if not _supported(rule, grad, state, theta, params):
        return None
    lib = _KERNEL["lib"]
    feats = rule.features
    codes, _, role_col = _features(feats)
    n_hc, hid, n, shape = 2 * rule.layers, rule.hidden, grad.numel(), grad.shape
    # pointers into contiguous inputs (no copies, no new tensors when they already are)
    g = _contiguous(grad)
    fstate = tuple(state[n_hc:])
    m = v = m_new = v_new = t = None
    if "adam" in feats:
        m, v, t = fstate[:3]
        t = t.detach() + 1  # the kernel computes the bias corrections from it, as torch does
        m, v = _contiguous(m), _contiguous(v)
        m_new, v_new = torch.empty(shape), torch.empty(shape)
        fstate = (m_new, v_new, t) + fstate[3:]
    if role_col is not None:
        if role_ids is None:
            raise ValueError("fused_step: the 'role' feature needs role_ids")
        role_ids = _contiguous(role_ids.to(torch.int32))
    th = _contiguous(theta) if "param" in feats else None
    wpack, bias, table = _pack(rule, role_col)
    hb = params[-1] if rule.head.bias is not None else None
    hc_in = [_contiguous(s) for s in state[:n_hc]]
    new_hc = torch.empty(n_hc, hid, *shape)  # one allocation, as the reference kernel
    out = torch.empty(shape)
    ptrs_in = (ctypes.c_void_p * n_hc)(*(t_.data_ptr() for t_ in hc_in))
    row, base = hid * n * 4, new_hc.data_ptr()
    ptrs_out = (ctypes.c_void_p * n_hc)(*(base + i * row for i in range(n_hc)))
    head_w = _contiguous(rule.head.weight)
    rc = lib.lft_lstm_step(
        n, hid, rule.layers, codes.numel(), codes.data_ptr(), g.data_ptr(), _ptr(th), _ptr(m),
        _ptr(v), _ptr(m_new), _ptr(v_new), _ptr(role_ids),
        role_ids.numel() if role_ids is not None else 1, ptrs_in, ptrs_out,
        wpack.data_ptr(), _ptr(bias), _ptr(table), head_w.data_ptr(), _ptr(hb),
        int(rule.bounded), _scalars(rule).data_ptr(), _ptr(t), out.data_ptr())
    if rc != 0:
        raise RuntimeError(f"fused LSTM kernel refused its arguments (code {rc})")
    return out, tuple(new_hc.unbind(0)) + fstate


