"""Checkpoints load without executing code; the CLI reports user errors in one line."""

import contextlib
import json
import pickle
from pathlib import Path

import pytest
import torch

from lft import checkpoint
from lft.cli import main
from lft.meta import Method, evaluate, preset
from lft.tasks import SineFamily


def test_checkpoint_round_trip(tmp_path):
    family = SineFamily(hidden=(8,))
    method = Method(preset("lft", learn_init=True, rule={"hidden": 3}), family, seed=5)
    path = checkpoint.save(tmp_path / "m.safetensors", method, family, extra={"note": "x"})
    loaded, fam2, extra = checkpoint.load(path)
    assert extra == {"note": "x"} and fam2.config() == family.config()
    assert loaded.config == method.config
    for k, v in method.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    a = evaluate(method, family, n_tasks=4, steps=2, seed=1, progress=False)["mse"].values
    b = evaluate(loaded, fam2, n_tasks=4, steps=2, seed=1, progress=False)["mse"].values
    assert torch.equal(a, b)


class Boom:
    def __reduce__(self):
        return (print, ("pickle executed",))


def test_pickle_is_refused_not_executed(tmp_path, capsys):
    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(checkpoint.CheckpointError, match="not a safetensors checkpoint"):
        checkpoint.load(bad)
    assert "pickle executed" not in capsys.readouterr().out


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(checkpoint.CheckpointError, match="not an lft checkpoint"):
        checkpoint.load(path)


def test_atomic_save_keeps_old_file_on_failure(tmp_path, monkeypatch):
    family = SineFamily(hidden=(8,))
    method = Method(preset("lft", rule={"hidden": 3}), family)
    path = checkpoint.save(tmp_path / "m.safetensors", method, family)
    before = path.read_bytes()

    def fail(*a, **k):
        raise OSError("disk full")
    from lft import safefiles

    monkeypatch.setattr(safefiles.os, "replace", fail)  # the package's one atomic write
    with pytest.raises(OSError):
        checkpoint.save(path, method, family)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


@pytest.mark.parametrize("argv,needle", [
    (["evaluate", "/nonexistent.safetensors"], "no checkpoint"),
    (["train", "--iterations", "0"], "must be positive"),
    (["train", "--method", "reptile"], "invalid choice"),
    (["train", "--zo", "--second-order", "--iterations", "1"], "--second-order"),
    (["train", "--first-order", "--second-order", "--iterations", "1"], "choose one"),
    (["train", "--method", "lft", "--init-from", "/nonexistent", "--learn-init"],
     "no checkpoint"),
])
def test_cli_user_errors_exit_2_in_one_line(argv, needle, capsys, tmp_path):
    exits = needle in ("must be positive", "invalid choice")
    with pytest.raises(SystemExit) if exits else contextlib.nullcontext():
        code = main(argv + (["--out", str(tmp_path)] if argv[0] == "train" else []))
        assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_cli_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--method", "lft", "--iterations", "2", "--meta-batch", "2",
                 "--horizon", "3", "--out", str(out), "--quiet"]) == 0
    assert (out / "checkpoint.safetensors").is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) >= 1
    assert json.loads((out / "config.json").read_text())["method"]["name"] == "lft"
    assert main(["evaluate", str(out / "checkpoint.safetensors"), "--tasks", "5", "--steps",
                 "3", "--quiet", "--json", str(tmp_path / "e.json")]) == 0
    text = capsys.readouterr().out
    doc = json.loads((tmp_path / "e.json").read_text())
    assert "FO-LFT on sine" in text
    assert len([r for r in doc["rows"] if r["metric"] == "mse"]) == 4  # steps 0..3
    # the shared schema: a packaged fine-tuner's reported figures can come from it
    assert doc["artefact"] == "evaluate" and doc["seed"] == 0 and doc["config"]["tasks"] == 5
    assert {(r["train_source"], r["test_source"], r["n"]) for r in doc["rows"]} == {
        ("sine", "sine", 5)}
    from lft.pretrained.package import reported_from_results
    rep = reported_from_results(tmp_path / "e.json", "lft", "fo")
    assert rep["evaluate"] == {"tasks": 5, "steps": 3, "seed": 0} and len(rep["values"]["mse"]) == 4


def test_cli_two_stage_lft_plus_init(tmp_path):
    from safetensors import safe_open
    assert main(["train", "--method", "maml", "--iterations", "3", "--out",
                 str(tmp_path / "maml"), "--quiet"]) == 0
    maml_ckpt = tmp_path / "maml" / "checkpoint.safetensors"
    assert main(["train", "--method", "lft", "--learn-init", "--init-from", str(maml_ckpt),
                 "--iterations", "1", "--meta-batch", "2", "--horizon", "2", "--out",
                 str(tmp_path / "hybrid"), "--quiet"]) == 0
    with safe_open(str(maml_ckpt), "pt") as a, \
            safe_open(str(tmp_path / "hybrid" / "checkpoint.safetensors"), "pt") as b:
        moved = (a.get_tensor("init.theta0") - b.get_tensor("init.theta0")).abs().max()
    assert 0 < moved < 0.05  # started from MAML's, then took one small meta-step


def test_cli_data_check_and_missing_data_error(tmp_path, capsys, monkeypatch):
    from pathlib import Path
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["data", "check", "mnist", "--data-dir", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "lft data download mnist" in err and "Traceback" not in err
    if (shared / "mnist").is_dir():
        assert main(["data", "check", "mnist", "--data-dir", str(shared)]) == 0
        assert "60000 images of shape (28, 28, 1)" in capsys.readouterr().out


def test_cli_train_bounds_the_learned_step_the_task_wants(tmp_path, data_dir, capsys):
    """Image classifiers get steps bounded at 0.01 (1.0 breaks the MLP at the first step);
    --output-scale overrides it, and is refused for a method without a learned rule."""
    out = tmp_path / "img"
    assert main(["train", "--task", "mnist", "--data-dir", str(data_dir), "--iterations", "1",
                 "--meta-batch", "1", "--horizon", "2", "--out", str(out), "--quiet"]) == 0
    rule = json.loads((out / "config.json").read_text())["method"]["rule"]
    assert rule["output_scale"] == 0.01
    out = tmp_path / "sine"
    assert main(["train", "--iterations", "1", "--meta-batch", "1", "--horizon", "2",
                 "--output-scale", "0.5", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["method"]["rule"]["output_scale"] == 0.5
    assert main(["train", "--method", "maml", "--output-scale", "0.5", "--iterations", "1",
                 "--out", str(tmp_path / "m"), "--quiet"]) == 2
    assert "--output-scale" in capsys.readouterr().err


def test_no_shipped_fine_tuner_holds_a_machine_path():
    from lft.pretrained import DIR

    files = sorted(Path(DIR).glob("*.safetensors"))
    assert files
    for f in files:
        text = f.read_bytes()[:200_000].decode("latin-1")
        for root in ("/work/", "/root/", "/home/", "/tmp/", "C:\\\\"):
            assert root not in text, (f.name, root)


def test_evaluate_reads_data_from_data_dir_not_from_the_saved_folder(tmp_path, data_dir,
                                                                    capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from lft.tasks import named_family

    family = named_family("mnist", str(data_dir))
    path = checkpoint.save(tmp_path / "run.safetensors",
                           Method(preset("lft+adam", base_lr=0.003, horizon=2), family), family)
    with safe_open(str(path), "pt") as f:  # as if meta-trained on a machine that is gone
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["family"] = meta["family"].replace(json.dumps(str(data_dir)),
                                            json.dumps(str(tmp_path / "gone")))
    assert "gone" in meta["family"]
    save_file(tensors, str(path), metadata=meta)
    assert main(["evaluate", str(path), "--data-dir", str(data_dir), "--tasks", "3",
                 "--steps", "2", "--quiet"]) == 0
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["lft", "maml"])
def test_lft_train_takes_its_defaults_from_the_one_table(tmp_path, method):
    """``lft train`` without outer-loop options records the engine's defaults for the method
    (:data:`lft.meta.trainer.METHOD_TRAIN_DEFAULTS`), and an option given wins."""
    from lft.meta.trainer import METHOD_TRAIN_DEFAULTS

    out = tmp_path / method
    assert main(["train", "--task", "sine", "--method", method, "--iterations", "1",
                 "--horizon", "1", "--out", str(out), "--quiet"]) == 0
    train = json.loads((out / "config.json").read_text())["train"]
    want = {**METHOD_TRAIN_DEFAULTS[method if method == "maml" else "default"], "iterations": 1}
    assert {k: train[k] for k in want} == want
    assert main(["train", "--task", "sine", "--method", method, "--iterations", "1",
                 "--horizon", "1", "--meta-batch", "3", "--out", str(out / "b"),
                 "--quiet"]) == 0
    assert json.loads((out / "b" / "config.json").read_text())["train"]["meta_batch"] == 3
