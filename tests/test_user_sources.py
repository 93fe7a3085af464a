"""``--source``: a user's own images (IDX folder, image tree, tarball, CIFAR-style batches) in
every family and command that takes a named image source; one-line errors with status 2."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import user_data  # noqa: E402

from lft.cli import main  # noqa: E402
from lft.data import DataError, load_user_source  # noqa: E402
from lft.tasks import ClassificationFamily, UAPFamily, build_family  # noqa: E402


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Decoded arrays go to a fresh cache folder, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return user_data.idx_source(tmp_path_factory.mktemp("src") / "patterns")


# ------------------------------------------------------------------------------ the loader

def test_every_layout_gives_the_same_splits(tmp_path, idx_dir):
    idx = load_user_source(idx_dir)
    assert idx["train"].image_shape == (12, 12, 1) and idx["train"].classes == ["0", "1", "2"]
    assert list(idx["train"].counts()) == [50] * 3 and list(idx["test"].counts()) == [60] * 3
    gz = load_user_source(user_data.idx_source(tmp_path / "gz", gz=True), use_cache=False)
    tar = load_user_source(user_data.tarball(idx_dir, tmp_path / "idx.tar.gz"))
    for other in (gz, tar):
        for s in ("train", "test"):
            assert np.array_equal(other[s].images, idx[s].images)
            assert np.array_equal(other[s].labels, idx[s].labels)
    tree = load_user_source(user_data.tree_source(tmp_path / "tree"))
    tree_tar = load_user_source(user_data.tarball(tmp_path / "tree", tmp_path / "tree.tgz"))
    assert tree["train"].classes == ["class0", "class1", "class2"]
    assert np.array_equal(tree["test"].images, tree_tar["test"].images)
    want, _ = user_data.patterns(20, seed=2)
    assert sorted(map(bytes, tree["test"].images)) == sorted(map(bytes, want))
    batches = load_user_source(user_data.cifar_style_source(tmp_path / "cifar"))
    assert batches["train"].image_shape == (32, 32, 3) and len(batches["train"]) == 60
    assert batches["test"].classes == ["kind0", "kind1", "kind2"]
    images, labels = user_data.patterns(20, 3, 32, 3, seed=1)
    assert np.array_equal(batches["train"].images, images)
    assert np.array_equal(batches["train"].labels, labels)


def test_bad_sources_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_user_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="none of the known layouts"):
        load_user_source(tmp_path / "empty")
    one = user_data.idx_source(tmp_path / "one", train=10, test=10, classes=1)
    with pytest.raises(DataError, match="at least 2 classes"):
        load_user_source(one)
    with pytest.raises(DataError, match="train images are 12x12x1 but test images are 14x14x1"):
        load_user_source(user_data.idx_source(tmp_path / "mixed", test_size=14))
    partial = user_data.idx_source(tmp_path / "partial")
    (partial / "test-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        load_user_source(partial)


# ------------------------------------------------------------------------------ the families

def test_classification_on_a_path_splits_and_a_factory(idx_dir):
    fam = ClassificationFamily(source=str(idx_dir), model="mlp", ways=3)
    assert fam.config()["source"] == str(idx_dir)
    again = build_family(fam.config())
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = fam.sample(4, g1), again.sample(4, g2)
    assert torch.equal(a.data["train"][0], b.data["train"][0])
    assert a.data["train"][0].shape == (4, 15, 1, 12, 12)

    class Mine(ClassificationFamily):
        pass

    assert type(Mine(source=str(idx_dir)).for_part("meta-test")) is Mine
    splits = load_user_source(idx_dir)
    lenet = ClassificationFamily(source=(splits["train"], splits["test"]), model="lenet5")
    assert lenet.config()["source"] == "<in-memory ImageSplit pair>"
    with pytest.raises(ValueError, match="ImageSplits in memory"):
        build_family(lenet.config())

    def factory(image_shape, ways):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(image_shape)),
                                                                       ways))

    mine = ClassificationFamily(source=splits, model=factory)
    tasks = mine.sample(2)
    assert tasks.dim == 144 * 2 + 2
    assert tasks.loss(tasks.init()).shape == (2,)
    with pytest.raises(ValueError, match="does not fit images of shape 1x12x12"):
        ClassificationFamily(source=splits, model="conv4")
    with pytest.raises(ValueError, match=r"not \(1, 2\) logits"):
        ClassificationFamily(source=splits, model=lambda s, w: torch.nn.Flatten())


def test_named_family_config_is_unchanged(data_dir):
    fam = ClassificationFamily("mnist", data_dir=str(data_dir))
    assert fam.name == "mnist-mlp"
    assert fam.config() == {"task": "classification", "source": "mnist", "model": "mlp",
                            "ways": 2, "shots": 5, "queries": 15, "part": "meta-train",
                            "data_dir": str(data_dir), "split_seed": 0}


def test_too_few_images_per_class(idx_dir):
    with pytest.raises(DataError, match="queries=40 but class"):
        ClassificationFamily(source=str(idx_dir), queries=20, part="meta-test")


# ------------------------------------------------------------------------------ the commands

def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_evaluate_a_packaged_fine_tuner_on_a_user_source(capsys, idx_dir):
    status, out, err = run(capsys, "evaluate", "images-fo-lft", "--task", "classification",
                           "--source", idx_dir, "--model", "mlp", "--tasks", 100, "--steps",
                           10, "--quiet")
    assert status == 0, err
    rows = [line.split() for line in out.splitlines() if line.split()[:1]
            and line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == list(range(11))
    mean, ci = np.array([[float(r[1]), float(r[2])] for r in rows]).T
    assert "test accuracy over 100 held-out tasks" in out
    assert abs(mean[0] - 0.5) < 0.1 and mean[-1] > mean[0] + 0.2  # it learns the patterns
    assert (ci >= 0).all() and ci[0] > 0


def test_victim_then_attack_on_a_user_source(capsys, tmp_path, idx_dir):
    victim = tmp_path / "V.safetensors"
    status, out, err = run(capsys, "victims", "train", "--source", idx_dir, "--out", victim,
                           "--quiet")
    assert status == 0, err
    assert "clean test accuracy" in out and victim.is_file()
    status, out, err = run(capsys, "attack", "--victim", victim, "--source", idx_dir,
                           "--fine-tuner", "uap-fo-lft", "--tasks", 20, "--out",
                           tmp_path / "OUT", "--quiet")
    assert status == 0, err
    assert "lambda 0.001" in out  # uap-fo-lft's own meta-training lam
    assert "held-out ASR" in out and "95% CI, 20 tasks" in out and "distortion" in out
    assert "queries 200 victim images back-propagated per task" in out  # 20 steps x 2 x 5
    deltas = load_file(str(tmp_path / "OUT" / "deltas.safetensors"))["deltas"]
    assert deltas.shape == (20, 1, 12, 12) and deltas.abs().sum() > 0
    status, out, err = run(capsys, "attack", "--victim", victim, "--source", idx_dir,
                           "--fine-tuner", "uap-fo-lft", "--tasks", 2, "--steps", 2, "--lam",
                           "0.05", "--out", tmp_path / "two.safetensors", "--quiet")
    assert status == 0 and "lambda 0.05" in out
    assert load_file(str(tmp_path / "two.safetensors"))["deltas"].shape == (2, 1, 12, 12)


def test_meta_train_and_evaluate_uap_tasks_on_a_user_source(capsys, tmp_path, idx_dir):
    """``lft train|evaluate --task uap --source PATH --victim V``: the UAP family on a user's
    images; evaluate takes the checkpoint's own lam unless --lam is given."""
    import json

    victim = tmp_path / "V.safetensors"
    assert run(capsys, "victims", "train", "--source", idx_dir, "--out", victim,
               "--quiet")[0] == 0
    out = tmp_path / "run"
    status, _, err = run(capsys, "train", "--task", "uap", "--source", idx_dir, "--victim",
                         victim, "--lam", "0.003", "--iterations", 2, "--meta-batch", 2,
                         "--horizon", 2, "--out", out, "--quiet")
    assert status == 0, err
    family = json.loads((out / "config.json").read_text())["family"]
    assert family["task"] == "uap" and family["source"] == str(idx_dir)
    assert family["victim"] == str(victim) and family["lam"] == 0.003
    status, text, err = run(capsys, "evaluate", out / "checkpoint.safetensors", "--task", "uap",
                            "--source", idx_dir, "--victim", victim, "--tasks", 4, "--steps",
                            2, "--json", tmp_path / "rows.json", "--quiet")
    assert status == 0, err
    assert "on uap-" in text and "held-out tasks" in text
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert rows["config"]["family"]["lam"] == 0.003  # the checkpoint's own


def test_uap_family_refuses_a_victim_of_other_images(tmp_path, idx_dir):
    from lft.tasks.victims import save_victim, train_victim

    other = user_data.idx_source(tmp_path / "bigger", size=16)
    v = train_victim(str(other), progress=False)
    save_victim(tmp_path / "v16.safetensors", v)
    with pytest.raises(ValueError, match="takes images of shape 1x16x16"):
        UAPFamily(source=str(idx_dir), victim=str(tmp_path / "v16.safetensors"))
    with pytest.raises(ValueError, match="cached LeNet-5 of a named source"):
        UAPFamily(source=str(idx_dir), victim="quick")


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "images-fo-lft", "--task", "classification", "--source", "{missing}"],
     "unknown image source"),
    (["evaluate", "images-fo-lft", "--task", "classification", "--source", "{idx}",
      "--model", "conv4"], "model conv4 does not fit images of shape 1x12x12"),
    (["evaluate", "images-fo-lft", "--task", "classification", "--source", "{idx}",
      "--queries", "20"], "queries=40 but class"),
    (["evaluate", "images-fo-lft", "--task", "classification", "--source", "{one}"],
     "at least 2 classes"),
    (["evaluate", "images-fo-lft", "--task", "mnist", "--source", "{idx}"],
     "--task mnist is a named family"),
    (["victims", "train", "--source", "{idx}"], "needs a file name"),
    (["train", "--task", "uap", "--source", "{idx}"], "--task uap needs --victim"),
    (["train", "--task", "classification", "--source", "{idx}", "--lam", "0.1"],
     "--task classification has neither"),
    (["train", "--task", "sine", "--victim", "{tmp}/v.safetensors"], "--task sine is a named"),
    (["victims", "train", "--source", "{mixed}", "--out", "{tmp}/v.safetensors"],
     "train images are 12x12x1 but test images are 14x14x1"),
    (["attack", "--victim", "{tmp}/none.safetensors", "--source", "{idx}", "--rule", "adam"],
     "none.safetensors"),
])
def test_bad_source_exits_2_with_one_line(capsys, tmp_path, idx_dir, argv, message):
    one = user_data.idx_source(tmp_path / "one", train=10, test=10, classes=1)
    mixed = user_data.idx_source(tmp_path / "mixed", test_size=14)
    names = {"missing": tmp_path / "missing", "idx": idx_dir, "one": one, "mixed": mixed,
             "tmp": tmp_path}
    status, out, err = run(capsys, *[a.format(**names) for a in argv], "--quiet")
    assert status == 2
    assert err.startswith("lft: error: ") and err.count("\n") == 1, err
    assert message in err, err
