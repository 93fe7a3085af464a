"""Table 1's outputs: the Markdown table, Figure 2 / A1, the trade-off plot, perturbation pictures.

Every function reads the measured cells of :func:`lft.experiments.table1.cells`,
``(train, method, oracle, test, lambda) -> {metric: (tasks, recorded steps), "steps": ...,
"first_hit": ...}`` and the lambda selection; nothing is typed in.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lft.experiments.results import machine, meta_training_summary
from lft.experiments.table1_spec import (
    BASELINES,
    NOT_APPLICABLE,
    PAPER,
    SOURCES,
    TESTS,
    THRESHOLD,
    TRAIN,
    Table1Profile,
    steps_summary,
)
from lft.meta.evaluate import Curve

TITLES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "mnist+cifar10": "MNIST+CIFAR-10",
          "none": "none"}
NAMES = {"lft": "LFT", "l2o": "L2O", "maml": "MAML", "signsgd": "signed gradient",
         "adam": "Adam", "sgd": "SGD"}


def _cell(curves: dict[str, torch.Tensor]) -> str:
    """``ASR% / distortion / steps`` at the last step (mean ± 95% CI where it applies)."""
    asr, dist = Curve("asr", curves["asr"]), Curve("distortion", curves["distortion"])
    steps, hit = steps_summary(curves["first_hit"])
    s = "N/A" if steps is None else f"{steps:.0f} ({hit}/{len(curves['asr'])})"
    return (f"{100 * float(asr.mean()[-1]):.0f} ± {100 * float(asr.ci95()[-1]):.0f}% / "
            f"{float(dist.mean()[-1]):.3f} / {s}")


def _paper(train: str, name: str, test: str) -> str:
    p = PAPER.get((train, name), {}).get(test)
    if p is None:
        return " [N/A]"
    return f" [{p[0]:g}% / {p[1]:g} / {'N/A' if p[2] is None else p[2]}]"


def _label(name: str, oracle: str) -> str:
    return f"{oracle.upper()}-{NAMES[name]}" if name in ("lft", "l2o") else NAMES[name]


def write_table(path: Path, table: dict, records: list[dict], jobs: list, prof: Table1Profile,
                profile_name: str, wall: float, victims: dict | None = None,
                selection: dict | None = None) -> str:
    """``table1.md``: ASR / distortion / steps per train x test x method, the paper's beside,
    and how lambda was chosen."""
    lam, k = selection["lambda"], prof.steps
    n = {t: len(v["asr"]) for (tr, m, o, t, la), v in table.items() if la == lam}
    lines = [f"# Table 1 — few-shot universal adversarial perturbations (profile "
             f"`{profile_name}`)", "",
             f"Each cell: ASR / distortion ||delta||_2/sqrt(d) / steps to first reach "
             f"{THRESHOLD:.0%} ASR (mean over the tasks that reach it, how many did; N/A if "
             f"none) after {k} fine-tuning steps from a random start, lambda = {lam:g} "
             "(chosen on meta-training tasks, below), on "
             + ", ".join(f"{n.get(t, 0)} held-out {TITLES[t]} tasks" for t in TESTS)
             + " (the mix pools the other two). ASR ± 95% CI. The paper's value in brackets "
             "(its l2 normalisation is not stated; its 0.05–0.14 are of the order of our "
             "||delta||_2/sqrt(d), far below raw ||delta||_2).", ""]
    if victims:
        lines += ["Victims (LeNet-5): " + "; ".join(
            f"{TITLES[s]} clean test accuracy {100 * r['clean_test_accuracy']:.1f}%"
            f"{' (quick victim)' if r.get('quick') else ''}" for s, r in victims.items()), ""]
    lines += ["| meta-train on | method | " + " | ".join(f"test: {TITLES[t]}" for t in TESTS)
              + " |", "|---|---|" + "---|" * len(TESTS)]
    oracles = prof.oracles
    for train in TRAIN:
        for name, ors in (("maml", ["fo"]), ("l2o", oracles), ("lft", oracles)):
            for oracle in ors:
                if name == "maml" and train != "mnist":
                    continue
                row = []
                for test in TESTS:
                    ours = table.get((train, name, oracle, test, lam))
                    row.append((_cell(ours) if ours is not None else "N/A")
                               + _paper(train, name, test))
                lines.append(f"| {TITLES[train]} | {_label(name, oracle)} | "
                             + " | ".join(row) + " |")
    for name in BASELINES:
        row = [_cell(table[c]) if (c := ("none", name, "fo", t, lam)) in table else "N/A"
               for t in TESTS]
        lrs = ", ".join(f"{r['tuned_lr']:g} on {next(iter(r['tests']))}"
                        for r, j in zip(records, jobs) if j.name == name)
        lines.append(f"| none (step size {lrs}) | {NAMES[name]} | " + " | ".join(row) + " |")
    lines += ["", f"MAML on CIFAR-10 and the mix: {NOT_APPLICABLE}.", ""]
    lines += _selection(selection) + _claims(table, lam, k)
    lines += ["", meta_training_summary(records), "",
              f"Wall time: {wall / 60:.1f} min on {machine()}.", ""]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def _selection(selection: dict) -> list[str]:
    """How lambda was chosen: tuned rule's validation ASR / distortion per lambda and source."""
    cands = selection["candidates"]
    sources = [s for s in SOURCES if any(s in per for per in cands.values())]
    lines = [f"Lambda selection ({selection['criterion']}): chosen lambda = "
             f"{selection['lambda']:g}. Tuned {NAMES[selection['method']]} on meta-training "
             "tasks, validation ASR / distortion at the last step (step size):", "",
             "| lambda | " + " | ".join(TITLES[s] for s in sources) + " |",
             "|---|" + "---|" * len(sources)]
    for lam, per in cands.items():
        mark = " (chosen)" if float(lam) == selection["lambda"] else ""
        lines.append(f"| {lam}{mark} | " + " | ".join(
            f"{100 * per[s]['asr']:.0f}% / {per[s]['distortion']:.3f} ({per[s]['lr']:g})"
            if s in per else "" for s in sources) + " |")
    return lines + [""]


def _claims(table: dict, lam: float, k: int) -> list[str]:
    """LFT against the best hand-designed baseline per test source, paired over tasks."""
    lines = [f"LFT against the best tuned hand-designed rule (highest mean ASR at step {k}) "
             "on the same test tasks and random starts: ASR difference (points, mean ± 95% CI) "
             "and distortion difference:", "",
             "| LFT meta-trained on | test | best baseline | ΔASR | Δdistortion |",
             "|---|---|---|---|---|"]
    for train in TRAIN:
        for test in TESTS:
            ours = table.get((train, "lft", "fo", test, lam))
            bases = {b: table[c] for b in BASELINES if (c := ("none", b, "fo", test, lam))
                     in table}
            if ours is None or not bases:
                continue
            best = max(bases, key=lambda b: float(bases[b]["asr"][:, -1].mean()))
            d_asr = Curve("d", ours["asr"] - bases[best]["asr"])
            d_dist = Curve("d", ours["distortion"] - bases[best]["distortion"])
            lines.append(f"| {TITLES[train]} | {TITLES[test]} | {NAMES[best]} | "
                         f"{100 * float(d_asr.mean()[-1]):+.1f} ± "
                         f"{100 * float(d_asr.ci95()[-1]):.1f} | "
                         f"{float(d_dist.mean()[-1]):+.4f} ± {float(d_dist.ci95()[-1]):.4f} |")
    return lines


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_curves(path: Path, table: dict, metric: str, lam: float) -> None:
    """Figure 2 (``asr``) or A1 (``distortion``) against steps, one panel per test source."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(TESTS), figsize=(5 * len(TESTS), 4.4), sharey=True)
    styles = {"mnist": "-", "mnist+cifar10": "--", "none": ":"}
    keys = sorted({k[:3] for k in table if k[4] == lam})
    colours = {k: plt.cm.tab10(i % 10) for i, k in enumerate(keys)}  # one per method, all panels
    for ax, test in zip(axes, TESTS):
        for (train, name, oracle, t, la), curves in table.items():
            if t != test or la != lam:
                continue
            c = Curve(metric, curves[metric])
            mean, ci, x = c.mean().numpy(), c.ci95().numpy(), curves["steps"].numpy()
            colour = colours[(train, name, oracle)]
            ax.plot(x, mean, styles[train], lw=1.6, color=colour)
            ax.fill_between(x, mean - ci, mean + ci, alpha=0.12, color=colour)
        ax.set_title(f"test: {TITLES[test]}")
        ax.set_xlabel("fine-tuning steps")
        ax.grid(alpha=0.3)
        if metric == "asr":
            ax.axhline(THRESHOLD, color="grey", lw=0.8)
    axes[0].set_ylabel({"asr": "attack success rate",
                        "distortion": "distortion ||δ||₂/√d"}[metric])
    handles = [plt.Line2D([], [], color=colours[k], ls=styles[k[0]]) for k in keys]
    labels = [_label(n, o) + ("" if tr == "none" else f" [{TITLES[tr]}]") for tr, n, o in keys]
    fig.legend(handles, labels, loc="lower center", ncol=min(len(keys), 5), fontsize=7)
    fig.suptitle(f"UAP, λ = {lam:g}: meta-trained on [MNIST] or [MNIST+CIFAR-10]")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_tradeoff(path: Path, table: dict, prof: Table1Profile, lam: float) -> None:
    """ASR against distortion at the last step for each method, one point per lambda of the
    grid (the chosen ``lam``, tested on more tasks, ringed)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(TESTS), figsize=(5.5 * len(TESTS), 4.8), squeeze=False)
    styles = {"mnist": "o-", "mnist+cifar10": "s--", "none": "^:"}
    keys = sorted({k[:3] for k in table})
    colours = {k: plt.cm.tab10(i % 10) for i, k in enumerate(keys)}
    for ax, test in zip(axes[0], TESTS):
        series: dict[tuple, list] = {}
        for (train, name, oracle, t, la), curves in table.items():
            if t == test:
                series.setdefault((train, name, oracle), []).append(
                    (la, float(curves["distortion"][:, -1].mean()),
                     float(curves["asr"][:, -1].mean())))
        for key, pts in sorted(series.items()):
            pts.sort()
            train, name, oracle = key
            label = _label(name, oracle) + ("" if train == "none" else f" [{TITLES[train]}]")
            ax.plot([p[1] for p in pts], [p[2] for p in pts], styles[train], ms=4,
                    color=colours[key], label=label)
            for la, x, y in pts:
                if la == lam:
                    ax.plot([x], [y], "o", ms=9, mfc="none", color=colours[key])
        ax.set_title(f"test: {TITLES[test]}, after {prof.steps} steps")
        ax.set_xlabel("distortion ||δ||₂/√d")
        ax.set_ylabel("attack success rate")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=7)
    lams = ", ".join(f"{x:g}" for x in sorted(prof.lams))
    fig.suptitle(f"ASR against distortion over λ ∈ {{{lams}}} (ringed: λ = {lam:g}, the table's; "
                 "larger λ, less distortion). Learned rules meta-trained at the table's λ only.",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    fig.savefig(path, dpi=130)
    plt.close(fig)


@torch.no_grad()
def pictures(path: Path, checkpoint_path: Path, family_configs: list[dict], steps: int,
             n: int, seed: int) -> None:
    """Perturbations a meta-trained fine-tuner learned on ``n`` held-out tasks per source,
    beside one of each task's test images, clean and perturbed, with the victim's labels."""
    from lft import checkpoint
    from lft.meta.unroll import trajectory
    from lft.seeding import generator
    from lft.tasks import build_family

    plt = _plt()
    method = checkpoint.load(checkpoint_path)[0]
    fig, axes = plt.subplots(len(family_configs) * n, 3, figsize=(6, 2.1 * n *
                                                                  len(family_configs)))
    row = 0
    for cfg in family_configs:
        fam = build_family(cfg).for_part("meta-test")
        gen = generator(seed, "table1-pictures")
        tasks = fam.sample(n, gen)
        theta, state = method.start(tasks, gen)
        for theta, state in trajectory(method.rule, method.oracle, tasks, theta, state, steps,
                                       gen):
            pass
        asr = tasks.metrics(theta)["asr"]
        x = tasks.data["test"][0]
        classes = fam.victim.classes
        for i in range(n):
            delta = theta[i].view(fam.model.shape)
            adv = (x[i, 0] + delta).clamp(0, 1)
            clean_pred = int(fam.victim(x[i, :1]).argmax())
            adv_pred = int(fam.victim(adv[None]).argmax())
            scale = float(delta.abs().max()) or 1.0
            shown = [(0.5 + delta / (2 * scale), f"δ ({fam.source}), task ASR {asr[i]:.0%}"),
                     (x[i, 0], f"clean: {classes[clean_pred]}"),
                     (adv, f"perturbed: {classes[adv_pred]}")]
            for ax, (img, title) in zip(axes[row], shown):
                img = img.permute(1, 2, 0).numpy()
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray",
                          vmin=0, vmax=1)
                ax.set_title(title, fontsize=7)
                ax.axis("off")
            row += 1
    fig.suptitle(f"{method.config.label}: perturbations after {steps} steps", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
