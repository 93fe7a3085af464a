"""Turn a meta-training checkpoint into a packaged pretrained fine-tuner (one command).

``python -m lft.pretrained add CHECKPOINT NAME --description ... --command ... [--results
results.json]`` copies the checkpoint's tensors and configuration into
``src/lft/pretrained/NAME.safetensors`` and adds a ``pretrained`` entry to its header: the
description, the command that produced it, and (from the reproduction's ``results.json``) the
figures it reported, which ``lft evaluate NAME`` re-measures.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from safetensors.torch import save_file

from lft import checkpoint
from lft.meta.learners import MethodConfig
from lft.pretrained import DIR
from lft.reporting import note_matches
from lft.safefiles import atomic_path
from lft.tasks.presets import with_data_dir

NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")


def reported_from_results(results: str | Path, method: str, oracle: str,
                          train_source: str | None = None, test_source: str | None = None,
                          note: str | None = None, meta_seed: int | None = None,
                          estimator: str | None = None) -> dict:
    """The rows of a ``results.json`` (shared schema) that belong to one method, per metric;
    ``note`` keeps only rows whose note is it or begins with it and ``;`` (e.g. Table 1's
    ``lambda=0.001``), ``meta_seed`` only that meta-training run's rows, ``estimator`` only
    the rows of that zeroth-order estimator (Figure 4 runs ZO-LFT on several). Paired
    (``versus``) rows are never figures of the method itself and are left out."""
    doc = json.loads(Path(results).read_text())
    rows = [r for r in doc["rows"] if r["method"] == method and r["oracle"] == oracle
            and not r.get("versus")
            and train_source in (None, r["train_source"])
            and test_source in (None, r["test_source"])
            and meta_seed in (None, r.get("meta_seed"))
            and estimator in (None, r.get("estimator"))
            and (note is None or note_matches(r.get("note"), note))]
    if not rows:
        raise ValueError(f"{results} has no rows for method {method!r} with oracle {oracle!r}")
    values: dict[str, dict[str, list]] = {}
    for r in rows:
        cell = values.setdefault(r["metric"], {})
        key = str(r["step"])
        if key in cell:
            raise ValueError(f"{results} has several {method}/{oracle} rows for "
                             f"{r['metric']} at step {key}: pass --train-source/--test-source/"
                             "--note/--meta-seed/--estimator")
        cell[key] = [r["mean"], r["ci95"]]
    steps = max(int(r["step"]) for r in rows if r["step"] is not None)
    return {"artefact": doc["artefact"], "profile": doc["profile"],
            "git_commit": doc.get("git_commit"),
            "evaluate": {"tasks": rows[0]["n"], "steps": steps, "seed": doc["seed"]},
            "values": values}


def package(source: str | Path, name: str, description: str, command: str,
            results: str | Path | None = None, out_dir: str | Path = DIR,
            train_source: str | None = None, test_source: str | None = None,
            note: str | None = None, meta_seed: int | None = None,
            estimator: str | None = None) -> Path:
    """Write ``out_dir/NAME.safetensors`` from the checkpoint ``source``; returns its path.

    The family's ``data_dir`` is not kept (a folder of the machine that meta-trained it): the
    packaged fine-tuner finds its data like any command (``--data-dir``, ``$LFT_DATA_DIR``).
    """
    if not NAME.match(name):
        raise ValueError(f"pretrained names are lower-case letters, digits, '.', '+', '-': "
                         f"got {name!r}")
    if "\n" in description:
        raise ValueError("the description is one line")
    tensors, meta = checkpoint.read(source)
    checkpoint.load_rule(source)  # refuses checkpoints without a meta-learned rule
    entry = {"name": name, "description": description, "command": command,
             "source": Path(source).name}
    if results is not None:
        entry["reported"] = reported_from_results(
            results, meta["method"]["name"],
            MethodConfig.from_dict(meta["method"]).oracle_kind,
            train_source, test_source, note, meta_seed, estimator)
    extra = {**meta["extra"], "pretrained": entry}
    header = {"format": checkpoint.FORMAT, "version": str(checkpoint.VERSION),
              "method": json.dumps(meta["method"]),
              "family": json.dumps(with_data_dir(meta["family"], None)),
              "extra": json.dumps(extra)}
    out = Path(out_dir) / f"{name}.safetensors"
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=header)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m lft.pretrained add CHECKPOINT NAME ...`` (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m lft.pretrained")
    sub = p.add_subparsers(dest="action", required=True)
    a = sub.add_parser("add", help="package a checkpoint as a pretrained fine-tuner")
    a.add_argument("checkpoint")
    a.add_argument("name")
    a.add_argument("--description", required=True)
    a.add_argument("--command", required=True, help="the command that produced the checkpoint")
    a.add_argument("--results", default=None, help="the reproduction's results.json")
    a.add_argument("--train-source", default=None)
    a.add_argument("--test-source", default=None)
    a.add_argument("--note", default=None, help="only rows with this note (or this note "
                   "then ';'): Table 1's lambda=VALUE, the chosen lambda")
    a.add_argument("--meta-seed", type=int, default=None,
                   help="only the rows of this meta-training run (artefacts with several)")
    a.add_argument("--estimator", default=None,
                   help="only the rows of this zeroth-order estimator (e.g. history)")
    a.add_argument("--out-dir", default=str(DIR))
    sub.add_parser("list", help="list the packaged fine-tuners")
    args = p.parse_args(argv)
    try:
        if args.action == "list":
            from lft.pretrained import catalogue
            for n, d in catalogue().items():
                print(f"{n:<24} {d}")
            return 0
        out = package(args.checkpoint, args.name, args.description, args.command,
                      args.results, args.out_dir, args.train_source, args.test_source,
                      args.note, args.meta_seed, args.estimator)
    except (ValueError, FileNotFoundError) as e:
        print(f"lft.pretrained: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


__all__ = ["main", "package", "reported_from_results"]
