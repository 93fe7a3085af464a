"""``lft victims train|show`` and ``lft attack``: the command line of the UAP application.

Registered by :data:`lft.cli.COMMAND_MODULES`; each handler returns an exit status, and user
errors are ``ValueError`` s that ``lft`` prints as one line ``lft: error: ...`` (status 2).
"""

from __future__ import annotations

import json
from pathlib import Path

from lft.cli.common import UserError
from lft.tasks.victims import SOURCES
from lft.validation import non_negative_arg, positive_arg

RULES = ("adam", "signsgd", "sgd")


def register(sub) -> None:
    """Add ``victims`` and ``attack`` to the ``lft`` sub-command parsers."""
    v = sub.add_parser("victims", help="victim classifiers (LeNet-5) for adversarial attacks")
    vsub = v.add_subparsers(dest="victims_action", required=True)
    t = vsub.add_parser("train", help="train (or reuse) the LeNet-5 victim of an image source")
    t.add_argument("name", nargs="?", choices=SOURCES, metavar="{" + ",".join(SOURCES) + "}",
                   help="a named image source (or --source PATH)")
    t.add_argument("--source", default=None, metavar="PATH",
                   help="your own image source: an IDX folder like MNIST's, an image tree "
                        "train/<class>/*.png + test/..., CIFAR-style batches, or a .tar.gz of "
                        "one (needs --out)")
    t.add_argument("--data-dir", default=None,
                   help="image data folder (default $LFT_DATA_DIR, else the user cache folder)")
    t.add_argument("--epochs", type=positive_arg(int), default=None,
                   help="training epochs (default: MNIST 4, CIFAR-10 20; --quick: 1-2)")
    t.add_argument("--quick", action="store_true",
                   help="seconds, not minutes: few epochs on 10 000 images (a weaker victim "
                        "for tests and CI, cached under its own name)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None,
                   help="victim file (default <user cache>/victims/lenet5-SOURCE.safetensors)")
    t.add_argument("--force", action="store_true", help="retrain even if a matching file exists")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(handler=cmd_victims_train)
    s = vsub.add_parser("show", help="print the record of a victim file")
    s.add_argument("path")
    s.set_defaults(handler=cmd_victims_show)

    a = sub.add_parser("attack", help="one universal adversarial perturbation from a few images")
    a.add_argument("--victim", required=True,
                   help="a victim file from 'lft victims train', or module:function (or "
                        "file.py:function) mapping images (N,C,H,W) in [0,1] to logits (N,K)")
    a.add_argument("--images", default=None,
                   help="folder <class>/*.png|jpg of the images to fine-tune the perturbation "
                        "on; a class folder is a class index or a class name of the victim")
    a.add_argument("--source", default=None, metavar="PATH",
                   help="instead of --images: evaluate --tasks few-shot UAP tasks on this image "
                        "source (IDX folder, image tree, CIFAR-style batches, tarball; only "
                        "images the victim classifies correctly), one perturbation per task")
    a.add_argument("--tasks", type=positive_arg(int), default=100,
                   help="with --source: the number of tasks (default 100)")
    a.add_argument("--ways", type=positive_arg(int), default=2,
                   help="with --source: classes per task (default 2)")
    a.add_argument("--shots", type=positive_arg(int), default=5,
                   help="with --source: fine-tuning images per class (default 5)")
    a.add_argument("--queries", type=positive_arg(int), default=10,
                   help="with --source: held-out images per class (default 10, and as many "
                        "validation images)")
    a.add_argument("--classes", default=None,
                   help="comma-separated class names in the victim's label order, for class "
                        "folders named by class (a module:function victim knows none)")
    a.add_argument("--eval-dir", default=None,
                   help="held-out images (same layout): report the perturbation's ASR on them")
    a.add_argument("--fine-tuner", default=None, metavar="CHECKPOINT|NAME",
                   help="a meta-trained fine-tuner: a checkpoint of 'lft train' or a "
                        "reproduction, or a packaged name (uap-fo-lft, uap-zo-lft; "
                        "python -m lft.pretrained list)")
    a.add_argument("--rule", choices=RULES, default=None,
                   help="a hand-designed rule instead of a fine-tuner")
    a.add_argument("--lr", type=positive_arg(float), default=0.01,
                   help="step size of --rule (default 0.01)")
    a.add_argument("--steps", type=positive_arg(int), default=None,
                   help="fine-tuning steps (default 200; with --source 20)")
    a.add_argument("--lam", type=non_negative_arg, default=None,
                   help="weight of ||delta||_2^2 in the loss (default: the lam the fine-tuner "
                        "was meta-trained at, 0.001 for uap-fo-lft; else 0.01)")
    a.add_argument("--kappa", type=non_negative_arg, default=None,
                   help="C&W confidence of the loss: push until the wrong class leads by KAPPA "
                        "(default: the kappa the fine-tuner was meta-trained at, else 0)")
    a.add_argument("--init-scale", type=non_negative_arg, default=0.05,
                   help="random start U(-s, s) per pixel (default 0.05)")
    a.add_argument("--eps", type=positive_arg(float), default=None,
                   help="perturbation budget: keep ||delta|| <= EPS (the start and every step "
                        "are projected onto the ball; default: the fine-tuner's own budget, "
                        "else none; --lam 0 is allowed)")
    a.add_argument("--norm", choices=("2", "inf"), default=None,
                   help="the budget's norm: 2 (||delta||_2 over all C*H*W pixels, as IBM ART "
                        "defines it; the default) or inf (|delta_i| <= EPS); needs --eps")
    a.add_argument("--black-box", action="store_true",
                   help="use only the victim's outputs (zeroth-order gradient estimates); the "
                        "number of images sent to the victim is reported")
    a.add_argument("--q", type=positive_arg(int), default=20,
                   help="black box: random directions per step (2q queries per step)")
    a.add_argument("--queries-per-step", type=positive_arg(int), default=None,
                   help="black box: loss evaluations per step, the base point included "
                        "(forward differences along N-1 directions); default: 2q antithetic")
    a.add_argument("--estimator",
                   choices=("gaussian", "orthogonal", "history", "guided", "subspace"),
                   default=None, help="black box with --queries-per-step: the estimator "
                                      "(default history: past estimates in the query span; "
                                      "subspace: the directions of --basis)")
    a.add_argument("--basis", default=None,
                   help="black box, --estimator subspace: a .safetensors file of query "
                        "directions fitted on other tasks (lft.meta.fit_subspace)")
    a.add_argument("--mu", type=positive_arg(float), default=0.005,
                   help="black box: finite-difference radius")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", default="attack",
                   help="output folder (default ./attack); with --source a .safetensors file "
                        "of the perturbations, or a folder for deltas.safetensors")
    a.add_argument("--quiet", action="store_true")
    a.set_defaults(handler=cmd_attack)


def cmd_victims_train(a) -> int:
    """Train (or reuse) a victim and print its clean test accuracy and file."""
    from dataclasses import replace

    from lft.tasks.victims import settings_for, train_or_reuse

    if (a.name is None) == (a.source is None):
        raise UserError("choose the images: a named source (mnist, cifar10) or --source PATH")
    if a.source is not None and a.out is None:
        raise UserError(f"a victim of --source {a.source} needs a file name; fix: add --out "
                        "V.safetensors")
    source = a.name or a.source
    settings = settings_for(source, a.quick)
    settings = replace(settings, seed=a.seed, epochs=a.epochs or settings.epochs)
    victim, reused = train_or_reuse(source, a.data_dir, settings, quick=a.quick, path=a.out,
                                    force=a.force, progress=not a.quiet)
    r = victim.record
    how = "reused" if reused else f"trained in {r['train_time_s']:.0f}s"
    print(f"{victim.name}: clean test accuracy {r['clean_test_accuracy']:.2%} on "
          f"{r['data']['test_images']} {source} test images ({how}, "
          f"{r['settings']['epochs']} epochs, seed {r['settings']['seed']})")
    print(f"victim: {victim.path}")
    return 0


def cmd_victims_show(a) -> int:
    """Print a victim file's record (data, settings, accuracy)."""
    from lft.tasks.victims import read_victim

    print(json.dumps(read_victim(a.path).record, indent=1))
    return 0


def _method(a, model):
    """The fine-tuning method: a checkpoint's rule, or a hand-designed rule with ``--lr``."""
    from lft.attacks.attack import FixedShape, fine_tuner_method
    from lft.meta.learners import Method, preset

    if (a.fine_tuner is None) == (a.rule is None):
        raise ValueError("choose how to fine-tune the perturbation: --fine-tuner CHECKPOINT "
                         f"or --rule {'|'.join(RULES)} (with --lr)")
    family = FixedShape(model)
    if a.rule:
        return Method(preset(a.rule, rule={"lr": a.lr}), family, seed=a.seed), \
            f"{a.rule} (lr {a.lr:g})"
    return fine_tuner_method(a.fine_tuner, model.shape, a.seed)


def cmd_attack(a) -> int:
    """Fine-tune a universal perturbation, report ASR (and queries), save it."""
    from lft.attacks.attack import (
        load_attack_victim,
        load_labelled_images,
        save_perturbation,
        universal_perturbation,
    )
    from lft.perf import configure_threads
    from lft.reporting import write_json
    from lft.tasks.uap import Perturbation

    if (a.images is None) == (a.source is None):
        raise UserError("choose the images: --images FOLDER (one perturbation) or --source "
                        "PATH (--tasks few-shot tasks, one perturbation each)")
    lam, kappa, eps, norm = _loss_settings(a)
    if a.source is not None:
        from lft.cli.attack_source import cmd_attack_source
        return cmd_attack_source(a, lam, eps, norm, _method, kappa)
    a.steps = a.steps or 200
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; pass a folder for delta.npy, delta.png and "
                         "attack.json")
    if a.classes is not None:
        names = [c.strip() for c in a.classes.split(",")]
        if not all(names) or len(set(names)) != len(names):
            raise ValueError(f"--classes must be distinct comma-separated class names in the "
                             f"victim's label order, got {a.classes!r}")
    # batches of a few images: more intra-op threads only add synchronisation (200 steps
    # took 22 s with 2 threads against 2.4 s with 1 on a busy 2-core machine)
    configure_threads(small=True)
    victim = load_attack_victim(a.victim)
    if a.classes:
        victim.classes = [c.strip() for c in a.classes.split(",")]
    x, y = load_labelled_images(a.images, victim)
    x_eval = y_eval = None
    if a.eval_dir:
        x_eval, y_eval = load_labelled_images(a.eval_dir, victim)
        if x_eval.shape[1:] != x.shape[1:]:
            raise ValueError(f"--eval-dir images are {tuple(x_eval.shape[1:])} but --images "
                             f"are {tuple(x.shape[1:])}")
    method, how = _method(a, Perturbation(victim, tuple(x.shape[1:])))
    oracle = _oracle(a)
    evals = 2 * a.q if oracle is None else oracle["q"] + 1
    estimator = "gaussian, antithetic" if oracle is None else a.estimator or "history"
    mode = (f"black box (zeroth-order, {estimator}, {evals} loss evaluations per step)"
            if a.black_box else "white box (exact gradients)")
    budget = "no budget" if eps is None else f"budget ||delta||_{norm} <= {eps:g}"
    print(f"victim {victim.name}; {len(y)} images of shape {tuple(x.shape[1:])}, classes "
          f"{sorted(set(y.tolist()))}; fine-tuner {how}; {mode}; lambda {lam:g}; "
          f"kappa {kappa:g}; {budget}")
    every = max(1, a.steps // 10)

    def show(k, m):
        if not a.quiet and (k % every == 0 or k == a.steps):
            print(f"  step {k:>4}: ASR {m['asr']:.2f}  distortion {m['distortion']:.4f}  "
                  f"loss {m['loss']:.4f}")

    r = universal_perturbation(victim, x, y, method, steps=a.steps, lam=lam,
                               black_box=a.black_box, q=a.q, mu=a.mu,
                               init_scale=a.init_scale, seed=a.seed, x_eval=x_eval,
                               y_eval=y_eval, callback=show, eps=eps, norm=norm,
                               oracle=oracle, kappa=kappa)
    steps75 = "never" if r.steps_to_75 is None else f"step {r.steps_to_75:.0f}"
    print(f"attack images: ASR {r.asr[-1]:.2%} (clean {r.clean_asr:.2%}); 75% ASR first at "
          f"{steps75}; distortion ||delta||_2/sqrt(d) {r.distortion[-1]:.4f} "
          f"(||delta||_2 {r.l2:.3f})")
    if r.eval_asr is not None:
        print(f"held-out images ({r.eval_images}): ASR {r.eval_asr:.2%} "
              f"(clean {r.eval_clean_asr:.2%})")
    evaluated = ("" if r.loss_evaluations is None else
                 f"{r.loss_evaluations} loss evaluations ({evals} per step), ")
    print(f"queries: {evaluated}{r.queries} images sent to the victim in {r.victim_calls} calls"
          + ("" if a.black_box else ", each back-propagated (forward and backward passes)")
          + f"; wall time {r.wall_time_s:.2f} s ({a.steps} steps)")
    npy, png = save_perturbation(r.delta, a.out)
    report = {"victim": a.victim, "images": a.images, "eval_dir": a.eval_dir,
              "fine_tuner": how, "black_box": a.black_box, "q": a.q, "mu": a.mu,
              "lam": lam, "kappa": kappa, "steps": a.steps, "seed": a.seed, "asr": r.asr,
              "distortion": r.distortion, "loss": r.loss, "l2": r.l2,
              "clean_asr": r.clean_asr, "eval_asr": r.eval_asr,
              "eval_clean_asr": r.eval_clean_asr, "eval_images": r.eval_images,
              "steps_to_75": r.steps_to_75, "queries": r.queries,
              "loss_evaluations": r.loss_evaluations, "oracle": oracle,
              "victim_calls": r.victim_calls, "wall_time_s": r.wall_time_s, "eps": eps,
              "norm": None if eps is None else norm}
    write_json(Path(a.out) / "attack.json", report)
    print(f"wrote {npy}, {png}, {Path(a.out) / 'attack.json'}")
    return 0


def _loss_settings(a) -> tuple[float, float, float | None, str]:
    """``(lam, kappa, eps, norm)`` of the attack loss: the options given, else the fine-tuner's
    own meta-training settings (a fine-tuner works best on the loss it was trained on: one
    meta-trained at kappa 10 and run at kappa 0 reached 35% held-out ASR on CIFAR-10 against
    the 65% of its own loss), else lam 0.01, kappa 0 and no budget."""
    from lft.attacks.tasks import DEFAULT_LAM, trained_settings

    if a.norm is not None and a.eps is None:
        raise ValueError(f"--norm {a.norm} sets the shape of a perturbation budget; fix: pass "
                         "--eps RADIUS as well")
    trained = trained_settings(a.fine_tuner) if a.fine_tuner else {}
    lam = a.lam if a.lam is not None else trained.get("lam", DEFAULT_LAM)
    kappa = a.kappa if a.kappa is not None else trained.get("kappa", 0.0)
    if a.eps is not None:
        return lam, kappa, a.eps, a.norm or "2"
    return lam, kappa, trained.get("eps"), trained.get("norm", "2")


def _oracle(a) -> dict | None:
    """The black-box oracle ``--queries-per-step``/``--estimator`` ask for (``None``: the
    default antithetic Gaussian estimate of ``--q`` directions)."""
    from lft.oracles import at_budget

    if a.queries_per_step is None:
        if a.estimator is not None or a.basis is not None:
            raise ValueError("--estimator needs --queries-per-step (the loss evaluations per "
                             "step it may spend)")
        return None
    if not a.black_box:
        raise ValueError("--queries-per-step is a black-box budget; add --black-box")
    return at_budget(a.estimator or "history", a.queries_per_step, a.mu, a.basis)
