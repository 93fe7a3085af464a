"""The coordinate LSTM's step without autograd, in cache-sized blocks of coordinates.

Written as plain tensor operations, each operation of a step passes over all ``N``
coordinates: for the 108 866 weights of the MNIST MLP every pass streams megabytes, so on a CPU
the step is bound by memory traffic. When no gradient is needed (fine-tuning, evaluation,
``LearnedOptimizer``), the step runs here block by block, every layer and the head within a
block: inputs, gates and cell of a few thousand coordinates stay in the L2 cache, and every
intermediate is written in place into preallocated buffers. Same operations, same order, so
the results equal the autograd step's (:mod:`lft.rules.lstm_cell`) up to float rounding of
the matrix products.
"""

from __future__ import annotations

import torch

#: coordinates per block: ~95 floats of working set each, ~1.5 MB per block in float32
BLOCK = 4096


def role_runs(one_hot: torch.Tensor) -> list[tuple[int, int, int]]:
    """The runs ``(start, stop, role)`` of constant role over the flattened coordinates of a
    role one-hot ``(n_roles, *shape)`` (the ``role`` feature's state, an expanded view).

    Parameters of one role are contiguous in a flat model, so a model has a handful of runs
    (six for an MLP) repeated once per task of a batch; computed from the one-hot's compact
    base (the task axes broadcast with stride 0), not from its ``n_roles x N`` expansion.
    """
    lead = 0  # leading (task) axes broadcast with stride 0
    while lead < one_hot.dim() - 1 and one_hot.stride(lead + 1) == 0:
        lead += 1
    base = one_hot[(slice(None),) + (0,) * lead]
    roles = base.argmax(0).reshape(-1)
    n = roles.numel()
    if n == 0:
        return []
    cut = (torch.nonzero(roles[1:] != roles[:-1]).reshape(-1) + 1).tolist()
    starts, stops = [0] + cut, cut + [n]
    ids = roles[starts].tolist()
    reps = one_hot[0].numel() // n
    return [(k * n + a, k * n + b, r) for k in range(reps) for a, b, r in zip(starts, stops, ids)]


def _block_roles(n: int, block: int, runs: list[tuple[int, int, int]]
                 ) -> list[tuple[int, list[tuple[int, int, int]]]]:
    """Per block of ``block`` coordinates: the role at its start and the other runs inside it,
    as ``(start, stop, role)`` relative to the block (blocks stay full-width; a run boundary
    costs one small addition, not a block of its own)."""
    out, k = [], 0
    for a in range(0, n, block):
        b = min(a + block, n)
        while runs[k][1] <= a:
            k += 1
        first, extra, i = runs[k][2], [], k + 1
        while i < len(runs) and runs[i][0] < b:
            s, e, r = runs[i]
            if r != first:
                extra.append((s - a, min(e, b) - a, r))
            i += 1
        out.append((first, extra))
    return out


def lstm_step_blocks(weights: list[tuple[torch.Tensor, torch.Tensor | None]],
                     head: tuple[torch.Tensor, torch.Tensor | None],
                     rows: list[torch.Tensor], hc: list[torch.Tensor], hidden: int,
                     block: int | None = None,
                     roles: tuple[list[tuple[int, int, int]], torch.Tensor] | None = None,
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One step of a stacked LSTM over ``N`` coordinates, without autograd.

    Args:
        weights: per layer, the gate weight ``(4 hidden, in + hidden)`` with rows ordered
            i, f, o, g, and the bias ``(4 hidden, 1)`` or ``None``.
        head: the head's weight ``(1, hidden)`` and bias ``(1,)`` or ``None``.
        rows: the input channels as ``(k_i, N)`` tensors, in weight-column order.
        hc: ``[h_0, c_0, h_1, c_1, ...]``, each ``(hidden, N)``.
        roles: ``(runs, role_weight)`` when a one-hot role input is folded out of ``rows``:
            :func:`role_runs`'s runs and the first layer's role columns ``(4 hidden,
            n_roles)`` (removed from ``weights[0]``). Within a run the one-hot is constant, so
            its product is a per-run gate bias: fewer input rows to copy and multiply.

    Returns ``(out, new_hc)``: the head's output ``(1, N)`` (before any squashing) and the new
    ``h``/``c`` of each layer, ``(hidden, N)``.
    """
    n = rows[0].shape[-1]
    ref = rows[0]
    block = BLOCK if block is None else block
    if ref.device.type != "cpu":  # one block: launches, not caches, bound a GPU step
        block = max(n, 1)
    opts = {"dtype": ref.dtype, "device": ref.device}
    blocks = _block_roles(n, block, roles[0]) if roles else None
    # a gate bias rides in the matrix product as one more weight column against a constant
    # row of ones in the inputs: addmm would first copy the broadcast bias into the gates
    # (a pass over them per block, as long as a third of the product itself)
    aug = [None if b is None else torch.cat([w, b], 1) for w, b in weights]
    role_w, role_step = {}, {}
    if roles:  # one first-layer weight per role present, and the change between two roles
        w0, b0 = weights[0]
        cols = roles[1]
        for first, extra in blocks:
            col = cols[:, first:first + 1]
            role_w[first] = torch.cat([w0, col if b0 is None else b0 + col], 1)
            for _, _, r in extra:
                role_step[first, r] = cols[:, r:r + 1] - col
    # one allocation for every new h and c: fewer, larger blocks that the C allocator keeps
    # mapped between steps (separate ones were returned to the OS and page-faulted back in)
    new_hc = list(torch.empty(len(hc), hidden, n, **opts).unbind(0))
    out = torch.empty(1, n, **opts)
    # every per-block view made up front (one split per tensor, not a slice per block)
    rows_b = [r.split(block, dim=1) for r in rows]
    hc_b = [t.split(block, dim=1) for t in hc]
    new_b = [t.split(block, dim=1) for t in new_hc]
    out_b = out.split(block, dim=1)
    hw, hb = head
    hb = None if hb is None else hb.unsqueeze(1)
    bufs = {}
    for j in range(len(out_b)):
        m = out_b[j].shape[1]
        if m not in bufs:  # working buffers and their gate views, per block width
            gates = torch.empty(4 * hidden, m, **opts)
            xbuf = []  # per layer: the inputs, then a row of ones where the layer has a bias
            for i, (w, b) in enumerate(weights):
                biased = b is not None or (i == 0 and roles is not None)
                x = torch.empty(w.shape[1] + biased, m, **opts)
                if biased:
                    x[-1].fill_(1.0)
                xbuf.append((x, x[:w.shape[1]]))
            bufs[m] = (xbuf, gates, gates.split([3 * hidden, hidden]),
                       gates[:3 * hidden].chunk(3))
        xbuf, gates, (sig, cand), (i_g, f_g, o_g) = bufs[m]
        inputs = [r[j] for r in rows_b]
        for i, (w, b) in enumerate(weights):
            if i == 0 and roles:
                first, extra = blocks[j]
                w = role_w[first]
            elif b is not None:
                w = aug[i]
            x, x_in = xbuf[i]
            torch.cat(inputs + [hc_b[2 * i][j]], dim=0, out=x_in)
            torch.mm(w, x, out=gates)
            if i == 0 and roles:
                for a, e, r in extra:
                    gates[:, a:e].add_(role_step[first, r])
            torch.sigmoid(sig, out=sig)
            torch.tanh(cand, out=cand)
            c = new_b[2 * i + 1][j]
            # c = i g + f c_prev and h = o tanh(c), each written once into the new state
            # (no scratch buffer: a smaller working set per block, ~9% faster than
            # c = f c_prev then c += i g, h = o * tanh(c) through a temporary)
            cand.mul_(i_g)
            torch.addcmul(cand, f_g, hc_b[2 * i + 1][j], out=c)
            h = new_b[2 * i][j]
            torch.tanh(c, out=h)
            h.mul_(o_g)
            inputs = [h]
        if hb is None:
            torch.mm(hw, inputs[0], out=out_b[j])
        else:
            torch.addmm(hb, hw, inputs[0], out=out_b[j])
    return out, new_hc
