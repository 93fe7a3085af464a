"""Writing what a reproduction measured: results.json (shared schema), Markdown, figures."""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import os
import platform
import subprocess
from pathlib import Path

import torch

import lft
from lft.checkpoint import atomic_write_bytes
from lft.meta.evaluate import Curve


def git_commit() -> str:
    """Short commit of the code that runs, or ``"unknown"`` outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    """A one-line description of where this ran."""
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    n = torch.get_num_threads()
    return (f"{os.cpu_count()} CPU cores ({platform.machine()}), {dev}, "
            f"torch {torch.__version__}, {n} thread{'s' if n != 1 else ''}")


def default_out(artefact: str, profile: str) -> Path:
    """Where ``lft reproduce`` writes by default: ``results/ARTEFACT`` for the paper profile
    (the committed runs), ``results/ARTEFACT-PROFILE`` otherwise, so a quick check never
    overwrites a paper run's results."""
    return Path("results") / (artefact if profile == "paper" else f"{artefact}-{profile}")


def resolve_profile(profiles: dict[str, dict], name: str, overrides: dict | None = None) -> dict:
    """A deep copy of the named profile with ``overrides`` applied; unknown names raise."""
    if name not in profiles:
        raise ValueError(f"unknown profile {name!r}; choose from {sorted(profiles)}")
    prof = copy.deepcopy(profiles[name])
    prof.update(overrides or {})
    return prof


def start_run(profiles: dict[str, dict], artefact: str, profile: str, sources,
              data_dir: str | None, out: str | Path | None, overrides: dict | None = None
              ) -> tuple[dict, Path]:
    """The resolved profile and the output folder of an image artefact's run: every source's
    data is checked first (the data layer's one-line error, before any work or folder)."""
    from lft.data import load_source

    prof = resolve_profile(profiles, profile, overrides)
    for source in sources:
        load_source(source, data_dir)
    out = Path(out or default_out(artefact, profile))
    out.mkdir(parents=True, exist_ok=True)
    return prof, out


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def curve_rows(curve: Curve, method: str, oracle: str, train_source: str, test_source: str,
               note: str = "") -> list[dict]:
    """One schema row per fine-tuning step (per recorded step of a sparse curve)."""
    mean, ci = curve.mean(), curve.ci95()
    steps = curve.steps or range(len(mean))
    return [{"method": method, "oracle": oracle, "train_source": train_source,
             "test_source": test_source, "metric": curve.metric, "step": steps[k],
             "mean": _num(mean[k]), "ci95": _num(ci[k]), "n": curve.n, "note": note}
            for k in range(len(mean))]


def note_matches(row_note: str | None, note: str) -> bool:
    """Whether a row's ``note`` is ``note`` or begins with it and ``;`` (Table 1's rows carry
    ``lambda=VALUE``, the steps-to-75% rows ``lambda=VALUE; K of N tasks ...``)."""
    row_note = row_note or ""
    return row_note == note or row_note.startswith(note + ";")


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


def write_json(path: str | Path, obj: dict) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def results_document(artefact: str, profile: str, seed: int, started_at: str, wall_time_s: float,
                     config: dict, rows: list[dict]) -> dict:
    """The ``results.json`` object of ``shared/results-schema.md``."""
    return {"artefact": artefact, "profile": profile, "lft_version": lft.__version__,
            "git_commit": git_commit(), "seed": seed, "started_at": started_at,
            "wall_time_s": round(wall_time_s, 1), "machine": machine(), "config": config,
            "rows": rows}
