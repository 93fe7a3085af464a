"""Worked example 3: a universal adversarial perturbation of your own classifier, from a few images.

``lft.attacks.universal_perturbation`` fine-tunes one perturbation ``delta`` shared by every
image (Eq. 12 of the paper: push each image's true class below the best other class, plus
``lam * ||delta||^2``), from a handful of labelled images. White box it follows the
classifier's gradients; black box (``black_box=True``) it sees only the classifier's outputs
and estimates gradients from them, counting every image it sends (the query cost).

The classifier here is a small CNN trained in a second on synthetic 1x12x12 images of
horizontal against vertical stripes; any callable mapping images ``(N, C, H, W)`` in ``[0, 1]``
to logits ``(N, K)`` works. The attack fits on 10 images and is scored on 200 held-out ones.

The update rule is a hand-designed one (Adam), then the packaged fine-tuner ``uap-fo-lft``
(meta-trained on MNIST and CIFAR-10 attack tasks against LeNet-5 victims, so these 12x12
stripes and this CNN are new to it). From the command line:
``lft attack --victim file.py:fn --images DIR --fine-tuner uap-fo-lft``.

Run::

    python examples/attack_your_classifier.py [--steps 100] [--q 10]

About 10 s on one CPU core; ``tests/test_examples.py`` runs it with ``--steps 2``.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import lft
from lft.attacks import fine_tuner_method, universal_perturbation
from lft.attacks.attack import FixedShape
from lft.tasks.uap import Perturbation

SIZE = 12


def stripes(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` noisy images of horizontal (label 0) or vertical (label 1) stripes in [0, 1]."""
    y = torch.randint(0, 2, (n,), generator=g)
    phase = torch.randint(0, 4, (n, 1, 1), generator=g)
    rows = torch.arange(SIZE)[:, None].expand(SIZE, SIZE)
    lines = torch.where(y[:, None, None] == 0, rows, rows.T)
    x = (((lines + phase) % 4) < 2).float() * 0.6 + 0.2
    x = x + 0.1 * torch.randn(n, SIZE, SIZE, generator=g)
    return x.clamp(0, 1)[:, None], y


def your_classifier(g: torch.Generator) -> nn.Module:
    """Stands for the user's model: a small CNN, trained here on synthetic stripes."""
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8 * (SIZE // 2) ** 2, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        x, y = stripes(64, g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Attack white box and black box; print and return the held-out attack success rates."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100, help="fine-tuning steps (default 100)")
    p.add_argument("--q", type=int, default=10, help="black box: directions per step")
    p.add_argument("--lam", type=float, default=0.005, help="weight of ||delta||^2")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(a.seed)
    classifier = your_classifier(g)
    with torch.no_grad():  # attack only images the classifier gets right (clean ASR 0)
        x, y = stripes(400, g)
        ok = classifier(x).argmax(1) == y
        x, y = x[ok], y[ok]
    x_attack, y_attack, x_eval, y_eval = x[:10], y[:10], x[10:210], y[10:210]
    print(f"classifier: {float(ok.float().mean()):.1%} clean accuracy; attacking with "
          f"{len(y_attack)} images, scoring on {len(y_eval)} held-out ones")

    # the fine-tuning method: Adam on the perturbation, from a small random start
    family = FixedShape(Perturbation(classifier, tuple(x.shape[1:])))
    adam = lft.Method(lft.preset("adam", rule={"lr": 0.01}), family, seed=a.seed)
    learned, _ = fine_tuner_method("uap-fo-lft", tuple(x.shape[1:]), seed=a.seed)
    out = {}
    for mode, method, black_box in (("white box", adam, False), ("black box", adam, True),
                                    ("white box, uap-fo-lft", learned, False)):
        r = universal_perturbation(classifier, x_attack, y_attack, method, steps=a.steps,
                                   lam=a.lam, black_box=black_box, q=a.q, seed=a.seed,
                                   x_eval=x_eval, y_eval=y_eval)
        out[mode] = r.eval_asr
        print(f"{mode}: held-out ASR {r.eval_asr:.1%} (attack images {r.asr[-1]:.1%}), "
              f"distortion {r.distortion[-1]:.3f} (rms per pixel), {r.queries} images sent to "
              "the classifier")
    return out


if __name__ == "__main__":
    main()
