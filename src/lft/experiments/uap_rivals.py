"""Fixed-budget UAPs: fine-tuners against IBM ART's universal perturbation (``uap-rivals``).

``lft reproduce uap-rivals --profile quick|paper`` compares, on few-shot UAP tasks under one
perturbation budget ``||delta||_2 <= eps`` (or ``|delta_i| <= eps``, the profile's ``norm``)
and with ``lambda = 0`` (the budget replaces the penalty), per image source (MNIST, CIFAR-10):

* ``lft``: the paper's FO-LFT, meta-trained under the budget (every step projected);
* ``lft+signsgd``: the residual learned rule, signSGD at the tuned step size times a learned
  per-step multiplier plus an LSTM correction bounded at that step size, meta-trained alike
  (the profile's ``residual`` may name ``lft+sgd`` or ``lft+adam`` instead);
* ``pgd`` (projected signed gradient, ``preset("signsgd")``), ``adam`` (projected Adam) and
  ``sgd`` (projected plain gradient: under an l2 budget the steepest-ascent direction, which
  sign-based steps are not), their step sizes tuned on meta-training tasks;
* ``art-fgsm`` and ``art-pgd``: ART's ``UniversalPerturbation`` with FGSM or PGD as the
  per-image attacker (:mod:`lft.rivals.art`), their settings tuned on meta-training tasks.

The radius ``eps`` of each source is chosen on meta-training tasks: the grid's radius at which
tuned ART-PGD's validation ASR lies in the profile's ``target_asr`` range (nearest its middle;
none inside: nearest the range), so the comparison is made where the attack neither always
nor never succeeds (:func:`choose_eps`; the search is in ``config.eps_search``). Without ART the
reference attack is tuned projected signed gradient, and ART's rows are skipped (one line says
so). Every method is then tested on the same held-out tasks from the same random starts (the
``"test-*"`` streams of :func:`lft.meta.evaluate.evaluate`, same chunks). Learned methods are
meta-trained once per ``meta_seeds`` seed; their rows carry ``meta_seed``.

It writes ``results.json`` (metrics ``asr`` and ``distortion`` per recorded step with
``queries``, ``eps`` and ``norm``; ``versus`` rows of paired ASR differences at the last step),
``uap-rivals.md``, ``uap-rivals.png`` (ASR against queries) and ``per_task.safetensors``
(per-task values), plus checkpoints and logs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lft.experiments.jobstore import JobStore
from lft.experiments.results import (
    default_out,
    resolve_profile,
    results_document,
    utc_now,
    write_json,
)
from lft.experiments.uap_jobs import UAPRivalsJob
from lft.experiments.uap_rivals_jobs import (  # noqa: F401 - the artefact's public names
    choose_eps,
    learned,
    record_steps,
    run_all,
    run_fine_tuner,
    test_batches,
)
from lft.experiments.uap_rivals_spec import (  # noqa: F401 - the artefact's public names
    ART_METHODS,
    ARTEFACT,
    METHODS,
    PROFILES,
    RESIDUALS,
    SOURCES,
    TUNED,
    UAPRivalsProfile,
    uap_config,
)
from lft.tasks import build_family

# ------------------------------------------------------------------ the artefact

def reproduce(profile: str = "quick", out: str | Path | None = None, seed: int = 0,
              workers: int | None = None, progress: bool = True, data_dir: str | None = None,
              profile_overrides: dict | None = None,
              resume: bool = False) -> dict:
    """Run the whole artefact; returns the ``results.json`` document. With ``resume``, jobs
    that a killed run in ``out`` finished are read back, not run again (``OUT/jobs``)."""
    from lft.experiments import uap_rivals_report as report
    from lft.rivals import art

    prof = resolve_profile(PROFILES, profile, profile_overrides)  # checked before any work
    out = Path(out or default_out(ARTEFACT, profile))
    if prof.black_box is not None:  # the black-box half: same eps, same test tasks
        from lft.experiments import uap_blackbox

        out.mkdir(parents=True, exist_ok=True)
        return uap_blackbox.reproduce(profile, prof, out, seed, workers or min(
            prof.workers, os.cpu_count() or 1), progress, data_dir, resume)
    started, t0 = utc_now(), time.perf_counter()
    victims = {s: build_family(uap_config(s, prof, data_dir, None)).victim.record
               for s in SOURCES}  # fail fast on missing data; train missing victims once
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or min(prof.workers, os.cpu_count() or 1)
    with_art = art.available()
    if not with_art:
        print(f"{ARTEFACT}: IBM ART is not installed, so the art-fgsm and art-pgd rows are "
              f"skipped (eps is chosen with tuned projected signed gradient instead); install "
              f"it with: {art.INSTALL}", flush=True)
    common = {"profile": prof, "seed": seed, "data_dir": data_dir, "out": str(out)}

    def job(kind: str, source: str, **more) -> UAPRivalsJob:
        return UAPRivalsJob(**common, kind=kind, source=source, **more)

    store = JobStore(out / "jobs", resume)
    if progress:
        print(f"{ARTEFACT}: choosing eps and tuning on meta-training tasks "
              f"({len(SOURCES)} sources, {workers} workers)", flush=True)
    selections = run_all([job("select", s) for s in SOURCES], workers, progress,
                         "choose eps and tune", store=store)
    sel = {s["source"]: s for s in selections}
    # the long external attacks first, one job each, so two workers finish together
    jobs = [job("fixed", s, selection=sel[s], only=[name])
            for name in (ART_METHODS if with_art else ()) for s in SOURCES]
    jobs += [job("learned", s, method=m, meta_seed=k, selection=sel[s])
             for s in SOURCES for m in learned(prof) for k in range(prof.meta_seeds)]
    jobs += [job("fixed", s, selection=sel[s], only=list(TUNED)) for s in SOURCES]
    if progress:
        print(f"{ARTEFACT}: eps = " + ", ".join(f"{s} {sel[s]['eps']:g}" for s in SOURCES)
              + f" (norm {prof.norm}); {len(jobs)} meta-training and test jobs", flush=True)
    records = run_all(jobs, workers, progress, "meta-train and test", store=store)
    wall = time.perf_counter() - t0
    table = report.collect(jobs, records)
    config = {"profile": prof.to_dict(), "workers": workers, "data_dir": data_dir,
              "victims": victims,
              "art_installed": with_art, "recorded_steps": record_steps(prof),
              "eps": {s: sel[s]["eps"] for s in SOURCES}, "norm": prof.norm,
              "eps_search": {s: {k: v for k, v in sel[s].items() if k not in ("art", "rules")}
                             for s in SOURCES},
              "tuning": {s: {"art": sel[s]["art"], "rules": sel[s]["rules"]} for s in SOURCES},
              "outcomes": report.outcomes(jobs, records),
              "definitions": report.DEFINITIONS}
    doc = results_document(ARTEFACT, profile, seed, started, wall, config,
                           report.schema_rows(table, prof))
    write_json(out / "results.json", doc)
    report.save_per_task(out / "per_task.safetensors", table)
    report.write_table(out / "uap-rivals.md", doc, table)
    report.plot(out / "uap-rivals.png", doc["rows"])
    return doc
