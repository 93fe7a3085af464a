"""Parameter roles (weight/bias of the first/middle/last layer) from names or, failing that, shapes.

A coordinate-wise rule with the ``role`` feature reads each coordinate's role
``2 * position + is_bias`` (position 0 first, 1 middle, 2 last parameterised layer). During
meta-training :attr:`lft.models.FlatModel.roles` derives it from a module's parameter names;
a ``torch.optim`` user may hand over bare tensors, so the same roles are derived here from names
when they exist and from the order and shapes of the tensors otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence


def _positions(layer_of: list[int]) -> list[int]:
    last = max(layer_of) if layer_of else 0
    return [0 if i == 0 else (2 if i == last else 1) for i in layer_of]


def roles_from_names(names: Sequence[str]) -> list[int]:
    """One role per named tensor, as :attr:`FlatModel.roles` assigns them.

    The layer of ``"features.0.weight"`` is ``"features.0"``; layers are ordered by first
    appearance. A top-level name without a dot (a bare ``nn.Linear``'s ``"weight"``) belongs to
    the module itself, so its weight and bias share one layer.
    """
    prefixes = [name.rpartition(".")[0] for name in names]
    order: dict[str, int] = {}
    for prefix in prefixes:
        order.setdefault(prefix, len(order))
    positions = _positions([order[p] for p in prefixes])
    return [2 * pos + int(name.endswith("bias")) for pos, name in zip(positions, names)]


def roles_from_shapes(shapes: Sequence[Sequence[int]]) -> list[int]:
    """One role per tensor when only the order and shapes are known (``model.parameters()``).

    A 1-d tensor is the bias of the tensor before it when that one is not itself a bias and has
    a dimension of the same length (``Linear``/``Conv`` weight then bias, ``LayerNorm`` weight
    then bias); every other tensor starts a new layer as its weight. This matches the names
    for the usual ``Linear``/``Conv``/norm stacks; pass ``model.named_parameters()`` (or the
    model) to be exact, e.g. for a bias-free convolution followed by a BatchNorm.
    """
    layer_of: list[int] = []
    is_bias: list[bool] = []
    for i, shape in enumerate(shapes):
        prev = tuple(shapes[i - 1]) if i else ()
        bias = (len(shape) == 1 and i > 0 and not is_bias[-1] and len(prev) > 0
                and shape[0] in prev)
        layer_of.append(layer_of[-1] if bias else (layer_of[-1] + 1 if layer_of else 0))
        is_bias.append(bias)
    return [2 * pos + int(b) for pos, b in zip(_positions(layer_of), is_bias)]


__all__ = ["roles_from_names", "roles_from_shapes"]
