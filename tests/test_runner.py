"""Job dealing: longest first, and the paper profiles' estimated wall time."""

from pathlib import Path

import pytest

from lft.experiments import table2
from lft.experiments.runner import longest_first, makespan_s, priorities


def test_longest_first_orders_by_estimate_and_keeps_ties_in_order():
    jobs = [{"estimate_s": 1.0}, {}, {"estimate_s": 5.0}, {"estimate_s": 1.0}]
    assert longest_first(jobs) == [2, 0, 3, 1]


def test_makespan_deals_longest_first():
    # 4 on one worker, 1 + 1 on the other: 4, not the 5 that list order would give
    assert makespan_s([1, 1, 4], 2) == 4
    assert makespan_s([4, 1], 1, setup_s=2) == 7
    assert makespan_s([], 2) == 0


def test_table2_paper_profile_fits_its_time_budget_and_deals_meta_training_first():
    jobs = table2.make_jobs(table2.PROFILES["paper"], Path("unused"), 0, None)
    est = makespan_s([j.estimate_s for j in jobs], table2.PROFILES["paper"].workers)
    assert est < 85 * 60  # the issue allows 90 min; the model was within 5% of the last run
    first = [jobs[i] for i in longest_first(jobs)][:4]
    assert all(j.train is not None for j in first)
    assert {j.train["meta_batch"] for j in jobs if j.method["name"] in ("lft", "l2o")} == {
        table2.PROFILES["paper"].meta_batch}


def test_a_job_that_unblocks_long_work_starts_first_and_dependants_wait():
    jobs = [{"label": "a", "estimate_s": 1.0}, {"label": "b", "estimate_s": 10.0, "after": "a"},
            {"label": "c", "estimate_s": 5.0}]
    assert priorities(jobs) == [11.0, 10.0, 5.0]
    assert longest_first(jobs, done=set()) == [0, 2]  # b waits for a
    assert longest_first(jobs, done={0}) == [1, 2]


def test_bad_dependencies_are_named():
    with pytest.raises(ValueError, match="'b' runs after 'x', which is not a job"):
        priorities([{"label": "a"}, {"label": "b", "after": "x"}])
    with pytest.raises(ValueError, match="wait for each other"):
        priorities([{"label": "a", "after": "b"}, {"label": "b", "after": "a"}])


def test_table2_hybrid_starts_after_maml_from_its_checkpoint():
    jobs = table2.make_jobs(table2.PROFILES["quick"], Path("out"), 0, None)
    hybrid = next(j for j in jobs if j.method["name"] == "lft+init")
    maml = next(j for j in jobs if j.method["name"] == "maml")
    assert hybrid.after == maml.label
    assert hybrid.init_from == str(Path("out") / "checkpoints" / "maml [cifar10].safetensors")
    sgd, lstm = hybrid.method["rule"]["rules"]
    assert sgd["lr"] == table2.PROFILES["quick"].maml_inner["lr"]  # starts as MAML's rule


def _sine_job(out: Path) -> dict:
    from lft.meta import preset
    from lft.tasks import named_family

    return {"label": "FO-LFT", "family": named_family("sine").config(), "out": str(out),
            "method": preset("lft", horizon=3).to_dict(), "steps": 3, "test_tasks": 5,
            "test_seed": 7, "seed": 0,
            "train": {"iterations": 6, "meta_batch": 2, "meta_lr": 3e-3, "seed": 0,
                      "log_every": 1}}


def test_a_job_killed_mid_meta_training_resumes_from_its_checkpoint(tmp_path):
    """One run for every job: a reproduction job's meta-training is checkpointed like
    ``lft train``'s, and a resumed job continues it to the same weights and curves."""
    import json

    from safetensors.torch import load_file

    from lft.experiments.runner import job_key, run_job
    from lft.meta import MetaTrainer, Method, MethodConfig, TrainConfig
    from lft.resume import Run, run_config, save
    from lft.tasks import build_family

    whole = run_job(_sine_job(tmp_path / "whole"), progress=False)
    job = _sine_job(tmp_path / "killed")
    family = build_family(job["family"])  # the job's first 3 iterations, then "killed"
    trainer = MetaTrainer(Method(MethodConfig.from_dict(job["method"]), family, seed=0), family,
                          TrainConfig(**job["train"]))
    run, config = Run.job(job["out"], job_key(job)), run_config(trainer)
    run.start(trainer, config)
    trainer.train(progress=False, save=lambda: save(run.checkpoint, trainer, config),
                  stop=lambda: trainer.stats.iterations >= 3)
    assert trainer.stats.iterations == 3 and run.resumable(config)
    resumed = run_job(job, progress=False, resume=True)
    assert resumed["train_stats"]["iterations"] == 6
    assert resumed["curves"] == whole["curves"]
    a, b = (load_file(r["checkpoint"]) for r in (whole, resumed))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    logged = [json.loads(line)["iteration"] for line in run.log.read_text().splitlines()]
    assert logged == list(range(6))  # each iteration logged once
    fresh = run_job(job, progress=False)  # without resume, a run starts afresh
    assert fresh["curves"] == whole["curves"]
