"""The model card (``README.md``) of a pretrained fine-tuner folder: YAML front matter for the
Hugging Face Hub, what the fine-tuner is, how to use it, the figures it reported and the
command that re-measures them."""

from __future__ import annotations

import json

from lft.checkpoint import describe_rule
from lft.oracles import is_zeroth_order


def _yaml_list(items: list[str]) -> str:
    return "\n".join(f"- {json.dumps(item)}" for item in items)


def _sources(family: dict) -> list[str]:
    if family.get("families"):
        return [s for f in family["families"] for s in _sources(f)]
    return [str(family.get("source", family.get("task", "unknown")))]


def remeasure_command(config: dict, ref: str) -> str | None:
    """The ``lft evaluate`` command that re-measures the reported figures of the fine-tuner
    ``ref`` (a folder, a packaged name or ``hf://owner/name``), or ``None`` without figures."""
    reported = (config.get("info") or {}).get("reported")
    if not reported:
        return None
    ev = reported["evaluate"]
    data = "" if _sources(config["family"]) == ["sine"] else " --data-dir DATA"
    return (f"lft evaluate {ref} --tasks {ev['tasks']} --steps {ev['steps']} "
            f"--seed {ev['seed']}{data}")


def _figures(reported: dict) -> list[str]:
    """A table of the per-step figures, then one line per whole-run figure (a step of
    ``None``, e.g. the steps to 75% ASR)."""
    values = reported["values"]
    per_step = sorted(m for m in values if all(k.isdigit() for k in values[m]))
    steps = sorted({int(k) for m in per_step for k in values[m]})
    lines = []
    if per_step:
        lines += ["| step | " + " | ".join(f"{m} (mean ± 95% CI)" for m in per_step) + " |",
                  "|---:|" + "---:|" * len(per_step)]
    for k in steps:
        cells = [_cell(values[m].get(str(k))) for m in per_step]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    whole = [f"- {m}: {_cell(v)}" for m in sorted(set(values) - set(per_step))
             for v in values[m].values()]
    return lines + ([""] if lines and whole else []) + whole


def _cell(pair: list | None) -> str:
    if not pair or pair[0] is None:
        return ""
    return f"{pair[0]:.4f} ± {pair[1] or 0:.4f}"


def model_card(config: dict, folder: str, repo_id: str | None = None) -> str:
    """The ``README.md`` of a pretrained folder written from ``config`` (see
    :func:`lft.pretrained.folder.write`); ``folder`` is the folder's own name and ``repo_id``
    its hub id, if any, for the usage lines (no machine path is written)."""
    method, family, info = config["method"], config["family"], config.get("info") or {}
    zo = is_zeroth_order(method.get("oracle", {}))
    sources = sorted(set(_sources(family)))
    tags = ["lft", "learned-optimizer", "meta-learning", "fine-tuning",
            "zeroth-order" if zo else "first-order", *sources]
    ref = f"hf://{repo_id}" if repo_id else f"./{folder}"
    load_ref = repo_id or f"./{folder}"
    lines = ["---", "library_name: lft", "tags:", _yaml_list(tags), "---", "",
             f"# {config['name']}", "", info.get("description") or
             "A learned fine-tuner: a meta-trained coordinate-wise update rule.", "",
             "## Usage", "", "```python", "import lft", "",
             f"ft = lft.FineTuner.from_pretrained({load_ref!r})",
             "opt = ft.optimizer(model)  # a torch.optim.Optimizer" + (
                 "; step(closure): it uses loss values only" if zo else ""),
             "```", "",
             "## Configuration", "",
             f"- method: `{method.get('name', '?')}`, rule "
             f"`{describe_rule(method.get('rule', {}))}`",
             f"- oracle: `{json.dumps(method.get('oracle', {}))}`",
             f"- meta-trained on: {family.get('task', '?')} tasks ({', '.join(sources)})"]
    if info.get("command"):
        lines.append(f"- produced by: `{info['command']}`")
    reported = info.get("reported")
    if reported:
        ev = reported["evaluate"]
        lines += ["", "## Reported figures", "",
                  f"From the `{reported['artefact']}` artefact ({reported['profile']} profile, "
                  f"commit `{reported.get('git_commit')}`), {ev['tasks']} held-out tasks, "
                  f"seed {ev['seed']}:", "", *_figures(reported), "",
                  "Re-measure them (`DATA`: the data folder, see `lft data download`; the "
                  "command prints the reported figures beside the new ones):", "",
                  "```", remeasure_command(config, ref), "```"]
    return "\n".join(lines) + "\n"


__all__ = ["model_card", "remeasure_command"]
