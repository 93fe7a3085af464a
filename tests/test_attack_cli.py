"""``lft victims train`` and ``lft attack`` end to end, on quick victims and small image folders."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lft import checkpoint
from lft.cli import main
from lft.meta import MetaTrainer, Method, TrainConfig, preset
from lft.tasks import UAPFamily

torch.set_num_threads(1)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(
    not (SHARED / "mnist").is_dir() or not (SHARED / "cifar10").is_dir(),
    reason=f"no offline data copies at {SHARED}")



def write_folder(root: Path, images: np.ndarray, labels: np.ndarray, names: dict) -> Path:
    """``root/<class name>/<i>.png`` for uint8 ``(N, H, W, C)`` images."""
    for i, (im, c) in enumerate(zip(images, labels)):
        d = root / names[int(c)]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(d / f"{i}.png")
    return root


def correct_images(victim, source: str, classes, n: int, offset: int = 0):
    """``n`` correctly classified test images per class, from ``offset`` on."""
    from lft.data import load_source

    split = load_source(source, str(SHARED))["test"]
    keep = []
    for c in classes:
        idx = np.flatnonzero(split.labels == c)[:300]
        x = torch.from_numpy(split.images[idx]).permute(0, 3, 1, 2).float() / 255
        ok = (victim(x).argmax(-1) == c).numpy()
        keep.append(idx[ok][offset:offset + n])
    keep = np.concatenate(keep)
    return split.images[keep], split.labels[keep]


@pytest.fixture(scope="session")
def folders(victims, tmp_path_factory):
    root = tmp_path_factory.mktemp("attack-images")
    digits = {c: str(c) for c in range(10)}
    mnist = victims["mnist"]
    out = {"mnist": write_folder(root / "mnist", *correct_images(mnist, "mnist", (3, 7), 5),
                                 digits),
           "mnist-eval": write_folder(root / "mnist-eval",
                                      *correct_images(mnist, "mnist", (3, 7), 15, offset=5),
                                      digits)}
    cifar = victims["cifar10"]
    names = dict(enumerate(cifar.classes))
    out["cifar"] = write_folder(root / "cifar", *correct_images(cifar, "cifar10", (1, 9), 5),
                                names)
    out["cifar-eval"] = write_folder(root / "cifar-eval",
                                     *correct_images(cifar, "cifar10", (1, 9), 15, offset=5),
                                     names)
    return out


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_victims_train_then_reuse(tmp_path, capsys):
    path = tmp_path / "v.safetensors"
    args = ["victims", "train", "mnist", "--quick", "--data-dir", SHARED, "--out", path, "--quiet"]
    rc, out, _ = run(args, capsys)
    assert rc == 0 and "clean test accuracy" in out and "trained in" in out and path.is_file()
    acc = json.loads(path.with_suffix(".json").read_text())["clean_test_accuracy"]
    assert acc > 0.6
    rc, out, _ = run(args, capsys)
    assert rc == 0 and "reused" in out and f"{acc:.2%}" in out


def test_white_box_attack_with_a_rule_saves_delta(victims, folders, tmp_path, capsys):
    out_dir = tmp_path / "out"
    rc, out, err = run(["attack", "--victim", victims["mnist"].path, "--images",
                        folders["mnist"], "--eval-dir", folders["mnist-eval"], "--rule", "adam",
                        "--lr", 0.05, "--steps", 15, "--out", out_dir], capsys)
    assert rc == 0, err
    report = json.loads((out_dir / "attack.json").read_text())
    assert report["asr"][-1] >= 0.75 and report["eval_asr"] > report["eval_clean_asr"]
    assert f"held-out images (30): ASR {report['eval_asr']:.2%}" in out
    delta = np.load(out_dir / "delta.npy", allow_pickle=False)
    assert delta.shape == (1, 28, 28) and np.isfinite(delta).all()
    assert Image.open(out_dir / "delta.png").size == (28, 28)


def test_black_box_attack_of_a_callable_victim_the_fine_tuner_never_saw(
        victims, folders, tmp_path, capsys):
    # a fine-tuner meta-trained (briefly) on MNIST UAP tasks against the MNIST victim ...
    fam = UAPFamily("mnist", victim=str(victims["mnist"].path), data_dir=str(SHARED), pool=40,
                    queries=3)
    method = Method(preset("lft", horizon=3, rule={"hidden": 4}), fam)
    MetaTrainer(method, fam, TrainConfig(iterations=2, meta_batch=2)).train(progress=False)
    ckpt = checkpoint.save(tmp_path / "lft.safetensors", method, fam)
    # ... attacks a CIFAR-10 classifier given as module:function, from its outputs only
    (tmp_path / "my_victim.py").write_text(
        "import torch\nfrom lft.attacks import read_victim\n"
        f"_v = read_victim({str(victims['cifar10'].path)!r})\n"
        "def logits(x):\n    with torch.no_grad():\n        return _v(x)\n")
    out_dir = tmp_path / "bb"
    names = ",".join(victims["cifar10"].classes)
    rc, out, err = run(["attack", "--victim", f"{tmp_path / 'my_victim.py'}:logits",
                        "--images", folders["cifar"], "--eval-dir", folders["cifar-eval"],
                        "--classes", names, "--fine-tuner", ckpt, "--black-box", "--q", 5,
                        "--steps", 4, "--out", out_dir], capsys)
    assert rc == 0, err
    report = json.loads((out_dir / "attack.json").read_text())
    assert report["queries"] == 4 * 2 * 5 * 10 and report["loss_evaluations"] == 4 * 2 * 5
    assert "queries: 40 loss evaluations (10 per step), 400 images sent" in out
    assert report["black_box"] and len(report["asr"]) == 5 and report["eval_images"] == 30
    assert np.load(out_dir / "delta.npy").shape == (3, 32, 32)
    # a budget of loss evaluations per step, spent by the history-guided estimator
    rc, out, err = run(["attack", "--victim", f"{tmp_path / 'my_victim.py'}:logits",
                        "--images", folders["cifar"], "--classes", names, "--fine-tuner", ckpt,
                        "--black-box", "--queries-per-step", 6, "--steps", 4, "--out",
                        tmp_path / "bb6"], capsys)
    assert rc == 0, err
    report = json.loads((tmp_path / "bb6" / "attack.json").read_text())
    assert report["loss_evaluations"] == 4 * 6 and report["oracle"]["type"] == "history"
    assert "history, 6 loss evaluations per step" in out and "queries: 24 loss evaluations" in out
    rc, out, err = run(["attack", "--victim", f"{tmp_path / 'my_victim.py'}:logits",
                        "--images", folders["cifar"], "--classes", names, "--fine-tuner", ckpt,
                        "--queries-per-step", 6, "--out", tmp_path / "bb7"], capsys)
    assert rc == 2 and "add --black-box" in err
    # ... and along directions fitted elsewhere (a random orthonormal basis stands in here)
    from lft.oracles import save_basis

    basis = save_basis(tmp_path / "basis.safetensors",
                       torch.linalg.qr(torch.randn(3 * 32 * 32, 8)).Q.T)
    rc, out, err = run(["attack", "--victim", f"{tmp_path / 'my_victim.py'}:logits",
                        "--images", folders["cifar"], "--classes", names, "--fine-tuner", ckpt,
                        "--black-box", "--queries-per-step", 6, "--estimator", "subspace",
                        "--basis", basis, "--steps", 4, "--out", tmp_path / "bb8"], capsys)
    assert rc == 0, err
    report = json.loads((tmp_path / "bb8" / "attack.json").read_text())
    assert report["oracle"]["type"] == "subspace" and report["oracle"]["q"] == 5
    assert "subspace, 6 loss evaluations per step" in out and report["loss_evaluations"] == 24
    rc, out, err = run(["attack", "--victim", f"{tmp_path / 'my_victim.py'}:logits",
                        "--images", folders["cifar"], "--classes", names, "--fine-tuner", ckpt,
                        "--black-box", "--basis", basis, "--out", tmp_path / "bb9"], capsys)
    assert rc == 2 and "needs --queries-per-step" in err


def test_attack_with_the_packaged_uap_fine_tuner_by_name(victims, folders, tmp_path, capsys):
    rc, out, err = run(["attack", "--victim", victims["mnist"].path, "--images",
                        folders["mnist"], "--eval-dir", folders["mnist-eval"], "--fine-tuner",
                        "uap-fo-lft", "--steps", 20, "--out", tmp_path], capsys)
    assert rc == 0, err
    report = json.loads((tmp_path / "attack.json").read_text())
    assert "uap-fo-lft" in out and report["eval_asr"] > report["eval_clean_asr"]


def test_attack_takes_the_fine_tuners_own_kappa_and_budget_unless_told(victims, folders,
                                                                       tmp_path, capsys):
    """``uap-mnist-fo-lft-sgd`` was meta-trained at kappa 10 under ||delta||_2 <= 6: the attack
    runs the loss it was trained on (at kappa 0 the CIFAR-10 twin fell from 65% to 35%)."""
    argv = ["attack", "--victim", victims["mnist"].path, "--images", folders["mnist"],
            "--fine-tuner", "uap-mnist-fo-lft-sgd", "--steps", 3]
    rc, out, err = run([*argv, "--out", tmp_path / "own"], capsys)
    assert rc == 0, err
    report = json.loads((tmp_path / "own" / "attack.json").read_text())
    assert (report["kappa"], report["eps"], report["lam"]) == (10.0, 6.0, 0.0)
    assert "kappa 10;" in out
    rc, out, err = run([*argv, "--kappa", 0, "--out", tmp_path / "zero"], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "zero" / "attack.json").read_text())["kappa"] == 0.0


def test_black_box_attack_raises_asr_above_clean(victims, folders, tmp_path, capsys):
    rc, out, err = run(["attack", "--victim", victims["mnist"].path, "--images",
                        folders["mnist"], "--eval-dir", folders["mnist-eval"], "--rule", "adam",
                        "--lr", 0.05, "--steps", 25, "--q", 10, "--black-box",
                        "--out", tmp_path], capsys)
    assert rc == 0, err
    report = json.loads((tmp_path / "attack.json").read_text())
    assert report["queries"] == 25 * 20 * 10
    assert report["clean_asr"] == 0.0 and report["asr"][-1] >= 0.5
    assert report["eval_asr"] > report["eval_clean_asr"] + 0.3


def test_budgeted_attacks_stay_in_the_ball_and_report_queries_and_time(victims, folders,
                                                                       tmp_path, capsys):
    # l2 budget with a hand-designed rule, lambda 0
    rc, out, err = run(["attack", "--victim", victims["mnist"].path, "--images",
                        folders["mnist"], "--rule", "signsgd", "--lr", 0.05, "--steps", 12,
                        "--lam", 0, "--eps", 1.5, "--out", tmp_path / "l2"], capsys)
    assert rc == 0, err
    report = json.loads((tmp_path / "l2" / "attack.json").read_text())
    delta = np.load(tmp_path / "l2" / "delta.npy")
    assert np.linalg.norm(delta) <= 1.5 * (1 + 1e-5) and report["l2"] <= 1.5 * (1 + 1e-5)
    assert (report["eps"], report["norm"], report["lam"]) == (1.5, "2", 0.0)
    # 10 images back-propagated per step (no reporting pass counted), and the time it took
    assert report["queries"] == 12 * 10 and report["wall_time_s"] > 0
    assert "budget ||delta||_2 <= 1.5" in out and "queries: 120 images" in out
    assert "back-propagated" in out and "wall time" in out
    # l-inf budget with the packaged learned fine-tuner
    rc, out, err = run(["attack", "--victim", victims["mnist"].path, "--images",
                        folders["mnist"], "--fine-tuner", "uap-fo-lft", "--steps", 5,
                        "--eps", 0.1, "--norm", "inf", "--out", tmp_path / "inf"], capsys)
    assert rc == 0, err
    report = json.loads((tmp_path / "inf" / "attack.json").read_text())
    assert np.abs(np.load(tmp_path / "inf" / "delta.npy")).max() <= 0.1 * (1 + 1e-6)
    assert (report["eps"], report["norm"], report["queries"]) == (0.1, "inf", 50)
    # no budget: the report says so
    rc, out, err = run(["attack", "--victim", victims["mnist"].path, "--images",
                        folders["mnist"], "--rule", "adam", "--steps", 2,
                        "--out", tmp_path / "none"], capsys)
    report = json.loads((tmp_path / "none" / "attack.json").read_text())
    assert rc == 0 and "no budget" in out and report["eps"] is None and report["norm"] is None


def test_user_errors_are_one_line(victims, folders, tmp_path, capsys):
    base = ["attack", "--images", folders["mnist"], "--out", tmp_path, "--steps", 2]
    cases = [
        (["--victim", tmp_path / "missing.safetensors", "--rule", "adam"], "no victim file"),
        (["--victim", victims["mnist"].path, "--rule", "adam", "--images", folders["cifar"]],
         "images are 3x32x32 (CxHxW) but the victim takes 1x28x28"),
        (["--victim", victims["mnist"].path], "choose how to fine-tune"),
        (["--victim", "no_such_module_xyz:f", "--rule", "adam"], "cannot import"),
        (["--victim", victims["mnist"].path, "--fine-tuner", tmp_path / "none.safetensors"],
         "no checkpoint"),
        (["--victim", victims["mnist"].path, "--rule", "adam", "--norm", "inf"],
         "--norm inf sets the shape of a perturbation budget; fix: pass --eps"),
    ]
    for extra, message in cases:
        rc, _, err = run(base + extra, capsys)
        assert rc == 2 and err.startswith("lft: error: ") and message in err, err
        assert len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as e:
        main(["attack", "--victim", "v", "--images", "d", "--rule", "adam", "--lr", "nan"])
    assert e.value.code == 2
