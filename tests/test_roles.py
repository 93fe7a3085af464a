"""One definition of parameter roles: the engine (FlatModel, meta-training) and the torch.optim
drop-in (names or shapes of the user's tensors) give every coordinate the same role."""

import pytest
import torch
from torch import nn

from lft.models import FlatModel, conv4, mlp
from lft.models.lenet import lenet5
from lft.models.roles import roles_from_names, roles_from_shapes


class Nested(nn.Module):
    """Children inside children, and one tensor shared by two layers."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
        self.block = nn.ModuleDict({"inner": nn.Linear(6, 6), "gate": nn.Linear(6, 6)})
        self.block["gate"].weight = self.block["inner"].weight  # shared: counted once
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        h = self.encoder(x)
        return self.head(self.block["inner"](h) * torch.sigmoid(self.block["gate"](h)))


MODELS = {"bare Linear": lambda: nn.Linear(3, 2),
          "MLP": lambda: mlp([1, 40, 40, 1]),
          "Conv-4": lambda: conv4(3, 32),
          "LeNet-5": lambda: lenet5(1, 28),
          "nested, shared": Nested}


def engine_roles(model: nn.Module) -> list[int]:
    """The role of each tensor as meta-training sees it (one value per tensor)."""
    flat = FlatModel(model)
    roles = flat.roles.split(flat.numels)
    assert all((r == r[0]).all() for r in roles)
    return [int(r[0]) for r in roles]


@pytest.mark.parametrize("name", list(MODELS))
def test_engine_and_drop_in_agree(name):
    model = MODELS[name]()
    named = list(model.named_parameters())
    engine = engine_roles(model)
    assert engine == roles_from_names([n for n, _ in named])
    if name != "nested, shared":  # shapes alone cannot see that a lone bias has its own layer
        assert engine == roles_from_shapes([tuple(p.shape) for _, p in named])


def test_the_roles_mean_what_they_say():
    assert engine_roles(nn.Linear(3, 2)) == [0, 1]  # one layer: the first, weight then bias
    assert engine_roles(mlp([1, 40, 40, 1])) == [0, 1, 2, 3, 4, 5]
    # the shared weight counts once; the gate keeps its own bias, a middle layer's
    assert engine_roles(Nested()) == [0, 1, 2, 3, 3, 4, 5]
