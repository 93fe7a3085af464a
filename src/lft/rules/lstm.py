"""The paper's fine-tuner ``m_phi``: a coordinate-wise LSTM (Andrychowicz et al. 2016).

One small LSTM is shared by every coordinate of every optimisee, so the same ``phi`` fine-tunes
optimisees of any size: this is what lets incongruous tasks be meta-learned together.

Layout: the rule works channels first. Inputs are ``(channels, N)`` for the ``N`` coordinates
of all tasks at once, the state keeps ``h`` and ``c`` as ``(hidden, *theta.shape)``, and the
four gates come out of one matrix product as ``(4 * hidden, N)``, ordered input, forget,
output, cell so that every element-wise operation reads contiguous rows (one sigmoid over
three gates, one tanh over the fourth). Coordinates-last layouts make the gate slices strided,
which made each element-wise pass several times slower on CPU.

Two implementations of the same step: without autograd, :mod:`lft.rules.lstm_inference`
(blocked, in place); with it, :class:`lft.rules.lstm_cell.LSTMLayerStep` per layer (blocked,
hand-written backward), or plain operations under ``torch.func`` transforms.
"""

from __future__ import annotations

import torch
from torch import nn

from lft.rules.base import State, UpdateRule
from lft.rules.features import N_ROLES, feature_rows, feature_state, feature_width
from lft.rules.lstm_cell import LSTMLayerStep, lstm_layer_reference, transforms_active
from lft.rules.lstm_fused import fused_step
from lft.rules.lstm_inference import lstm_step_blocks, role_runs


class CoordinateLSTM(UpdateRule):
    """Coordinate-wise LSTM update rule.

    Args:
        hidden: units per layer.
        layers: stacked LSTM layers.
        features: input features per coordinate (see :mod:`lft.rules.features`).
        p: the log/sign preprocessing constant (paper: 10).
        output_scale: the head's output is multiplied by this.
        bounded: pass the head through ``tanh`` so an update never exceeds ``output_scale``
            per coordinate (RNNprop); keeps early meta-training from exploding.
        bias: use biases in the LSTM gates and head (ZO-L2L uses none).
        head_init: the head's default init is multiplied by this (ZO-L2L: 0.1).
        raw_scale: multiplier of the ``raw`` feature.
    """

    kind = "lstm"

    def __init__(self, hidden: int = 10, layers: int = 1, features: tuple[str, ...] = ("logsign",),
                 p: float = 10.0, output_scale: float = 0.1, bounded: bool = True,
                 bias: bool = False, head_init: float = 0.1, raw_scale: float = 1.0):
        super().__init__()
        if hidden < 1 or layers < 1:
            raise ValueError("CoordinateLSTM needs hidden >= 1 and layers >= 1")
        self.hidden, self.layers = int(hidden), int(layers)
        self.features = tuple(features)
        self.p, self.output_scale, self.bounded = float(p), float(output_scale), bool(bounded)
        self.use_bias, self.head_init = bool(bias), float(head_init)
        self.raw_scale = float(raw_scale)
        n_in = feature_width(self.features)
        self.cells = nn.ModuleList(
            nn.Linear((n_in if i == 0 else hidden) + hidden, 4 * hidden, bias=bias)
            for i in range(layers)
        )
        if bias:
            for cell in self.cells:  # forget-gate bias 1: remember by default
                with torch.no_grad():
                    cell.bias[hidden:2 * hidden].fill_(1.0)
        self.head = nn.Linear(hidden, 1, bias=bias)
        with torch.no_grad():
            self.head.weight.mul_(head_init)
            if bias:
                self.head.bias.zero_()

    def config(self) -> dict:
        return {"type": self.kind, "hidden": self.hidden, "layers": self.layers,
                "features": list(self.features), "p": self.p,
                "output_scale": self.output_scale, "bounded": self.bounded,
                "bias": self.use_bias, "head_init": self.head_init, "raw_scale": self.raw_scale}

    def init(self, theta: torch.Tensor, roles: torch.Tensor | None = None) -> State:
        z = theta.new_zeros(self.hidden, *theta.shape)
        hc = tuple(z.clone() for _ in range(2 * self.layers))
        return hc + feature_state(self.features, theta, roles)

    def _gate_weight(self, cell: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The cell's weight (and bias) with gate rows reordered from i, f, g, o to i, f, o, g."""
        h = self.hidden
        w = torch.cat([cell.weight[:2 * h], cell.weight[3 * h:], cell.weight[2 * h:3 * h]])
        b = cell.bias
        if b is not None:
            b = torch.cat([b[:2 * h], b[3 * h:], b[2 * h:3 * h]]).unsqueeze(1)
        return w, b

    def update(self, grad: torch.Tensor, state: State,
               theta: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        n_hc, hid = 2 * self.layers, self.hidden
        inputs = [grad] + ([theta] if "param" in self.features and theta is not None else [])
        if not transforms_active() and not self._needs_graph(inputs, state):
            with torch.no_grad():  # the compiled kernel when it can run, else the blocks below
                fused = fused_step(self, grad, tuple(state), theta, self._role_ids(state))
            if fused is not None:
                return fused
        rows, fstate = feature_rows(self.features, grad, tuple(state[n_hc:]), p=self.p,
                                    raw_scale=self.raw_scale, theta=theta)
        shape = grad.shape
        plain = transforms_active()  # torch.func transforms need plain operations
        if not plain and not self._needs_graph(rows, state[:n_hc]):
            with torch.no_grad():
                n = grad.numel()
                weights = [self._gate_weight(cell) for cell in self.cells]
                roles = None
                if "role" in self.features:  # the one-hot folded into per-run gate biases
                    k = next(i for i, r in enumerate(rows) if r is fstate[-1])
                    col = sum(r.shape[0] for r in rows[:k])
                    w0, b0 = weights[0]
                    roles = (self._role_runs(rows[k]), w0[:, col:col + N_ROLES])
                    weights[0] = (torch.cat([w0[:, :col], w0[:, col + N_ROLES:]], 1), b0)
                    rows = rows[:k] + rows[k + 1:]
                out, new_hc = lstm_step_blocks(
                    weights, (self.head.weight, self.head.bias),
                    [r.reshape(r.shape[0], n) for r in rows],
                    [s.reshape(hid, n) for s in state[:n_hc]], hid, roles=roles)
                if self.bounded:  # the fresh output squashed and scaled in place
                    out.tanh_()
                out = out.mul_(self.output_scale).reshape(shape)
            return out, tuple(
                s.reshape(hid, *shape) for s in new_hc) + tuple(fstate)
        new_hc = []
        for i, cell in enumerate(self.cells):
            h, c = state[2 * i], state[2 * i + 1]
            x = torch.cat(rows + [h], dim=0).reshape(-1, grad.numel())  # (channels, N)
            w, b = self._gate_weight(cell)
            if plain:
                h, c = lstm_layer_reference(w, b, x, c.reshape(hid, -1), hid)
            else:
                h, c = LSTMLayerStep.apply(w, b, x, c.reshape(hid, -1), hid)
            new_hc += [h.reshape(hid, *shape), c.reshape(hid, *shape)]
            rows = [new_hc[-2]]
        w, b = self.head.weight, self.head.bias
        out = torch.mm(w, h) if b is None else torch.addmm(b.unsqueeze(1), w, h)
        return self._output(out.reshape(shape)), tuple(new_hc) + tuple(fstate)

    def _role_runs(self, one_hot: torch.Tensor) -> list[tuple[int, int, int]]:
        """:func:`role_runs` of the state's role one-hot, memoised per one-hot tensor (it is
        made once per fine-tuning run and never changed in place; the memo holds the tensor,
        so its storage cannot be reused by another while the entry lives)."""
        memo = self.__dict__.setdefault("_runs_memo", [])
        key = (one_hot.data_ptr(), tuple(one_hot.shape), tuple(one_hot.stride()))
        for k, _, runs in memo:
            if k == key:
                return runs
        runs = role_runs(one_hot)
        memo.insert(0, (key, one_hot, runs))
        del memo[4:]
        return runs

    def _role_ids(self, state: State) -> torch.Tensor | None:
        """With the ``role`` feature, the role index of each coordinate of one period of the
        flattened optimisee (the one-hot's compact base, as :func:`role_runs` reads it),
        memoised per one-hot tensor like :meth:`_role_runs`."""
        if "role" not in self.features:
            return None
        one_hot = state[-1]
        memo = self.__dict__.setdefault("_ids_memo", [])
        key = (one_hot.data_ptr(), tuple(one_hot.shape), tuple(one_hot.stride()))
        for k, _, ids in memo:
            if k == key:
                return ids
        lead = 0  # leading (task) axes broadcast with stride 0
        while lead < one_hot.dim() - 1 and one_hot.stride(lead + 1) == 0:
            lead += 1
        base = one_hot[(slice(None),) + (0,) * lead]
        ids = base.argmax(0).reshape(-1).to(torch.int32)
        memo.insert(0, (key, one_hot, ids))
        del memo[4:]
        return ids

    def _needs_graph(self, rows: list[torch.Tensor], hc: tuple) -> bool:
        """Whether this step must be recorded by autograd (else the blocked kernel runs)."""
        if not torch.is_grad_enabled():
            return False
        return (any(t.requires_grad for t in rows) or any(t.requires_grad for t in hc)
                or any(p.requires_grad for p in self.parameters()))

    def _output(self, out: torch.Tensor) -> torch.Tensor:
        """The head's output, bounded by ``tanh`` if configured, times the output scale."""
        if self.bounded:
            out = torch.tanh(out)
        return out * self.output_scale

    def extra_repr(self) -> str:
        return (f"hidden={self.hidden}, layers={self.layers}, features={self.features}, "
                f"output_scale={self.output_scale}, bounded={self.bounded}")

