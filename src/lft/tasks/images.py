"""Where an image task family's data and classifier come from: a name, a path or the user's own.

An image family's ``source`` is one of

* a named data set, ``"mnist"`` or ``"cifar10"`` (found under ``data_dir``; :func:`lft.data.
  load_source`);
* the path of a user's source (a string or ``Path``: an IDX folder, an image tree, CIFAR-style
  batches or a tarball; :func:`lft.data.load_user_source`). A relative folder called ``mnist``
  or ``cifar10`` is passed as ``"./mnist"``;
* the splits themselves: ``(train, test)`` :class:`~lft.data.ImageSplit` s or a dict
  ``{"train": ..., "test": ...}``.

A family's :meth:`~lft.tasks.TaskFamily.config` holds the name or the path string, so the family
can be rebuilt from it; splits in memory serialise as :data:`IN_MEMORY`, which
:func:`image_source` refuses to rebuild from (there is nothing on disk to read).

A classification family's ``model`` is ``"mlp"``, ``"conv4"``, ``"lenet5"`` or a factory
``model(image_shape, ways) -> nn.Module`` (``image_shape`` ``(C, H, W)``), which
:func:`build_classifier` turns into the flat functional model the engine fine-tunes, after a
trial forward pass on one blank image: a model that does not fit the images is refused at once.
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from pathlib import Path

import torch
from torch import nn

from lft.data import ImageSplit, check_source, load_source, load_user_source
from lft.data.sources import SOURCES
from lft.models.conv4 import conv4, image_mlp
from lft.models.functional import FlatModel
from lft.models.lenet import lenet5

#: what a family built from splits in memory writes as its source in config()
IN_MEMORY = "<in-memory ImageSplit pair>"
#: what a family given a model factory writes as its model in config()
FACTORY = "<model factory {}>"
MODELS = ("mlp", "conv4", "lenet5")


def image_source(source, data_dir: str | None = None, where: str = "image family"
                 ) -> tuple[dict[str, ImageSplit], str, str]:
    """``(splits, config value, short name)`` of an image family's ``source`` (see the module).

    Raises one ``ValueError``/:class:`~lft.data.DataError` line for an unknown type, a missing
    or unusable path, a serialised in-memory source and splits that do not match.
    """
    if isinstance(source, dict) and set(source) == {"train", "test"}:
        source = (source["train"], source["test"])
    if isinstance(source, tuple | list):
        if len(source) != 2 or not all(isinstance(s, ImageSplit) for s in source):
            raise ValueError(f"{where}: a source given as splits must be (train, test) "
                             "ImageSplits or {'train': ..., 'test': ...}, got "
                             f"{[type(s).__name__ for s in source]}")
        return check_source(dict(zip(("train", "test"), source)), "in-memory splits"), \
            IN_MEMORY, "images"
    if source == IN_MEMORY:
        raise ValueError(f"{where}: this configuration was made from ImageSplits in memory, "
                         "which it cannot hold; fix: rebuild the family in Python with "
                         "source=(train_split, test_split), or save the images as an IDX folder "
                         "or image tree and pass its path")
    if isinstance(source, str) and source in SOURCES:
        return load_source(source, data_dir), source, source
    if not isinstance(source, str | PathLike) or not str(source):
        raise ValueError(f"{where}: source must be {' or '.join(map(repr, SOURCES))}, the path "
                         f"of an image source, or (train, test) ImageSplits; got {source!r}")
    path = Path(source)
    if not path.exists():
        raise ValueError(f"{where}: unknown image source {str(source)!r}: neither "
                         f"{' nor '.join(SOURCES)} nor an existing file or folder; fix: pass a "
                         "named source or the path of your own images (an IDX folder, an image "
                         "tree train/ + test/, CIFAR-style batches or a tarball of one)")
    return load_user_source(path), str(source), path.name.split(".")[0] or "images"


def check_fits(module: nn.Module, image_shape: tuple[int, int, int], ways: int,
               what: str, where: str) -> None:
    """A forward pass of one blank image through ``module``: it must give ``(1, ways)``
    logits; anything else is one ``ValueError`` naming the model, the images and the fix."""
    fix = "fix: choose a model that takes these images (model 'mlp' fits any size)"
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, *image_shape))
    except Exception as e:  # a user's model can fail in any way
        raise ValueError(f"{where}: model {what} does not fit images of shape "
                         f"{'x'.join(map(str, image_shape))} (CxHxW): {type(e).__name__}: "
                         f"{e}; {fix}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, ways):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{where}: model {what} maps one image of shape "
                         f"{'x'.join(map(str, image_shape))} to {got}, not ({1}, {ways}) logits "
                         f"of the {ways}-way tasks; fix: give it {ways} outputs")


def build_classifier(model: str | Callable, image_shape: tuple[int, int, int], ways: int,
                     where: str = "classification family") -> tuple[FlatModel, str]:
    """``(flat functional model, config value)`` of ``model`` for ``ways``-way tasks on images
    of ``image_shape`` ``(C, H, W)``."""
    c, h, w = image_shape
    if callable(model) and not isinstance(model, str):
        name = FACTORY.format(getattr(model, "__qualname__", type(model).__name__))
        try:
            module = model(tuple(image_shape), ways)
        except Exception as e:
            raise ValueError(f"{where}: the model factory failed for images {image_shape} and "
                             f"{ways} ways ({type(e).__name__}: {e})") from None
        if not isinstance(module, nn.Module):
            raise ValueError(f"{where}: the model factory must return an nn.Module, got "
                             f"{type(module).__name__}")
    elif isinstance(model, str) and model.startswith(FACTORY.split("{")[0]):
        raise ValueError(f"{where}: this configuration was made with a Python model factory, "
                         "which it cannot hold; fix: rebuild the family in Python with "
                         "model=<the factory>, or use model 'mlp', 'conv4' or 'lenet5'")
    elif model not in MODELS:
        raise ValueError(f"{where}: model must be one of {', '.join(MODELS)} or a factory "
                         f"(image_shape, ways) -> nn.Module, got {model!r}")
    else:
        name = model
        try:
            if model == "mlp":
                module = image_mlp(h * w * c, n_classes=ways)
            elif model == "conv4":
                if h != w:
                    raise ValueError(f"Conv-4 takes square images, got {h}x{w}")
                module = conv4(in_channels=c, image_size=h, n_classes=ways)
            else:
                module = lenet5(c, (h, w), ways, input_grad=False)
        except ValueError as e:
            raise ValueError(f"{where}: model {model} does not fit images of shape "
                             f"{c}x{h}x{w} (CxHxW): {e}; fix: choose a model that takes them "
                             "(model 'mlp' fits any size)") from None
    check_fits(module, (c, h, w), ways, name, where)
    return FlatModel(module), name


__all__ = ["FACTORY", "IN_MEMORY", "MODELS", "build_classifier", "check_fits", "image_source"]
