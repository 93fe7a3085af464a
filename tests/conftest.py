import importlib.util
from pathlib import Path

import pytest
import torch

from lft.tasks import SineFamily, TaskBatch

torch.set_num_threads(1)


def double_tasks(tasks: TaskBatch) -> TaskBatch:
    """The same tasks in float64 (for finite-difference checks)."""
    data = {k: (x.double(), y.double()) for k, (x, y) in tasks.data.items()}
    return TaskBatch(tasks.model, data, tasks.loss_fn, tasks.metric_fns, tasks.primary_metric)


def load_script(folder: str, name: str):
    """The script ``FOLDER/NAME.py`` of the repository (``examples``, ``probes``) as a module,
    its ``main(argv)`` not yet run."""
    path = Path(__file__).resolve().parents[1] / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def small_sine():
    """A cheap sine family (small MLP) for gradient checks."""
    return SineFamily(hidden=(8,))


@pytest.fixture
def gen():
    g = torch.Generator()
    g.manual_seed(1234)
    return g


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def data_dir():
    """The shared offline MNIST and CIFAR-10 copies (``../shared/data``); skip where absent."""
    if not (SHARED_DATA / "mnist").is_dir() or not (SHARED_DATA / "cifar10").is_dir():
        pytest.skip("needs ../shared/data (MNIST and CIFAR-10)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def victims(tmp_path_factory):
    """Quick LeNet-5 victims (seconds each), trained once per test session."""
    if not (SHARED_DATA / "mnist").is_dir() or not (SHARED_DATA / "cifar10").is_dir():
        pytest.skip("needs ../shared/data (MNIST and CIFAR-10)")
    from lft.attacks import load_victim

    folder = tmp_path_factory.getbasetemp() / "quick-victims"
    return {s: load_victim(s, str(SHARED_DATA), quick=True, folder=folder)
            for s in ("mnist", "cifar10")}


def quadratic_problem(rows: int, dim: int, batch: int = 3):
    """``(loss, theta, gradient)``: a least-squares loss ``|theta A^T - b|^2 / 2`` of a batch of
    flat optimisees (``(B, D) -> (B,)``, ``(B, P, D) -> (B, P)``), a float64 batch and its
    exact gradient, for checking oracles against autograd."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(rows, dim, generator=g, dtype=torch.float64)
    b = torch.randn(rows, generator=g, dtype=torch.float64)
    theta = torch.randn(batch, dim, generator=g, dtype=torch.float64)

    def loss(th):
        return ((th @ a.T - b) ** 2).sum(-1) / 2
    return loss, theta, (theta @ a.T - b) @ a

