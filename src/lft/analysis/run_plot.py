"""Training you can look at: the meta-loss curve of a run and its evaluation curves, as a PNG.

A run is what ``lft train --out RUN`` writes (``metrics.jsonl``: one record per logged
meta-iteration with ``meta_loss`` and its smoothed ``meta_loss_ema``) or what ``lft reproduce
ARTEFACT --out RUN`` writes (``results.json`` in the format of ``shared/results-schema.md``,
and one meta-training log per learned method under ``logs/``). Evaluation curves are the
per-step rows (``step``, ``mean``, ``ci95``) of any results document found in the run folder
(``lft evaluate --json RUN/rows.json`` writes one) or passed beside it; each is drawn as its
mean with a 95% confidence band, one panel per metric.

Only reading and drawing happen here (matplotlib, Agg backend), so the reproductions and the
command line can both use it: :func:`collect` finds the curves, :func:`draw` writes the figure,
:func:`plot_run` does both.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

METRICS = "metrics.jsonl"
RESULTS = "results.json"
#: Files of a run folder that are never results documents.
NOT_RESULTS = ("config.json",)
#: Metrics in the order their panels are drawn; others follow alphabetically.
METRIC_ORDER = ("mse", "loss", "accuracy", "asr", "distortion")
METRIC_LABELS = {"mse": "test MSE", "loss": "test loss", "accuracy": "test accuracy",
                 "asr": "attack success rate", "distortion": "distortion ‖δ‖₂/√d"}
#: Evaluation panels drawn at most (the first metrics of :data:`METRIC_ORDER`).
MAX_EVAL_PANELS = 3
PANEL_SIZE = (6.0, 4.2)  # inches
DPI = 110


class RunPlotError(ValueError):
    """RUN is not a run that can be plotted (missing, or holding no curve)."""


@dataclass
class TrainingCurve:
    """One meta-training log: iterations, meta-losses and their moving average."""

    label: str
    iterations: list[int]
    meta_loss: list[float]
    ema: list[float]


@dataclass
class EvalCurve:
    """One evaluation curve: per fine-tuning step, the mean and the 95% CI half-width."""

    label: str
    metric: str
    steps: list[int] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    ci95: list[float] = field(default_factory=list)


@dataclass
class RunCurves:
    """Everything :func:`collect` found in a run; ``sources`` are the files read."""

    training: list[TrainingCurve]
    evaluation: list[EvalCurve]
    sources: list[Path]


def read_metrics(path: str | Path, label: str | None = None) -> TrainingCurve | None:
    """The meta-loss curve of a JSON-lines training log; ``None`` if it has no record.

    Lines that do not parse (one cut short by ``kill -9``) are skipped, like ``--resume`` does.
    """
    path = Path(path)
    its, loss, ema = [], [], []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
            it, value = int(rec["iteration"]), float(rec["meta_loss"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        its.append(it)
        loss.append(value)
        ema.append(float(rec.get("meta_loss_ema", value)))
    if not its:
        return None
    return TrainingCurve(label or path.stem, its, loss, ema)


def _label(key: tuple, varying: dict[str, bool]) -> str:
    method, oracle, train_source, test_source, note, seed = key
    parts = [f"{method}/{oracle}"]
    if varying["sources"]:
        parts.append(f"{train_source}→{test_source}" if train_source != test_source
                     else train_source)
    if note:
        parts.append(note if len(note) <= 28 else note[:27] + "…")
    if seed is not None:
        parts.append(f"seed {seed}")
    return " ".join(parts)


def eval_curves(document: dict) -> list[EvalCurve]:
    """The per-step curves of a ``results.json`` document (the shared schema).

    Rows are grouped by method, oracle, sources, metric, note and ``meta_seed``; a group whose
    step goes back (several runs under one key) is split into one curve per run. Paired
    differences (``versus``), rows without a step or mean, and single-step rows (tuned
    baselines at one budget) are not curves and are left out.
    """
    rows = document.get("rows") if isinstance(document, dict) else None
    if not isinstance(rows, list):
        return []
    groups: dict[tuple, list[list[dict]]] = {}
    for r in rows:
        if (not isinstance(r, dict) or r.get("versus") is not None
                or not isinstance(r.get("step"), int) or r.get("mean") is None):
            continue
        key = (r.get("method", "?"), r.get("oracle", "?"), r.get("train_source", "?"),
               r.get("test_source", "?"), r.get("note") or "", r.get("meta_seed"),
               r.get("metric", "?"))
        runs = groups.setdefault(key, [[]])
        if runs[-1] and r["step"] <= runs[-1][-1]["step"]:
            runs.append([])
        runs[-1].append(r)
    varying = {"sources": len({k[2:4] for k in groups}) > 1}
    curves = []
    for key, runs in groups.items():
        for i, run in enumerate(runs):
            if len(run) < 2:
                continue
            label = _label(key[:6], varying) + (f" #{i + 1}" if len(runs) > 1 else "")
            c = EvalCurve(label, key[6])
            for r in run:
                c.steps.append(r["step"])
                c.mean.append(float(r["mean"]))
                c.ci95.append(float(r.get("ci95") or 0.0))
            curves.append(c)
    return curves


def _results_document(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("rows"), list) else None


def collect(run: str | Path, results: tuple[str | Path, ...] = ()) -> RunCurves:
    """Find the curves of ``run`` (a ``lft train`` or ``lft reproduce`` folder, or one
    ``metrics.jsonl``/``results.json`` file) and of the extra ``results`` documents.

    Raises :class:`RunPlotError` naming the problem when ``run`` does not exist or holds no
    meta-loss record and no evaluation curve.
    """
    run = Path(run)
    if not run.exists():
        raise RunPlotError(f"{run} does not exist; pass the folder of a `lft train --out` or "
                           f"`lft reproduce --out` run")
    logs, docs = [], []  # docs: (path, passed explicitly)
    if run.is_file() and run.suffix == ".jsonl":
        logs.append(run)
    elif run.is_file():
        docs.append((run, True))
    else:
        if (run / METRICS).is_file():
            logs.append(run / METRICS)
        logs += sorted((run / "logs").glob("*.jsonl")) if (run / "logs").is_dir() else []
        docs += [(p, False) for p in sorted(run.glob("*.json")) if p.name not in NOT_RESULTS]
    for extra in map(Path, results):
        if not extra.is_file():
            raise RunPlotError(f"--results {extra}: no such file; pass a results.json written "
                               f"by lft evaluate --json or lft reproduce")
        docs.append((extra, True))
    training, evaluation, used = [], [], []
    for p in logs:
        if (c := read_metrics(p, "meta-training" if p.name == METRICS else p.stem)) is not None:
            training.append(c)
            used.append(p)
    for p, explicit in docs:
        doc = _results_document(p)
        if doc is None and explicit:
            raise RunPlotError(f"{p} is not a results document (JSON with \"rows\"); pass one "
                               f"written by lft evaluate --json or lft reproduce")
        curves = eval_curves(doc) if doc is not None else []
        if curves:
            evaluation += curves
            used.append(p)
    if not training and not evaluation:
        raise RunPlotError(f"{run} holds no meta-loss record ({METRICS}, logs/*.jsonl) and no "
                           f"evaluation curve ({RESULTS}); plot a run folder after `lft train` "
                           f"has logged its first meta-iteration")
    return RunCurves(training, evaluation, used)


def _positive(values) -> bool:
    return all(math.isfinite(v) and v > 0 for v in values)


def _metric_rank(metric: str) -> tuple:
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric)


def _legend(ax, entries: int) -> None:
    """A legend that stays legible and lets the curves show through when it is long."""
    ax.legend(fontsize=7 if entries <= 6 else 6, ncol=1 + entries // 8, framealpha=0.6)


def draw(curves: RunCurves, out: str | Path, title: str | None = None) -> Path:
    """Write ``curves`` as a PNG at ``out``: a meta-loss panel (raw, faint; smoothed, solid)
    when there is a training log, then one panel per evaluation metric (mean and 95% band).

    The figure is ``PANEL_SIZE`` inches per panel at :data:`DPI` dots per inch.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted({c.metric for c in curves.evaluation}, key=_metric_rank)[:MAX_EVAL_PANELS]
    panels = (1 if curves.training else 0) + len(metrics)
    fig, axes = plt.subplots(1, panels, figsize=(PANEL_SIZE[0] * panels, PANEL_SIZE[1]),
                             squeeze=False)
    axes = list(axes[0])
    if curves.training:
        ax = axes.pop(0)
        for c in curves.training:
            (line,) = ax.plot(c.iterations, c.ema, lw=1.8, label=c.label)
            ax.plot(c.iterations, c.meta_loss, lw=0.8, alpha=0.35, color=line.get_color())
        if all(_positive(c.meta_loss) and _positive(c.ema) for c in curves.training):
            ax.set_yscale("log")
        ax.set_xlabel("meta-iteration")
        ax.set_ylabel("meta-loss (faint: logged; solid: moving average)")
        ax.set_title("meta-training")
        ax.grid(alpha=0.3, which="both")
        if len(curves.training) > 1:
            _legend(ax, len(curves.training))
    for ax, metric in zip(axes, metrics):
        shown = [c for c in curves.evaluation if c.metric == metric]
        for c in shown:
            lo = [m - h for m, h in zip(c.mean, c.ci95)]
            hi = [m + h for m, h in zip(c.mean, c.ci95)]
            style = "--" if "/zo" in c.label else "-"
            ax.plot(c.steps, c.mean, style, lw=1.6, label=c.label)
            ax.fill_between(c.steps, lo, hi, alpha=0.15)
        if metric in ("mse", "loss") and all(_positive(c.mean) for c in shown):
            ax.set_yscale("log")
        ax.set_xlabel("fine-tuning steps")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_title(f"evaluation: {METRIC_LABELS.get(metric, metric)} (95% CI)")
        ax.grid(alpha=0.3, which="both")
        _legend(ax, len(shown))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def plot_run(run: str | Path, out: str | Path | None = None,
             results: tuple[str | Path, ...] = ()) -> Path:
    """Draw the curves of ``run`` (see :func:`collect`) to ``out`` (default
    ``RUN/plot.png``, or beside a file RUN); returns the path written."""
    run = Path(run)
    curves = collect(run, results)
    folder = run if run.is_dir() else run.parent
    return draw(curves, Path(out) if out else folder / "plot.png", title=str(run))


__all__ = ["EvalCurve", "RunCurves", "RunPlotError", "TrainingCurve", "collect", "draw",
           "eval_curves", "plot_run", "read_metrics"]
