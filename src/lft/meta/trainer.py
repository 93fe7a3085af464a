"""The outer loop: meta-train a method's rule and/or initialisation (Algorithm 1).

Each meta-iteration samples a meta-batch of tasks, starts their optimisees, and unrolls the
rule for ``horizon`` steps in truncated windows of ``truncation`` steps. After each window the
weighted meta-loss of that window is back-propagated, the meta-gradient is clipped and applied
with Adam, and the optimisees and rule state are detached and carried into the next window
(truncated BPTT: memory is bounded by the window, not the horizon). Where a window must be
long (untruncated second-order MAML, LFT over a whole horizon), ``checkpoint_steps`` splits it
into gradient-checkpointed segments whose activations are recomputed during backward. A
non-finite meta-gradient is skipped and counted, never applied.

The meta-batch is drawn from ``task_streams`` independent random streams (one by default), so
that it can be split across processes without changing the numbers (:mod:`lft.meta.distributed`
holds the strategy object that does the splitting and the averaging). Everything a run needs to
continue bit-identically, beyond the method's parameters, is in :meth:`MetaTrainer.training_state`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lft import validation
from lft.meta.distributed import Replicas
from lft.meta.learners import Method
from lft.meta.objective import step_weights
from lft.meta.unroll import checkpointed_segment, trajectory
from lft.rules.base import detach_state
from lft.seeding import generator as make_generator
from lft.tasks.base import TaskFamily, as_groups

#: The outer-loop settings a method meta-trains with unless told otherwise (``lft train`` and
#: :meth:`TrainConfig.for_method`): MAML's are the paper's (25 tasks, meta-lr 1e-3); every
#: learned rule's are 8 tasks at 3e-3, decayed to a tenth on a cosine schedule.
METHOD_TRAIN_DEFAULTS = {
    "default": {"iterations": 1000, "meta_batch": 8, "meta_lr": 3e-3, "lr_decay": 0.1},
    "maml": {"iterations": 1000, "meta_batch": 25, "meta_lr": 1e-3, "lr_decay": 0.1},
}


@dataclass
class TrainConfig:
    """Outer-loop settings (JSON-serialisable)."""

    iterations: int = 1000
    meta_batch: int = 8
    meta_lr: float = 1e-3
    clip: float = 1.0
    seed: int = 0
    log_every: int = 50
    lr_decay: float = 1.0  # final meta-lr as a fraction of the initial one (cosine schedule)
    task_streams: int = 1  # independent task streams the meta-batch is drawn from

    def __post_init__(self):
        where = "training configuration"
        self.iterations = validation.integer("iterations", self.iterations, 1, where=where)
        self.meta_batch = validation.integer("meta_batch", self.meta_batch, 1, where=where)
        self.meta_lr = validation.positive("meta_lr", self.meta_lr, where)
        self.clip = validation.positive("clip (meta-gradient norm)", self.clip, where)
        self.seed = validation.integer("seed", self.seed, None, where=where)
        self.log_every = validation.integer("log_every", self.log_every, 1, where=where)
        self.lr_decay = validation.positive("lr_decay (final meta-lr fraction)", self.lr_decay,
                                            where)
        self.task_streams = validation.integer("task_streams", self.task_streams, 1, where=where)
        if self.meta_batch % self.task_streams:
            raise ValueError(f"meta_batch ({self.meta_batch}) must be a multiple of "
                             f"task_streams ({self.task_streams}), which is at least 1")

    @classmethod
    def for_method(cls, method: str, **given) -> TrainConfig:
        """The settings ``method`` (a preset name) meta-trains with by default
        (:data:`METHOD_TRAIN_DEFAULTS`), with the ``given`` fields that are not ``None``."""
        defaults = METHOD_TRAIN_DEFAULTS.get(method, METHOD_TRAIN_DEFAULTS["default"])
        return cls.from_dict({**defaults, **{k: v for k, v in given.items() if v is not None}})

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """A configuration from a dict of its fields; unknown or bad fields raise ``ValueError``."""
        d = validation.mapping("a training configuration", d)
        validation.known_options("training configuration", d, [f.name for f in fields(cls)])
        return cls(**d)


@dataclass
class TrainStats:
    """What happened during meta-training."""

    iterations: int = 0
    updates: int = 0
    skipped_nonfinite: int = 0
    wall_time_s: float = 0.0


#: the three random streams of a task stream, in the order they are stored in a checkpoint
STREAM_PARTS = ("tasks", "init", "oracle")


def stream_generators(seed: int, stream: int, streams: int) -> dict[str, torch.Generator]:
    """The task, initialisation and oracle generators of task stream ``stream`` of ``streams``.

    One stream keeps the historical purposes (``meta-train-tasks``, ...), so single-stream runs
    draw exactly the numbers they always drew.
    """
    suffix = "" if streams == 1 else f"/stream{stream}"
    return {part: make_generator(seed, f"meta-train-{part}{suffix}") for part in STREAM_PARTS}


class MetaTrainer:
    """Meta-trains ``method`` on tasks from ``family``.

    ``log`` (optional) is called with a dict per logged iteration; :meth:`train` also returns
    the history. The trainer holds no global state: two trainers can run side by side.
    ``replicas`` (default: one process) says which task streams this process runs and how
    meta-gradients are averaged with other processes (see :mod:`lft.meta.distributed`);
    parameters start as rank 0's.
    """

    def __init__(self, method: Method, family: TaskFamily, config: TrainConfig,
                 log: Callable[[dict], None] | None = None, replicas: Replicas | None = None):
        if not isinstance(method, Method) or not isinstance(config, TrainConfig):
            raise TypeError("MetaTrainer(method, family, config) needs a lft.Method and a "
                            f"lft.TrainConfig, got {type(method).__name__} and "
                            f"{type(config).__name__}")
        method.check_family(family)
        self.method, self.family, self.config = method, family, config
        self.params = method.meta_parameters()
        if not self.params:
            raise ValueError(f"method {method.config.name!r} has nothing to meta-learn")
        self.replicas = replicas or Replicas()
        self.shards = list(self.replicas.shards(config.task_streams))
        self.replicas.broadcast_(list(method.state_dict().values()))
        self.optimizer = torch.optim.Adam(self.params, lr=config.meta_lr)
        self.log = log
        self.stats = TrainStats()
        self.streams = {s: stream_generators(config.seed, s, config.task_streams)
                        for s in self.shards}
        self.ema: float | None = None  # smoothed meta-loss shown in logs
        self.stopped = False  # whether the last train() call ended early on request

    def _lr_at(self, it: int) -> float:
        c = self.config
        if c.lr_decay >= 1.0 or c.iterations <= 1:
            return c.meta_lr
        frac = it / (c.iterations - 1)
        return c.meta_lr * (c.lr_decay + (1 - c.lr_decay) * 0.5 * (1 + math.cos(math.pi * frac)))

    def _apply(self, loss: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss = self.replicas.average_grads(self.params, loss)  # identity alone
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.clip,
                                              error_if_nonfinite=False)
        if not torch.isfinite(norm) or not torch.isfinite(loss):
            self.stats.skipped_nonfinite += 1
            self.optimizer.zero_grad(set_to_none=True)
            return float("nan")
        self.optimizer.step()
        self.stats.updates += 1
        return float(norm)

    def _start_runs(self) -> list[list]:
        """Sample this process's share of the meta-batch; per shape group and stream:
        ``[tasks, theta, state, scale, oracle generator]``."""
        m, cfg = self.method, self.method.config
        per_stream = self.config.meta_batch // self.config.task_streams
        runs = []
        for s in self.shards:
            gens = self.streams[s]
            groups = [m.prepare(g) for g in as_groups(self.family.sample(per_stream,
                                                                          gens["tasks"]))]
            for tasks in groups:
                theta, state = m.start(tasks, gens["init"])
                with torch.no_grad():
                    scale = (tasks.loss(theta, cfg.meta_split).clamp_min(1e-8)
                             if cfg.normalize else None)
                runs.append([tasks, theta, state, scale, gens["oracle"]])
        return runs

    def _logged(self, it: int) -> bool:
        return it % self.config.log_every == 0 or it == self.config.iterations - 1

    def _checkpointed_window(self, run: list, k: int, n: int, segment_len: int,
                             weights: list[float], group_loss: torch.Tensor):
        """Steps ``k..k+n-1`` of one run in gradient-checkpointed segments of ``segment_len``.

        The same optimisee, rule state and weighted meta-loss (summed in the same order) as the
        plain loop in :meth:`iteration`, but each segment's activations are recomputed during
        backward instead of kept (``MethodConfig.checkpoint_steps``).
        """
        m, cfg = self.method, self.method.config
        tasks, theta, state, scale, oracle_gen = run

        def step_loss(offset: int):
            def loss_at(j: int, th: torch.Tensor) -> torch.Tensor | None:
                w = weights[k + offset + j]
                if w == 0:  # e.g. MAML's inner steps: no loss to compute
                    return None
                per_task = tasks.loss(th, cfg.meta_split)
                if scale is not None:
                    per_task = per_task / scale
                return w * per_task.mean()
            return loss_at

        for s in range(0, n, segment_len):
            theta, state, group_loss = checkpointed_segment(
                m.rule, m.oracle, tasks, theta, state, min(segment_len, n - s), oracle_gen,
                step_loss(s), group_loss)
        return theta, state, group_loss

    def iteration(self, it: int) -> dict:
        """One meta-iteration over a fresh meta-batch; returns its log record."""
        m, cfg = self.method, self.method.config
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr_at(it)
        runs = self._start_runs()
        n_tasks = sum(r[0].size for r in runs)
        split = cfg.meta_split
        weights = step_weights(cfg.weighting, cfg.horizon)
        window = cfg.truncation or cfg.horizon
        segment_len = cfg.checkpoint_steps
        total, norms, k = 0.0, [], 0
        while k < cfg.horizon:
            n = min(window, cfg.horizon - k)
            loss = runs[0][1].new_zeros(())
            for run in runs:
                tasks, theta, state, scale, oracle_gen = run
                group_loss = theta.new_zeros(())
                if segment_len is not None and segment_len < n:
                    theta, state, group_loss = self._checkpointed_window(
                        run, k, n, segment_len, weights, group_loss)
                else:
                    for j, (theta, state) in enumerate(trajectory(
                            m.rule, m.oracle, tasks, theta, state, n, oracle_gen)):
                        if weights[k + j] == 0:  # e.g. MAML's inner steps: no loss to compute
                            continue
                        per_task = tasks.loss(theta, split)
                        if scale is not None:
                            per_task = per_task / scale
                        group_loss = group_loss + weights[k + j] * per_task.mean()
                run[1], run[2] = theta, state
                loss = loss + (tasks.size / n_tasks) * group_loss
            k += n
            if loss.requires_grad:
                norms.append(self._apply(loss))
            total += float(loss.detach())
            for run in runs:
                run[1], run[2] = run[1].detach(), detach_state(run[2])
        final = float("nan")
        if self._logged(it):  # the final loss is only for the log: skip it otherwise
            with torch.no_grad():
                final = float(sum(r[0].loss(r[1], split).sum() for r in runs) / n_tasks)
        total, final = self.replicas.average([total, final])
        self.stats.iterations += 1
        return {"iteration": it, "meta_loss": total, "final_loss": final,
                "grad_norm": max(norms) if norms else float("nan"),
                "meta_lr": self._lr_at(it)}

    def train(self, progress: bool = True, start: int | None = None,
              on_iteration: Callable[[int], None] | None = None, *,
              save: Callable[[], None] | None = None, save_every: int = 0,
              stop: Callable[[], bool] | None = None) -> list[dict]:
        """Run meta-iterations ``start..iterations-1``; returns the logged records.

        ``start`` defaults to where the trainer is (0, or the iteration a resumed state holds).
        ``save()`` is called on every process after every ``save_every``-th iteration, after
        the last one, and when ``stop()`` turns true on any process between two iterations;
        then training ends early with :attr:`stopped` set.
        """
        start = self.stats.iterations if start is None else start
        history, t_last, self.stopped = [], time.perf_counter(), False
        bar = tqdm(range(start, self.config.iterations), disable=not progress,
                   desc=f"meta-train {self.method.config.label}", leave=False, dynamic_ncols=True)
        for it in bar:
            rec = self.iteration(it)
            ema = self.ema
            self.ema = rec["meta_loss"] if ema is None or not math.isfinite(ema) else (
                0.95 * ema + 0.05 * rec["meta_loss"])
            now = time.perf_counter()
            self.stats.wall_time_s += now - t_last
            t_last = now
            if self._logged(it):
                rec["meta_loss_ema"] = self.ema
                rec["skipped_nonfinite"] = self.stats.skipped_nonfinite
                rec["elapsed_s"] = self.stats.wall_time_s
                history.append(rec)
                if self.log:
                    self.log(rec)
                bar.set_postfix(loss=f"{self.ema:.4f}", skipped=self.stats.skipped_nonfinite)
            if on_iteration:
                on_iteration(it)
            stopping = stop is not None and self.replicas.any(stop())
            if save and (stopping or it == self.config.iterations - 1
                         or (save_every > 0 and (it + 1) % save_every == 0)):
                save()
                t_last = time.perf_counter()
            if stopping:
                self.stopped = True
                break
        bar.close()
        return history

    def training_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """What a resumed run needs beyond the method's parameters, as tensors and JSON.

        The Adam state, the iteration, the statistics and the generator states of every task
        stream (gathered from all processes, so every process must call this together).
        """
        opt = self.optimizer.state_dict()
        tensors, scalars = {}, {}
        for idx, st in opt["state"].items():
            for name, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"adam/{idx}/{name}"] = v.detach().cpu().clone()
                else:
                    scalars[f"{idx}/{name}"] = v
        local = torch.stack([torch.stack([self.streams[s][p].get_state() for p in STREAM_PARTS])
                             for s in self.shards])
        for s, states in enumerate(self.replicas.gather(local)):
            for p, state in zip(STREAM_PARTS, states):
                tensors[f"rng/{s}/{p}"] = state.clone()
        meta = {"iteration": self.stats.iterations, "stats": asdict(self.stats),
                "ema": self.ema, "task_streams": self.config.task_streams,
                "param_groups": opt["param_groups"], "adam_scalars": scalars}
        return tensors, meta

    def load_training_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Continue from a :meth:`training_state` (the method's parameters are loaded apart)."""
        if meta.get("task_streams") != self.config.task_streams:
            raise ValueError(f"the saved training state has {meta.get('task_streams')} task "
                             f"streams, this run {self.config.task_streams}")
        state: dict[int, dict] = {}
        for key, v in tensors.items():
            if key.startswith("adam/"):
                _, idx, name = key.split("/", 2)
                state.setdefault(int(idx), {})[name] = v
        for key, v in meta.get("adam_scalars", {}).items():
            idx, name = key.split("/", 1)
            state.setdefault(int(idx), {})[name] = v
        groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
                  for g in meta["param_groups"]]
        try:
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})
            for s in self.shards:
                for p in STREAM_PARTS:
                    self.streams[s][p].set_state(tensors[f"rng/{s}/{p}"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise ValueError(f"the saved training state is damaged or does not match this "
                             f"method ({type(e).__name__}: {e})") from None
        self.stats = TrainStats(**meta["stats"])
        self.ema = meta.get("ema")


def jsonl_logger(path: str | Path) -> Callable[[dict], None]:
    """A ``log`` callback that appends one JSON record per line to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(rec: dict) -> None:
        with path.open("a") as f:
            f.write(json.dumps(rec) + "\n")

    return log


__all__ = ["METHOD_TRAIN_DEFAULTS", "MetaTrainer", "TrainConfig", "TrainStats", "jsonl_logger",
           "stream_generators"]
