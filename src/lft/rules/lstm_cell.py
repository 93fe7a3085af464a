"""One coordinate-LSTM layer step as an autograd ``Function``, in cache-sized blocks.

Written with autograd's own operations, a step over ``N`` coordinates makes every element-wise
operation (and its backward) pass over whole ``(hidden, N)`` arrays: for the 28 000
coordinates of 16 sine tasks these no longer fit a CPU's L2 cache, so meta-training was bound
by memory traffic. Here the forward and the hand-written backward walk the coordinates in
blocks of :data:`BLOCK` (one block on a GPU), keeping each block's gates in cache, with fewer
and in-place operations. The backward is exact (``gradcheck`` in float64). Differentiating
it again (``create_graph=True`` through the rule) recomputes the step with plain operations
(:func:`lstm_layer_reference`) and differentiates that, so higher-order derivatives stay
exact too; under ``torch.func`` transforms the rule uses the reference directly.
"""

from __future__ import annotations

import torch

#: coordinates per block on a CPU
BLOCK = 4096


def spans(n: int, device: torch.device, block: int | None = None) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` blocks of ``n`` coordinates (a single one off the CPU)."""
    block = BLOCK if block is None else block
    if device.type != "cpu":
        block = max(n, 1)
    return [(s, min(s + block, n)) for s in range(0, n, block)]


def lstm_layer_reference(w: torch.Tensor, b: torch.Tensor | None, x: torch.Tensor,
                         c_prev: torch.Tensor, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same step as :class:`LSTMLayerStep` with plain differentiable operations."""
    gates = torch.mm(w, x) if b is None else torch.addmm(b, w, x)
    # split, not slices: a slice's backward zero-fills a gates-sized tensor per slice
    sig, cand = gates.split([3 * hidden, hidden])
    i_g, f_g, o_g = torch.sigmoid(sig).chunk(3)
    c = torch.addcmul(f_g * c_prev, i_g, torch.tanh(cand))
    return o_g * torch.tanh(c), c


def transforms_active() -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, ...) is running."""
    check = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(check()) if check is not None else False


class LSTMLayerStep(torch.autograd.Function):
    """``h, c = step(w, b, x, c_prev)`` for one LSTM layer over ``N`` coordinates.

    ``w``: ``(4 hidden, K)`` with gate rows ordered i, f, o, g; ``b``: ``(4 hidden, 1)`` or
    ``None``; ``x``: ``(K, N)`` inputs (the layer's input channels, then its previous ``h``);
    ``c_prev``: ``(hidden, N)``. Returns ``h`` and ``c``, ``(hidden, N)`` each.
    """

    @staticmethod
    def forward(ctx, w, b, x, c_prev, hidden: int):
        n = x.shape[1]
        h = x.new_empty(hidden, n)
        c = x.new_empty(hidden, n)
        acts, tanh_c = [], []
        blocks = spans(n, x.device)
        for s, e in blocks:
            a = torch.mm(w, x[:, s:e]) if b is None else torch.addmm(b, w, x[:, s:e])
            a[:3 * hidden].sigmoid_()
            a[3 * hidden:].tanh_()
            i_g, f_g, o_g, g_g = a.split(hidden)
            cb = c[:, s:e]
            torch.mul(f_g, c_prev[:, s:e], out=cb)
            cb.addcmul_(i_g, g_g)
            t = torch.tanh(cb)
            torch.mul(o_g, t, out=h[:, s:e])
            acts.append(a)
            tanh_c.append(t)
        ctx.save_for_backward(w, b, x, c_prev)
        ctx.acts, ctx.tanh_c, ctx.blocks, ctx.hidden = acts, tanh_c, blocks, hidden
        return h, c

    @staticmethod
    def backward(ctx, dh, dc):
        w, b, x, c_prev = ctx.saved_tensors
        hid = ctx.hidden
        if torch.is_grad_enabled():  # create_graph: a differentiable backward, by recomputation
            return _backward_differentiable(ctx, w, b, x, c_prev, dh, dc)
        need_w, need_b, need_x, need_c = ctx.needs_input_grad[:4]
        dw = torch.zeros_like(w) if need_w else None
        db = w.new_zeros(w.shape[0], 1) if need_b else None
        dx = torch.empty_like(x) if need_x else None
        dcp = torch.empty_like(c_prev) if need_c else None
        for (s, e), a, t in zip(ctx.blocks, ctx.acts, ctx.tanh_c):
            i_g, f_g, o_g, g_g = a.split(hid)
            d = torch.empty_like(a)  # gradient of the gate pre-activations
            d_i, d_f, d_o, d_g = d.split(hid)
            dct = torch.empty_like(t)  # gradient of the new cell state
            if dh is not None:
                dhb = dh[:, s:e]
                torch.mul(dhb, t, out=d_o)
                torch.mul(t, t, out=dct)
                dct.neg_().add_(1).mul_(o_g).mul_(dhb)  # dh * o * (1 - tanh(c)^2)
            else:
                d_o.zero_()
                dct.zero_()
            if dc is not None:
                dct.add_(dc[:, s:e])
            torch.mul(dct, g_g, out=d_i)
            torch.mul(dct, c_prev[:, s:e], out=d_f)
            torch.mul(dct, i_g, out=d_g)
            if dcp is not None:
                torch.mul(dct, f_g, out=dcp[:, s:e])
            sig = a[:3 * hid]
            ds = sig * sig
            torch.sub(sig, ds, out=ds)  # sigmoid' = s (1 - s)
            d[:3 * hid].mul_(ds)
            torch.mul(g_g, g_g, out=dct)
            d_g.mul_(dct.neg_().add_(1))  # tanh' = 1 - g^2
            if dw is not None:
                dw.addmm_(d, x[:, s:e].t())
            if db is not None:
                db.add_(d.sum(1, keepdim=True))
            if dx is not None:
                torch.mm(w.t(), d, out=dx[:, s:e])
        return dw, db, dx, dcp, None


def _backward_differentiable(ctx, w, b, x, c_prev, dh, dc):
    """Gradients of a recomputed reference step, with their own graph (higher orders)."""
    args = (w, b, x, c_prev)
    wanted = [t is not None and need for t, need in zip(args, ctx.needs_input_grad)]
    inputs = [t for t, want in zip(args, wanted) if want]
    if not inputs:
        return (None,) * 5
    with torch.enable_grad():
        h, c = lstm_layer_reference(w, b, x, c_prev, ctx.hidden)
        outs = [(o, d) for o, d in ((h, dh), (c, dc)) if d is not None]
        grads = iter(torch.autograd.grad([o for o, _ in outs], inputs, [d for _, d in outs],
                                         create_graph=True, allow_unused=True))
    return tuple(next(grads) if want else None for want in wanted) + (None,)
