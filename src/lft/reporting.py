"""What every results file shares: the ``results.json`` document of ``shared/results-schema.md``,
its atomic JSON write, where and when a run ran, and how rows' notes are matched.

A leaf of the package (it imports no engine, no reproduction): the reproductions
(:mod:`lft.experiments.results`), the gradient-gap analysis, ``lft attack`` and the packaging
of fine-tuners all write and read through it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

from lft._version import __version__
from lft.safefiles import atomic_write_bytes


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


def utc_now() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def note_matches(row_note: str | None, note: str) -> bool:
    """Whether a row's ``note`` is ``note`` or begins with it and ``;`` (Table 1's rows carry
    ``lambda=VALUE``, the steps-to-75% rows ``lambda=VALUE; K of N tasks ...``)."""
    row_note = row_note or ""
    return row_note == note or row_note.startswith(note + ";")


def write_json(path: str | Path, obj: dict) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def results_document(artefact: str, profile: str, seed: int, started_at: str, wall_time_s: float,
                     config: dict, rows: list[dict]) -> dict:
    """The ``results.json`` object of ``shared/results-schema.md``."""
    return {"artefact": artefact, "profile": profile, "lft_version": __version__,
            "git_commit": git_commit(), "seed": seed, "started_at": started_at,
            "wall_time_s": round(wall_time_s, 1), "machine": machine(), "config": config,
            "rows": rows}
