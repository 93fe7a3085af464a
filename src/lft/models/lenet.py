"""LeNet-5, the paper's victim classifier, for 1x28x28 (MNIST), 3x32x32 (CIFAR-10) or user images.

The classic layout (LeCun et al. 1998) with ReLU and max-pooling: conv 6@5x5, pool, conv 16@5x5,
pool, then 120-84-10 fully connected. 28x28 inputs are zero-padded by 2 so that both image
sizes reach the same 16x5x5 feature map. The network takes pixels in ``[0, 1]`` and
standardises them itself (per-channel mean and std of its training set, stored as buffers), so
an attacker perturbs raw pixels and the clamp to ``[0, 1]`` is the only input constraint.

The convolutions are :class:`InputGradConv2d`: ordinary ``nn.Conv2d`` layers (same weights, same
state dict) whose gradient with respect to the input, when the weights are frozen, is computed
as a plain convolution with the flipped kernel, 5x faster on CPU than PyTorch's transposed
convolution for the 1- or 3-channel first layer (an attack differentiates the frozen victim
with respect to its input at every fine-tuning step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _FrozenConv(torch.autograd.Function):
    """``conv2d(x, w, b)`` differentiable in ``x`` only, its backward a forward convolution."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(weight)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        ph, pw = ctx.padding
        kh, kw = w.shape[-2:]
        # d conv2d / dx = cross-correlation of grad with the flipped, transposed kernel; plain
        # torch ops, so it is itself differentiable (second-order oracles, create_graph=True)
        gx = F.conv2d(grad, w.flip(-1, -2).transpose(0, 1), padding=(kh - 1 - ph, kw - 1 - pw))
        return gx, None, None, None


class InputGradConv2d(nn.Conv2d):
    """``nn.Conv2d`` (stride 1, zero padding, no groups or dilation) with a fast input gradient
    when its weights are frozen; while they train it is exactly ``nn.Conv2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frozen = not (self.weight.requires_grad or (self.bias is not None
                                                    and self.bias.requires_grad))
        if not frozen or not torch.is_grad_enabled() or self.stride != (1, 1) \
                or self.groups != 1 or self.dilation != (1, 1) \
                or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super().forward(x)
        return _FrozenConv.apply(x, self.weight, self.bias, self.padding)


class Standardize(nn.Module):
    """``(x - mean) / std`` per channel; the statistics are buffers saved with the weights."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean[:, None, None]) / self.std[:, None, None]


def lenet5(in_channels: int = 1, image_size: int | tuple[int, int] = 28, n_classes: int = 10,
           input_grad: bool = True) -> nn.Sequential:
    """LeNet-5 for ``in_channels x H x W`` inputs in ``[0, 1]`` (``image_size``: ``H = W`` or
    ``(H, W)``).

    28x28 images are padded by 2 and 32x32 ones not, as in the original, so both reach its
    16x5x5 feature map; any other size (a user's images, at least 12x12) is padded by 2 and the
    first fully connected layer takes whatever feature map it gives. ``input_grad=False`` builds
    plain ``nn.Conv2d`` layers (same state dict), for training it as a functional model.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    pad = (32 - h) // 2 if (h, w) in ((28, 28), (32, 32)) else 2
    fh, fw = (((n + 2 * pad - 4) // 2 - 4) // 2 for n in (h, w))
    if fh < 1 or fw < 1:
        raise ValueError(f"LeNet-5 takes images of at least 12x12 pixels, got {h}x{w}")
    conv = InputGradConv2d if input_grad else nn.Conv2d
    return nn.Sequential(
        Standardize(in_channels),
        conv(in_channels, 6, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
        conv(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * fh * fw, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, n_classes))


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    """Top-1 labels of ``images`` ``(N, C, H, W)``, in chunks (bounded memory, any ``N``)."""
    out = [model(images[i:i + chunk]).argmax(-1) for i in range(0, len(images), chunk)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)
