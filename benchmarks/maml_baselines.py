"""Second-order MAML on sine written with other libraries: the baselines of ``maml.py``.

Each baseline does exactly what one ``lft`` MAML meta-iteration does (``preset("maml")``):
``steps`` SGD steps (lr 0.01) on each task's 10 fine-tuning points from the shared
initialisation, keeping the graph of every inner gradient (second order); the meta-loss is the
mean over tasks of the MSE on the 10 validation points after the last step; the meta-gradient
is clipped at norm 1 and applied with Adam (lr 1e-3). Each follows its library's own MAML
example: ``higher.innerloop_ctx`` per task; torchopt's ``MetaSGD`` on a module with
``extract_state_dict``/``recover_state_dict`` per task; torchopt's functional ``sgd`` inside
``torch.func.vmap`` over tasks; and a plain per-task loop of ``torch.autograd.grad``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lft.tasks.base import TaskBatch

INNER_LR, META_LR, CLIP = 0.01, 1e-3, 1.0


class Baseline:
    """A network initialised like lft's learned initialisation, with its meta-optimiser."""

    name = "baseline"

    def __init__(self, module: nn.Module, init: dict[str, torch.Tensor], steps: int,
                 device: torch.device):
        self.net = copy.deepcopy(module).to(device)
        with torch.no_grad():
            for n, p in self.net.named_parameters():
                p.copy_(init[n])
        self.steps = steps
        self.meta_opt = torch.optim.Adam(self.net.parameters(), lr=META_LR)

    def meta_loss_backward(self, tasks: TaskBatch) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def iteration(self, tasks: TaskBatch) -> None:
        """One meta-iteration on ``tasks``."""
        self.meta_opt.zero_grad(set_to_none=True)
        self.meta_loss_backward(tasks)
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), CLIP)
        self.meta_opt.step()

    def meta_gradient(self) -> torch.Tensor:
        """The (clipped) meta-gradient of the last iteration, flat in parameter order."""
        return torch.cat([p.grad.reshape(-1) for p in self.net.parameters()])


def _splits(tasks: TaskBatch):
    (xs, ys), (xv, yv) = tasks.data["train"], tasks.data["val"]
    return xs, ys, xv, yv


class Higher(Baseline):
    """``higher.innerloop_ctx`` per task (higher's MAML example)."""

    name = "higher"

    def __init__(self, *args):
        import higher

        super().__init__(*args)
        self.higher = higher
        self.inner_opt = torch.optim.SGD(self.net.parameters(), lr=INNER_LR)

    def meta_loss_backward(self, tasks):
        xs, ys, xv, yv = _splits(tasks)
        b = xs.shape[0]
        for i in range(b):
            with self.higher.innerloop_ctx(self.net, self.inner_opt,
                                           copy_initial_weights=False) as (fnet, diffopt):
                for _ in range(self.steps):
                    diffopt.step(F.mse_loss(fnet(xs[i]), ys[i]))
                (F.mse_loss(fnet(xv[i]), yv[i]) / b).backward()


class TorchoptModule(Baseline):
    """torchopt's ``MetaSGD`` on the module, state extracted and recovered per task."""

    name = "torchopt_module"

    def __init__(self, *args):
        import torchopt

        super().__init__(*args)
        self.torchopt = torchopt
        self.inner_opt = torchopt.MetaSGD(self.net, lr=INNER_LR)

    def meta_loss_backward(self, tasks):
        to = self.torchopt
        xs, ys, xv, yv = _splits(tasks)
        net_state = to.extract_state_dict(self.net, by="reference", detach_buffers=True)
        opt_state = to.extract_state_dict(self.inner_opt, by="reference")
        losses = []
        for i in range(xs.shape[0]):
            for _ in range(self.steps):
                self.inner_opt.step(F.mse_loss(self.net(xs[i]), ys[i]))
            losses.append(F.mse_loss(self.net(xv[i]), yv[i]))
            to.recover_state_dict(self.net, net_state)
            to.recover_state_dict(self.inner_opt, opt_state)
        torch.stack(losses).mean().backward()


class TorchoptVmap(Baseline):
    """torchopt's functional ``sgd`` with ``torch.func.grad``, vmapped over tasks."""

    name = "torchopt_vmap"

    def __init__(self, *args):
        import torchopt

        super().__init__(*args)
        self.torchopt = torchopt
        self.params = dict(self.net.named_parameters())
        net, steps = self.net, self.steps
        inner = torchopt.sgd(lr=INNER_LR)

        def mse(p, x, y):
            return F.mse_loss(functional_call(net, p, (x,)), y)

        def task_loss(params, x_s, y_s, x_v, y_v):
            state = inner.init(params)
            for _ in range(steps):
                grads = torch.func.grad(mse)(params, x_s, y_s)
                updates, state = inner.update(grads, state, inplace=False)
                params = torchopt.apply_updates(params, updates, inplace=False)
            return mse(params, x_v, y_v)

        self.batched = torch.func.vmap(task_loss, in_dims=(None, 0, 0, 0, 0))

    def meta_loss_backward(self, tasks):
        self.batched(self.params, *_splits(tasks)).mean().backward()


class Loop(Baseline):
    """Plain PyTorch: a Python loop over tasks, ``autograd.grad(create_graph=True)``."""

    name = "loop"

    def meta_loss_backward(self, tasks):
        xs, ys, xv, yv = _splits(tasks)
        names = [n for n, _ in self.net.named_parameters()]
        b = xs.shape[0]
        for i in range(b):
            params = list(self.net.parameters())
            for _ in range(self.steps):
                loss = F.mse_loss(functional_call(self.net, dict(zip(names, params)), (xs[i],)),
                                  ys[i])
                grads = torch.autograd.grad(loss, params, create_graph=True)
                params = [p - INNER_LR * g for p, g in zip(params, grads)]
            pred = functional_call(self.net, dict(zip(names, params)), (xv[i],))
            (F.mse_loss(pred, yv[i]) / b).backward()


BASELINES = {cls.name: cls for cls in (Higher, TorchoptModule, TorchoptVmap, Loop)}
