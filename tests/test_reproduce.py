"""``lft reproduce figure4 --profile quick`` end to end, checked against the results schema."""

import json

from lft.cli import main

SCHEMA_KEYS = {"artefact", "profile", "lft_version", "git_commit", "seed", "started_at",
               "wall_time_s", "machine", "config", "rows"}
ROW_KEYS = {"method", "oracle", "train_source", "test_source", "metric", "step", "mean", "ci95",
            "n", "note"}


def test_reproduce_figure4_quick(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default folder, beside a paper run it must not touch
    paper = tmp_path / "results" / "figure4" / "results.json"
    paper.parent.mkdir(parents=True)
    paper.write_text('{"profile": "paper"}')
    assert main(["reproduce", "figure4", "--profile", "quick", "--quiet"]) == 0
    out = tmp_path / "results" / "figure4-quick"
    assert paper.read_text() == '{"profile": "paper"}'
    assert sorted(p.name for p in paper.parent.iterdir()) == ["results.json"]
    doc = json.loads((out / "results.json").read_text())
    assert set(doc) == SCHEMA_KEYS and doc["artefact"] == "figure4"
    rows = doc["rows"]
    assert all(ROW_KEYS | {"queries"} <= set(r) <= ROW_KEYS | {"queries", "estimator", "versus",
                                                                "versus_estimator"} for r in rows)
    methods = {(r["method"], r["oracle"]) for r in rows}
    assert methods == {("lft", "fo"), ("lft", "zo"), ("l2o", "fo"), ("l2o", "zo"),
                       ("maml", "fo"), ("lft+init", "fo"), ("sgd", "fo"), ("adam", "fo"),
                       ("signsgd", "zo")}
    assert {r["step"] for r in rows} == set(range(21))
    assert all(r["n"] == 100 and r["mean"] is not None for r in rows)
    # every zeroth-order row spends 20 directions plus the base point per step
    zo = [r for r in rows if r["oracle"] == "zo"]
    assert all(r["queries"] == 21 * r["step"] for r in zo)
    assert {r["estimator"] for r in zo} == {"history", "learned", "gaussian"}
    assert {r["queries"] for r in rows if r["method"] == "adam" and r["step"] == 20} == {200}
    # ZO-LFT on each of its estimators, paired with each rival tuned for each budget
    vs = [r for r in rows if r.get("versus")]
    assert {(r["estimator"], r["versus"], r["versus_estimator"], r["step"]) for r in vs} == {
        (e, "signsgd/zo", v, k) for e in ("history", "learned") for v in ("history", "gaussian")
        for k in (1, 5, 20)}
    assert "Zeroth-order rivals" in (out / "table.md").read_text()
    # MAML's learned initialisation must already beat a random one before any step
    at0 = {r["method"]: r["mean"] for r in rows if r["step"] == 0 and r["oracle"] == "fo"}
    assert at0["maml"] < at0["sgd"]
    assert (out / "figure4.png").stat().st_size > 10_000
    table = (out / "table.md").read_text()
    assert "FO-LFT" in table and "FO-LFT − FO-L2O" in table
    pairs = doc["config"]["paired_differences"]
    assert {(p["a"], p["b"]) for p in pairs} >= {("FO-LFT", "FO-L2O"), ("FO-LFT+INIT", "MAML")}
    from safetensors.torch import load_file
    curves = load_file(str(out / "curves.safetensors"))
    assert curves["MAML/mse"].shape == (100, 21)
    assert len(list((out / "checkpoints").glob("*.safetensors"))) == 7  # ZO-LFT [learned] too


def test_reproduce_table2_quick(tmp_path, data_dir):
    out = tmp_path / "t2"
    assert main(["reproduce", "table2", "--profile", "quick", "--out", str(out),
                 "--data-dir", str(data_dir), "--quiet"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert set(doc) == SCHEMA_KEYS and doc["artefact"] == "table2"
    rows = doc["rows"]
    assert all(set(r) == ROW_KEYS for r in rows)
    cells = {(r["train_source"], r["method"], r["test_source"]) for r in rows}
    tests = {"mnist", "cifar10", "mnist+cifar10"}
    for train in ("cifar10", "mnist+cifar10"):
        for method in ("lft", "l2o", "maml", "lft+init"):
            assert {(train, method, t) for t in tests} <= cells
    assert {("none", b, t) for b in ("sgd", "adam") for t in tests} <= cells
    # MAML runs only where the tasks are congruous; elsewhere a row says why not
    na = [r for r in rows if r["method"] == "maml" and r["mean"] is None]
    assert {(r["train_source"], r["test_source"]) for r in na} == {
        ("cifar10", "mnist"), ("cifar10", "mnist+cifar10"), ("mnist+cifar10", "mnist"),
        ("mnist+cifar10", "cifar10"), ("mnist+cifar10", "mnist+cifar10")}
    assert all("do not share parameter shapes" in r["note"] for r in na)
    # the learned rule with a learned initialisation: where MAML runs, and nowhere else
    hybrid = [r for r in rows if r["method"] == "lft+init"]
    assert {(r["train_source"], r["test_source"]) for r in hybrid if r["mean"] is not None} == {
        ("cifar10", "cifar10")}
    assert {(r["train_source"], r["test_source"]) for r in hybrid if r["mean"] is None} == {
        (r["train_source"], r["test_source"]) for r in na}
    hybrid_job = next(j for j in doc["config"]["outcomes"] if j["name"] == "lft+init")
    assert hybrid_job["init_from"].endswith("maml [cifar10].safetensors")
    measured = [r for r in rows if r["mean"] is not None]
    assert all(0.0 <= r["mean"] <= 1.0 and r["metric"] == "accuracy" for r in measured)
    mix = [r for r in measured if r["test_source"] == "mnist+cifar10"]
    assert all(r["n"] == 40 for r in mix)  # the mix pools 20 MNIST and 20 CIFAR-10 tasks
    table = (out / "table2.md").read_text()
    assert "[66 ± 1.3]" in table and "[83 ± 0.9]" in table  # the paper's numbers beside ours
    assert "LFT − L2O" in table and "LFT+INIT [cifar10] − MAML" in table
    assert (out / "figure3.png").stat().st_size > 10_000
