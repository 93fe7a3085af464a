"""Writing what a reproduction measured: results.json (shared schema), Markdown, figures."""

from __future__ import annotations

import math
from pathlib import Path

from lft.experiments.profiles import Profile
from lft.meta.evaluate import Curve
from lft.reporting import (  # noqa: F401 - the reproductions' one import of the schema helpers
    git_commit,
    machine,
    note_matches,
    results_document,
    utc_now,
    write_json,
)


def default_out(artefact: str, profile: str) -> Path:
    """Where ``lft reproduce`` writes by default: ``results/ARTEFACT`` for the paper profile
    (the committed runs), ``results/ARTEFACT-PROFILE`` otherwise, so a quick check never
    overwrites a paper run's results."""
    return Path("results") / (artefact if profile == "paper" else f"{artefact}-{profile}")


def resolve_profile(profiles: dict, name: str, overrides: dict | None = None) -> Profile:
    """A copy of the named profile (a :class:`~lft.experiments.profiles.Profile`) with
    ``overrides`` applied and validated (:meth:`~lft.experiments.profiles.Profile.resolve`);
    an unknown profile name or override field, or a bad value, raises ``ValueError`` naming
    it."""
    if name not in profiles:
        raise ValueError(f"unknown profile {name!r}; choose from {sorted(profiles)}")
    return type(profiles[name]).resolve(profiles, name, overrides)


def start_run(profiles: dict, artefact: str, profile: str, sources,
              data_dir: str | None, out: str | Path | None, overrides: dict | None = None
              ) -> tuple:
    """The resolved profile and the output folder of an image artefact's run: every source's
    data is checked first (the data layer's one-line error, before any work or folder)."""
    from lft.data import load_source

    prof = resolve_profile(profiles, profile, overrides)
    for source in sources:
        load_source(source, data_dir)
    out = Path(out or default_out(artefact, profile))
    out.mkdir(parents=True, exist_ok=True)
    return prof, out


def curve_rows(curve: Curve, method: str, oracle: str, train_source: str, test_source: str,
               note: str = "") -> list[dict]:
    """One schema row per fine-tuning step (per recorded step of a sparse curve)."""
    mean, ci = curve.mean(), curve.ci95()
    steps = curve.steps or range(len(mean))
    return [{"method": method, "oracle": oracle, "train_source": train_source,
             "test_source": test_source, "metric": curve.metric, "step": steps[k],
             "mean": _num(mean[k]), "ci95": _num(ci[k]), "n": curve.n, "note": note}
            for k in range(len(mean))]


def meta_training_summary(outcomes: list[dict]) -> str:
    """``Meta-training: LABEL N meta-iterations in M min (K skipped); ...`` over the outcomes
    of the jobs that meta-trained (those with ``train_stats``)."""
    return "Meta-training: " + "; ".join(
        f"{r['label']} {r['train_stats']['iterations']} meta-iterations in "
        f"{r['train_stats']['wall_time_s'] / 60:.1f} min "
        f"({r['train_stats']['skipped_nonfinite']} skipped)"
        for r in outcomes if "train_stats" in r) + "."


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


