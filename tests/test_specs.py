"""Profiles and method jobs as typed specifications: validated once, with one-line errors that
name the field; JSON round trips; the job store's canonical description is stable."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest

from lft.experiments import budgets, figure4, table1, table1_extra, table2, uap_rivals
from lft.experiments.jobs import MethodJob
from lft.experiments.jobstore import JobStore, describe
from lft.experiments.results import resolve_profile
from lft.experiments.uap_jobs import Table1Job, Table1TuneJob, UAPRivalsJob

ARTEFACTS = (figure4, table2, budgets, table1, uap_rivals)
ROOT = Path(__file__).resolve().parents[1]


def _one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as err:
        fn(*args, **kwargs)
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("module", ARTEFACTS, ids=lambda m: m.ARTEFACT)
def test_every_profile_round_trips_through_its_json(module):
    for name, prof in module.PROFILES.items():
        d = prof.to_dict()
        assert json.loads(json.dumps(d)) == d
        assert type(prof).from_dict(json.loads(json.dumps(d))) == prof, name


@pytest.mark.parametrize("module", ARTEFACTS, ids=lambda m: m.ARTEFACT)
def test_an_unknown_override_is_refused_by_name(module):
    text = _one_line_error(resolve_profile, module.PROFILES, "quick", {"stepz": 3})
    assert "unknown field 'stepz'" in text and "choose from" in text and "test_tasks" in text


@pytest.mark.parametrize("module, field, value", [
    (figure4, "steps", 0), (figure4, "meta_batch", 2.5), (figure4, "lr_grid", []),
    (table2, "eval_chunk", -1), (table2, "workers", True), (budgets, "test_tasks", "10"),
    (table1, "steps", 0), (table1, "pool", 0.5), (table1, "lams", [0.01, -1.0]),
    (uap_rivals, "meta_seeds", 0), (uap_rivals, "kappa", -1.0),
], ids=lambda x: getattr(x, "ARTEFACT", str(x)))
def test_a_bad_value_is_refused_naming_the_field(module, field, value):
    text = _one_line_error(resolve_profile, module.PROFILES, "quick", {field: value})
    assert text.startswith(f"{module.ARTEFACT} profile: ") and field in text


def test_nested_entries_and_choices_are_checked():
    text = _one_line_error(resolve_profile, figure4.PROFILES, "quick",
                           {"iterations": {"lft": 3, "l2o": 3, "maml": 3}})
    assert "iterations needs entries for ['lft+init']" in text
    text = _one_line_error(resolve_profile, figure4.PROFILES, "quick",
                           {"zo_rivals": {"oracles": [], "budgets": [1], "rules": ["rmsprop"]}})
    assert "zo_rivals rule 'rmsprop'" in text and "signsgd" in text
    assert "base_budget 3" in _one_line_error(resolve_profile, budgets.PROFILES, "quick",
                                              {"base_budget": 3})
    assert "budgets must be increasing" in _one_line_error(
        resolve_profile, budgets.PROFILES, "quick", {"budgets": [5, 1]})
    assert "maml_inner steps" in _one_line_error(
        resolve_profile, table2.PROFILES, "quick", {"maml_inner": {"lr": 0.1, "steps": 0}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        table2.PROFILES["quick"].steps = 3


def test_overrides_make_a_new_profile_and_leave_the_table_alone():
    prof = resolve_profile(figure4.PROFILES, "quick", {"steps": 5, "zo_variants": {},
                                                       "zo_rivals": None})
    assert prof.steps == 5 and prof.zo_variants == {} and "zo_rivals" not in prof.to_dict()
    assert "zo_rivals budget must be an integer in 1..5, got 20" in _one_line_error(
        resolve_profile, figure4.PROFILES, "quick", {"steps": 5})  # budgets past the horizon
    assert figure4.PROFILES["quick"].steps == 20
    assert figure4.PROFILES["quick"].zo_variants == {"learned": figure4.LEARNED}
    prof.iterations["lft"] = 1  # a resolved profile is a deep copy
    assert figure4.PROFILES["quick"].iterations["lft"] == 40
    with pytest.raises(ValueError, match="unknown profile 'fast'; choose from"):
        resolve_profile(figure4.PROFILES, "fast")


def test_optional_fields_that_are_off_are_left_out_of_the_json():
    quick, paper = (figure4.PROFILES[n].to_dict() for n in ("quick", "paper"))
    assert "zo_iterations" not in quick and paper["zo_iterations"] == 1500
    assert "meta_seeds" not in paper and "only" not in paper
    seeds = figure4.PROFILES["paper-zo-seeds"].to_dict()
    assert seeds == {**paper, "meta_seeds": 3, "only": ["ZO-LFT"]}
    assert budgets.PROFILES["paper-mid"].to_dict() == {
        **budgets.PROFILES["paper"].to_dict(), "base_budget": 10, "train": ["cifar10"]}


def _jobs() -> list[MethodJob]:
    return figure4.make_jobs(figure4.PROFILES["quick"], Path("out"), 0)


def test_a_job_round_trips_through_its_dict_json_and_pickle():
    for job in _jobs():
        d = job.to_dict()
        assert MethodJob.from_dict(d) == job
        assert MethodJob.from_dict(json.loads(json.dumps(d))) == job
        assert pickle.loads(pickle.dumps(job)) == job
        assert all(value is not None for value in d.values())  # off fields are left out
    hybrid = next(j for j in _jobs() if j.label == "FO-LFT+INIT")
    assert hybrid.after == "MAML" and hybrid.to_dict()["init_from"].endswith("maml.safetensors")


def test_describe_is_canonical_and_the_same_as_the_plain_dict_it_replaced():
    job = _jobs()[0]
    d = job.to_dict()
    shuffled = dict(reversed(list(d.items())))
    assert describe(job) == describe(d) == describe(shuffled)
    assert describe(job) == describe(MethodJob.from_dict(shuffled))
    assert json.loads(describe(job)) == d
    assert describe(job.replace(test_seed=1)) != describe(job)


def test_a_stored_record_is_found_by_the_typed_job_and_by_its_dict(tmp_path):
    job = _jobs()[0]
    JobStore(tmp_path).save(job, {"label": job.label, "x": [1.5]})
    store = JobStore(tmp_path, resume=True)
    assert store.done(job) == {"label": job.label, "x": [1.5]}
    assert store.done(job.to_dict()) == {"label": job.label, "x": [1.5]}
    assert store.done(job.replace(steps=3)) is None


def test_a_bad_job_is_refused_at_construction_naming_the_field():
    job = next(j for j in _jobs() if j.label == "FO-LFT")
    sgd = next(j for j in _jobs() if j.label == "SGD")
    assert "unknown field 'stepz'" in _one_line_error(MethodJob.from_dict,
                                                      {**job.to_dict(), "stepz": 3})
    assert "unknown field 'seeds'" in _one_line_error(job.replace, seeds=3)
    assert "test_tasks must be an integer >= 1" in _one_line_error(job.replace, test_tasks=0)
    assert "needs train" in _one_line_error(job.replace, train=None)
    assert "meta_batch must be an integer" in _one_line_error(
        job.replace, train={**job.train, "meta_batch": 0})
    assert "meta-learns nothing; drop train" in _one_line_error(
        sgd.replace, train=job.train, tune=None)
    assert "tune needs a non-empty 'grid'" in _one_line_error(
        sgd.replace, tune={"grid": [], "tasks": 3})
    assert "init_from needs a method that learns its initialisation" in _one_line_error(
        job.replace, init_from="x.safetensors")
    tests = {"sine": job.family}
    assert "record step must be an integer in 0..20" in _one_line_error(
        job.replace, tests=tests, record=[0, 21])
    assert "record applies to tests" in _one_line_error(job.replace, record=[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.steps = 3


def test_lists_of_choices_are_checked():
    assert "train entry 'svhn'" in _one_line_error(resolve_profile, budgets.PROFILES, "paper",
                                                   {"train": ["svhn"]})
    assert "train must be a non-empty list" in _one_line_error(
        resolve_profile, budgets.PROFILES, "paper", {"train": []})
    assert "only entry 'ZO-LFT seed 1'" in _one_line_error(
        resolve_profile, figure4.PROFILES, "paper", {"only": ["ZO-LFT seed 1"]})


def test_paper_head_starts_the_cifar10_schedule_where_the_probe_chose():
    """``budgets --profile paper-head``: the CIFAR-10 lft+adam rule's schedule starts at
    4x/2x/1x with the last layer x10 (a choice made on meta-training tasks), and a bad
    schedule_init source is refused by name."""
    from pathlib import Path

    prof = budgets.PROFILES["paper-head"]
    tuning = {s: {"auc": {0.001: 1.0, 0.002: 2.0}, "best": {"5": 0.004, "20": 0.001}}
              for s in ("mnist", "cifar10")}
    jobs = budgets.make_jobs(prof, tuning, Path("out"), 0, None)
    learned = [j for j in jobs if j.train is not None]
    assert len(learned) == prof.meta_seeds and all(j.train_source == "cifar10" for j in learned)
    schedule = learned[0].method["rule"]["rules"][0]
    assert schedule["init"][0] == [4.0] * 4 + [40.0] * 2 and schedule["init"][-1][4] == 10.0
    assert schedule["rule"]["lr"] == 0.001
    assert "schedule_init source" in _one_line_error(
        resolve_profile, budgets.PROFILES, "paper-head", {"schedule_init": {"svhn": []}})


# ------------------------------------------------------------------ Table 1 and uap-rivals


@pytest.mark.parametrize("module, overrides, expected", [
    (table1, {"oracles": ["xo"]}, "unknown oracles entry 'xo'; choose from fo, zo"),
    (table1, {"select": {"method": "adam", "min_asr": 0.9, "max_asr": 1}},
     "unknown entry 'max_asr'; choose from method, min_asr, max_distortion"),
    (table1, {"select": {"method": "adam"}}, "select needs exactly one of min_asr, "
                                             "max_distortion"),
    (table1, {"select": {"method": "lbfgs", "min_asr": 0.9}},
     "unknown select method 'lbfgs'; choose from signsgd, adam, sgd"),
    (table1, {"record": {"every": 5}}, "record needs entries for ['dense']"),
    (table1, {"iterations": {"lft": 1, "l2o": 1, "maml": 1, "lft+init": 1}},
     "iterations: unknown entry 'lft+init'; choose from lft, l2o, maml"),
    (table1, {"lr_grid": {"signsgd": [0.1], "adam": [0.1]}}, "lr_grid needs entries for "
                                                             "['sgd']"),
    (table1, {"maml_inner": {"lr": 0.5, "steps": 1, "order": 2}},
     "maml_inner: unknown entry 'order'; choose from lr, steps"),
    (table1, {"lams": [0.01, 0.010]}, "lams must not repeat a lambda"),
    (uap_rivals, {"norm": "1"}, "unknown norm '1'; choose from 2, inf"),
    (uap_rivals, {"residual": "lft+rmsprop"}, "unknown residual 'lft+rmsprop'; choose from "
                                              "lft+signsgd, lft+sgd, lft+adam"),
    (uap_rivals, {"eps_grid": {"mnist": [1.0], "cifar10": [1.0], "svhn": [1.0]}},
     "eps_grid: unknown entry 'svhn'; choose from mnist, cifar10"),
    (uap_rivals, {"target_asr": [0.9, 0.5]}, "target_asr must be (low, high) with low <= high"),
    (uap_rivals, {"art": {"max_iter": 3, "delta": 0.0, "fgsm": [{"step_fraction": 1.0}],
                          "pgd": [{"step_fraction": 0.5, "eps_step": 0.1}]}},
     "art pgd setting: unknown entry 'eps_step'; choose from step_fraction, pgd_iter"),
    (uap_rivals, {"iterations": {"lft": 3}}, "iterations needs entries for ['residual']"),
    (uap_rivals, {"widen": -1}, "widen must be an integer >= 0"),
    (uap_rivals, {"weighting": {"residual": "last"}}, "unknown weighting 'last'"),
    (uap_rivals, {"weighting": {"lft+sgd": "final"}},
     "weighting: unknown entry 'lft+sgd'; choose from lft, residual"),
], ids=lambda x: getattr(x, "ARTEFACT", None) or str(x)[:30])
def test_uap_profiles_refuse_bad_parts_by_name(module, overrides, expected):
    text = _one_line_error(resolve_profile, module.PROFILES, "quick", overrides)
    assert text.startswith(f"{module.ARTEFACT} profile: ") and expected in text, text


def test_black_box_parts_are_checked_against_the_profile():
    assert "black_box budgets [5, 10] exceed the profile's 6 steps" in _one_line_error(
        resolve_profile, uap_rivals.PROFILES, "black-box-quick", {"steps": 6})
    bb = uap_rivals.PROFILES["black-box-quick"].black_box
    assert "unknown black_box rule 'rmsprop'; choose from sgd, signsgd, adam" in _one_line_error(
        resolve_profile, uap_rivals.PROFILES, "black-box-quick",
        {"black_box": {**bb, "rules": ["rmsprop"]}})
    assert "black_box: unknown entry 'q'" in _one_line_error(
        resolve_profile, uap_rivals.PROFILES, "black-box-quick", {"black_box": {**bb, "q": 3}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        uap_rivals.PROFILES["quick"].steps = 3


def test_derived_uap_profiles_write_the_dicts_they_were():
    """``to_dict`` is the old dict: the derived profiles add their part at the end, and the
    committed runs' ``config.profile`` reads back and writes out byte for byte."""
    quick, paper = (uap_rivals.PROFILES[n].to_dict() for n in ("quick", "paper"))
    kappa = uap_rivals.PROFILES["paper-kappa"].to_dict()
    assert kappa == {**paper, "kappa": 10.0} and list(kappa)[-2:] == ["kappa", "widen"]
    assert "kappa" not in paper and "black_box" not in quick and "widen" not in quick
    box = uap_rivals.PROFILES["black-box"].to_dict()
    assert list(box)[-3:] == ["kappa", "black_box", "widen"]
    assert box["black_box"]["budgets"] == [5, 10, 20]
    assert list(uap_rivals.PROFILES["black-box-quick"].to_dict())[-2:] == ["workers", "black_box"]
    runs = {"table1": table1.Table1Profile, "table1-zo": table1.Table1Profile,
            "uap-rivals": uap_rivals.UAPRivalsProfile,
            "uap-rivals-paper-kappa": uap_rivals.UAPRivalsProfile,
            "uap-rivals-black-box": uap_rivals.UAPRivalsProfile}
    for run, cls in runs.items():
        doc = json.loads((ROOT / "results" / run / "results.json").read_text())
        stored = doc["config"]["profile"]
        assert json.dumps(cls.from_dict(stored).to_dict()) == json.dumps(stored), run
    assert "table1 profile: unknown field 'stepz'" in _one_line_error(
        table1.Table1Profile.from_dict, {**table1.PROFILES["quick"].to_dict(), "stepz": 1})


def test_table1_jobs_are_the_committed_runs_dicts_byte_for_byte():
    """The paper profile's jobs at the committed run's lambda and step sizes write exactly the
    ``config.jobs`` that run wrote before the jobs were typed."""
    doc = json.loads((ROOT / "results" / "table1" / "results.json").read_text())
    cfg = doc["config"]
    prof = table1.Table1Profile.from_dict(cfg["profile"])
    jobs = table1.make_jobs(prof, Path("out"), doc["seed"], cfg["data_dir"], cfg["lambda"],
                            table1.tuned_lrs(cfg["tuning"]))
    written = [{k: v for k, v in j.to_dict().items() if k not in ("out", "sweep")}
               for j in jobs]
    assert json.dumps(written) == json.dumps(cfg["jobs"])


def _table1_jobs():
    prof = table1.PROFILES["quick"]
    lrs = {(r, s, table1.lam_key(x)): 0.01 for r in table1.BASELINES for s in table1.SOURCES
           for x in prof.lams}
    return (table1.tune_jobs(prof, 0, None),
            table1.make_jobs(prof, Path("out"), 0, None, prof.lams[0], lrs))


def test_table1_jobs_round_trip_and_describe_themselves_as_their_dicts():
    tune, jobs = _table1_jobs()
    assert {type(j) for j in tune} == {Table1TuneJob} and {j.kind for j in jobs} == {
        "learned", "baseline"}
    for job in tune + jobs:
        d = job.to_dict()
        assert type(job).from_dict(json.loads(json.dumps(d))) == job
        assert pickle.loads(pickle.dumps(job)) == job
        assert describe(job) == describe(d) == describe(dict(reversed(list(d.items()))))
        assert all(value is not None for value in d.values()) and d["estimate_s"] > 0
    learned = next(j for j in jobs if j.kind == "learned")
    assert "lr" not in learned.to_dict() and list(learned.to_dict())[-3:] == [
        "family", "train", "estimate_s"]


def test_a_bad_table1_job_is_refused_naming_the_field():
    tune, jobs = _table1_jobs()
    learned = next(j for j in jobs if j.kind == "learned")
    baseline = next(j for j in jobs if j.kind == "baseline")
    assert "unknown field 'stepz'" in _one_line_error(Table1Job.from_dict,
                                                      {**learned.to_dict(), "stepz": 1})
    assert "a learned job needs train" in _one_line_error(learned.replace, train=None)
    assert "a baseline job has no family; drop it" in _one_line_error(
        baseline.replace, family=learned.family)
    assert "meta-learns nothing, which a learned job cannot run" in _one_line_error(
        baseline.replace, kind="learned")
    assert "oracle 'zo' is not its method's ('fo')" in _one_line_error(learned.replace,
                                                                        oracle="zo")
    assert "unknown train_source 'svhn'" in _one_line_error(learned.replace,
                                                            train_source="svhn")
    assert "sweep_lrs['0.03'] must be a finite number > 0, got None" in _one_line_error(
        baseline.replace, sweep_lrs={})
    assert "record step must be an integer in 0..20" in _one_line_error(
        learned.replace, record=[0, 21])
    assert "unknown source 'svhn'" in _one_line_error(tune[0].replace, source="svhn")
    assert "unknown kind 'learned'; choose from tune" in _one_line_error(tune[0].replace,
                                                                          kind="learned")


def test_table1_extra_reads_the_base_profile_through_the_typed_one(tmp_path):
    base = json.loads((ROOT / "results" / "table1" / "results.json").read_text())
    prof, jobs = table1_extra.extra_jobs(base, tmp_path, "lft", "zo", ["mnist"], iterations=2,
                                         q=3)
    assert isinstance(prof, table1.Table1Profile) and prof.oracles == ["zo"]
    assert prof.iterations["lft"] == 2 and [j.label for j in jobs] == [
        f"ZO-LFT [mnist] lam={base['config']['lambda']:g}"]
    assert jobs[0].method["oracle"]["q"] == 3 and jobs[0].sweep == {}
    assert "iterations['lft'] must be an integer >= 1" in _one_line_error(
        table1_extra.extra_jobs, base, tmp_path, "lft", "zo", ["mnist"], iterations=0)


def _uap_job(name: str = "quick", **more) -> UAPRivalsJob:
    prof = uap_rivals.PROFILES[name]
    return UAPRivalsJob(profile=prof, seed=0, data_dir=None, out="out", **{
        "kind": "learned", "source": "mnist", "method": prof.residual, "meta_seed": 0,
        "selection": {"eps": 2.0, "norm": "2", "rules": {"pgd": {"lr": 0.01}}}, **more})


def test_uap_rivals_jobs_carry_the_typed_profile_and_describe_the_old_dict():
    job = _uap_job()
    d = job.to_dict()
    assert d["profile"] == uap_rivals.PROFILES["quick"].to_dict()
    old = {"profile": uap_rivals.PROFILES["quick"].to_dict(), "seed": 0, "data_dir": None,
           "out": "out", "kind": "learned", "source": "mnist", "method": "lft+signsgd",
           "meta_seed": 0, "selection": job.selection}
    assert describe(job) == describe(old)
    assert UAPRivalsJob.from_dict(json.loads(json.dumps(d))) == job
    assert pickle.loads(pickle.dumps(job)) == job
    select = UAPRivalsJob(profile=uap_rivals.PROFILES["black-box-quick"], seed=0,
                          data_dir="data", out="out", kind="select", source="cifar10")
    assert set(select.to_dict()) == {"profile", "seed", "data_dir", "out", "kind", "source"}
    assert "black_box" in select.to_dict()["profile"]


def test_a_bad_uap_rivals_job_is_refused_naming_the_field():
    job = _uap_job()
    assert "unknown method 'lft+sgd'; choose from lft, lft+signsgd" in _one_line_error(
        job.replace, method="lft+sgd")
    assert "meta_seed must be an integer in 0..0, got 1" in _one_line_error(job.replace,
                                                                           meta_seed=1)
    assert "needs selection" in _one_line_error(job.replace, selection=None)
    assert "unknown kind 'rivals'; choose from select, learned, fixed" in _one_line_error(
        job.replace, kind="rivals", method=None, meta_seed=None)
    assert "has no method; drop it" in _one_line_error(_uap_job, "black-box-quick")
    assert "only entry 'art-cw'" in _one_line_error(
        job.replace, kind="fixed", method=None, meta_seed=None, only=["art-cw"])
    assert "profile must be a UAPRivalsProfile" in _one_line_error(
        job.replace, profile=job.profile.to_dict())
    assert "unknown field 'steps'" in _one_line_error(UAPRivalsJob.from_dict,
                                                      {**job.to_dict(), "steps": 3})
