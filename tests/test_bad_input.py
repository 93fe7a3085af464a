"""Bad input gets one clear line and leaves nothing behind (issue 6, item 5).

Every CLI case runs ``lft.cli.main`` in-process from an empty working folder and checks: exit
status 2, stderr one line starting ``lft: error:`` with the expected words and no traceback,
and no file written (not in the working folder, not among the inputs). The public-function
cases check that each refuses its bad input with a ``ValueError`` naming the problem. The
configuration fuzz tests are in ``test_config_fuzz.py``.
"""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import lft
from lft import checkpoint, oracles, rules, tasks
from lft.cli import main
from lft.meta import Method, preset
from lft.tasks import SineFamily, TaskBatch

torch.set_num_threads(1)

VICTIM = """import torch
W = torch.linspace(-1.0, 1.0, 32).reshape(2, 16)
def logits(x):
    return x.flatten(1) @ W.T
def nan_logits(x):
    return torch.full((x.shape[0], 2), float("nan"))
"""


def _images(folder: Path, sizes: dict[str, tuple[int, int]], per_class: int = 3) -> Path:
    """``folder/<class>/<i>.png`` grey images, class name -> (height, width)."""
    rng = np.random.default_rng(0)
    for name, (h, w) in sizes.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (h, w), dtype=np.uint8)
            Image.fromarray(img).save(folder / name / f"{i}.png")
    return folder


def _tampered(src: Path, dst: Path) -> Path:
    """A copy of ``src`` whose header claims a 4-unit LSTM while its tensors are 3-unit ones."""
    with safe_open(str(src), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    method = json.loads(meta["method"])
    method["rule"]["hidden"] = 4
    save_file(tensors, str(dst), metadata={**meta, "method": json.dumps(method)})
    return dst


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Read-only inputs of the CLI cases: bad checkpoints, a victim, image folders."""
    root = tmp_path_factory.mktemp("bad-inputs")
    small = SineFamily(hidden=(8,))
    checkpoint.save(root / "maml-small.safetensors", Method(preset("maml"), small), small)
    lft3 = checkpoint.save(root / "lft3.safetensors",
                           Method(preset("lft", rule={"hidden": 3}), small), small)
    _tampered(lft3, root / "tampered.safetensors")
    (root / "evil.safetensors").write_bytes(pickle.dumps({"x": 1}))
    save_file({"w": torch.zeros(2)}, str(root / "foreign.safetensors"))
    (root / "victim.py").write_text(VICTIM)
    (root / "a-file").write_text("not a folder")
    (root / "nodata").mkdir()
    _images(root / "imgs", {"0": (4, 4), "1": (4, 4)})
    _images(root / "imgs5", {"0": (5, 5), "1": (5, 5)})
    _images(root / "mixed", {"0": (4, 4), "1": (5, 5)})
    _images(root / "named", {"cat": (4, 4), "dog": (4, 4)})
    return root


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


ATTACK = ["attack", "--victim", "{in}/victim.py:logits", "--images", "{in}/imgs",
          "--out", "{work}/attack", "--quiet"]

CLI_CASES = {
    # unknown method or task, zero/negative/non-finite numbers
    "train-unknown-method": (["train", "--method", "reptile"], "invalid choice: 'reptile'"),
    "train-unknown-task": (["train", "--task", "imagenet"], "invalid choice: 'imagenet'"),
    "train-zero-iterations": (["train", "--iterations", "0"], "must be positive"),
    "train-negative-horizon": (["train", "--horizon", "-2"], "must be positive"),
    "train-nan-meta-lr": (["train", "--meta-lr", "nan"], "must be positive"),
    "train-streams": (["train", "--meta-batch", "3", "--task-streams", "2", "--iterations",
                       "1", "--out", "{work}/run"], "multiple of task_streams"),
    "train-zo-second-order": (["train", "--zo", "--second-order", "--out", "{work}/run"],
                              "--second-order"),
    "train-missing-data": (["train", "--task", "mnist", "--data-dir", "{in}/nodata", "--out",
                            "{work}/run"], "lft data download mnist"),
    "train-resume-nothing": (["train", "--resume", "--out", "{work}/run"], "no checkpoint in"),
    "train-out-is-file": (["train", "--iterations", "1", "--out", "{in}/a-file"], "is a file"),
    # a checkpoint of another kind or shape
    "train-init-from-other-family": (["train", "--method", "maml", "--init-from",
                                      "{in}/maml-small.safetensors", "--out", "{work}/run"],
                                     "initialisation of 25 parameters"),
    "train-init-from-pickle": (["train", "--method", "maml", "--init-from",
                                "{in}/evil.safetensors", "--out", "{work}/run"],
                               "not a safetensors checkpoint"),
    "train-init-from-no-init": (["train", "--method", "maml", "--init-from",
                                 "{in}/lft3.safetensors", "--out", "{work}/run"],
                                "holds no learned initialisation"),
    "evaluate-missing": (["evaluate", "{in}/none.safetensors"], "no checkpoint at"),
    "evaluate-unknown-name": (["evaluate", "sine-typo"], "unknown pretrained fine-tuner"),
    "evaluate-zero-steps": (["evaluate", "sine-fo-lft", "--steps", "0"], "must be positive"),
    "evaluate-pickle": (["evaluate", "{in}/evil.safetensors"], "never unpickles"),
    "evaluate-foreign": (["evaluate", "{in}/foreign.safetensors"], "not an lft checkpoint"),
    "evaluate-other-rule-size": (["evaluate", "{in}/tampered.safetensors"],
                                 "do not match its configuration"),
    "evaluate-json-is-folder": (["evaluate", "sine-fo-lft", "--json", "{in}/nodata"],
                                "is a folder"),
    "reproduce-unknown": (["reproduce", "figure5"], "invalid choice: 'figure5'"),
    "reproduce-unknown-profile": (["reproduce", "figure4", "--profile", "huge"],
                                  "unknown profile 'huge'; choose from"),
    "reproduce-table1-no-data": (["reproduce", "table1", "--data-dir", "{in}/nodata", "--out",
                                  "{work}/t1"], "lft data download"),
    "reproduce-table2-no-data": (["reproduce", "table2", "--data-dir", "{in}/nodata", "--out",
                                  "{work}/t2"], "lft data download"),
    "data-unknown": (["data", "check", "svhn"], "invalid choice: 'svhn'"),
    "data-missing": (["data", "check", "cifar10", "--data-dir", "{in}/nodata"],
                     "lft data download cifar10"),
    "victims-show-missing": (["victims", "show", "{in}/none"], "no victim file"),
    "victims-train-no-data": (["victims", "train", "mnist", "--data-dir", "{in}/nodata",
                               "--out", "{work}/v.safetensors"], "lft data download mnist"),
    "victims-zero-epochs": (["victims", "train", "mnist", "--epochs", "0"], "must be positive"),
    # the attack: shapes, NaN, labels, a fine-tuner of another kind
    "attack-no-rule": (ATTACK, "choose how to fine-tune"),
    "attack-zero-steps": (ATTACK + ["--rule", "adam", "--steps", "0"], "must be positive"),
    "attack-mixed-shapes": (ATTACK[:4] + ["{in}/mixed"] + ATTACK[5:] + ["--rule", "adam"],
                            "mixed shapes"),
    "attack-eval-shape": (ATTACK + ["--rule", "adam", "--eval-dir", "{in}/imgs5"],
                          "--eval-dir images are"),
    "attack-nan-victim": (["attack", "--victim", "{in}/victim.py:nan_logits", "--images",
                           "{in}/imgs", "--rule", "adam", "--out", "{work}/attack"],
                          "NaN or infinite logits"),
    "attack-class-names": (ATTACK[:4] + ["{in}/named"] + ATTACK[5:] + ["--rule", "adam"],
                           "not a class index"),
    "attack-maml-fine-tuner": (ATTACK + ["--fine-tuner", "{in}/maml-small.safetensors"],
                               "does not fit perturbations of shape"),
    "attack-missing-victim": (["attack", "--victim", "{in}/none.py:f", "--images", "{in}/imgs",
                               "--rule", "adam"], "no Python file"),
    "attack-out-is-file": (ATTACK[:-3] + ["--out", "{in}/a-file", "--rule", "adam"],
                           "is a file"),
    "analyze-zero-shots": (["analyze", "gradient-gap", "--shots", "0,5"], "positive integers"),
    "analyze-unknown-rule": (["analyze", "gradient-gap", "--rule", "nope", "--out",
                              "{work}/gap"], "unknown pretrained fine-tuner"),
    "analyze-maml-rule": (["analyze", "gradient-gap", "--rule", "{in}/maml-small.safetensors",
                           "--out", "{work}/gap"], "no meta-learned update rule"),
    "unknown-command": (["frobnicate"], "invalid choice: 'frobnicate'"),
    "no-command": ([], "required: command"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_user_error_is_one_line_exit_2_and_writes_nothing(case, inputs, tmp_path,
                                                               monkeypatch, capsys):
    argv, needle = CLI_CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # default output folders (runs/, results/) would land here
    monkeypatch.setenv("XDG_CACHE_HOME", str(work / "cache"))
    monkeypatch.delenv("LFT_DATA_DIR", raising=False)
    before = _files(inputs)
    argv = [a.replace("{in}", str(inputs)).replace("{work}", str(work)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("lft: error: "), captured.err
    assert needle in lines[0] and "Traceback" not in captured.err
    assert _files(work) == [] and _files(inputs) == before


def test_real_process_prints_no_traceback(inputs):
    """The installed entry point, as a user runs it: one line, status 2."""
    r = subprocess.run([sys.executable, "-m", "lft", "evaluate", str(inputs / "evil.safetensors")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("lft: error: ")


def _nan_batch():
    fam = SineFamily(hidden=(4,))
    batch = fam.sample(2, torch.Generator().manual_seed(0))
    x, y = batch.data["train"]
    return TaskBatch(batch.model, dict(batch.data, train=(x, y.clone().fill_(float("nan")))))


def _short_targets():
    batch = SineFamily(hidden=(4,)).sample(2)
    x, y = batch.data["val"]
    return TaskBatch(batch.model, dict(batch.data, val=(x, y[:, :3])))


def _attack(x, y, x_eval=None, y_eval=None):
    from lft.attacks import universal_perturbation

    victim = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    method = Method(preset("adam"), SineFamily(hidden=(4,)))
    return universal_perturbation(victim, x, y, method, steps=1, x_eval=x_eval, y_eval=y_eval)


def _image_split(per_class: int):
    from lft.data import ImageSplit

    images = np.zeros((2 * per_class, 4, 4, 1), dtype=np.uint8)
    return ImageSplit(images, np.repeat([0, 1], per_class), ["a", "b"])


def _episodes_too_many_shots():
    from lft.data import sample_episodes

    return sample_episodes(_image_split(3), _image_split(3), 1, ways=2, shots=4, queries=1)


SMALL = SineFamily(hidden=(4,))
API_CASES = {
    "preset-unknown-method": (lambda i: preset("reptile"), "unknown method 'reptile'"),
    "preset-unknown-option": (lambda i: preset("lft", colour=1), "unknown method option"),
    "preset-zero-horizon": (lambda i: preset("lft", horizon=0), "horizon"),
    "preset-bad-weighting": (lambda i: preset("lft", weighting="last"), "unknown weighting"),
    "method-config-unknown-field": (lambda i: lft.MethodConfig.from_dict({"nme": 1}),
                                    "unknown method option"),
    "method-config-not-dict": (lambda i: lft.MethodConfig.from_dict([1]), "dict"),
    "method-learn-init-incongruous": (
        lambda i: Method(preset("maml"), tasks.MixtureFamily([SMALL, SMALL])),
        "congruous"),
    "train-config-zero-iterations": (lambda i: lft.TrainConfig(iterations=0),
                                     "iterations must be an integer >= 1"),
    "train-config-nan-lr": (lambda i: lft.TrainConfig(meta_lr=float("nan")), "meta_lr"),
    "train-config-unknown": (lambda i: lft.TrainConfig.from_dict({"iters": 3}),
                             "unknown option(s) iters"),
    "family-unknown": (lambda i: tasks.build_family({"task": "imagenet"}),
                       "unknown task family 'imagenet'"),
    "family-unknown-option": (lambda i: tasks.build_family({"task": "sine", "k": 1}),
                              "unknown option(s) k"),
    "sine-zero-shots": (lambda i: SineFamily(shots=0), "shots must be an integer >= 1"),
    "sine-reversed-range": (lambda i: SineFamily(amplitude=(5, 1)), "low <= high"),
    "sine-nan-range": (lambda i: SineFamily(x_range=(float("nan"), 1)), "finite"),
    "mixture-one-family": (lambda i: tasks.build_family(
        {"task": "mixture", "families": [{"task": "sine"}]}), "at least two"),
    "mixture-nan-weight": (lambda i: tasks.MixtureFamily([SMALL, SMALL],
                                                                 [1, float("nan")]), "weight"),
    "classification-unknown-source": (
        lambda i: tasks.ClassificationFamily(source="svhn"), "unknown image source"),
    "classification-one-way": (lambda i: tasks.ClassificationFamily(ways=1), "ways"),
    "classification-missing-data": (lambda i: tasks.ClassificationFamily(
        data_dir=str(i / "nodata")), "lft data download mnist"),
    "uap-bad-part": (lambda i: tasks.UAPFamily(part="train"), "unknown part"),
    "uap-negative-lam": (lambda i: tasks.UAPFamily(lam=-1), "lam"),
    "episodes-more-shots-than-data": (lambda i: _episodes_too_many_shots(), "use shots <= 3"),
    "folder-mixed-shapes": (lambda i: lft.data.load_image_folder(i / "mixed"),
                            "mixed shapes"),
    "task-data-nan": (lambda i: _nan_batch(), "NaN or infinite"),
    "task-data-mismatched": (lambda i: _short_targets(), "10 inputs but 3 targets"),
    "attack-nan-images": (lambda i: _attack(torch.full((2, 1, 4, 4), float("nan")),
                                            torch.tensor([0, 1])), "NaN"),
    "attack-mismatched-shapes": (lambda i: _attack(torch.rand(2, 1, 4, 4), torch.tensor([0, 1]),
                                                   torch.rand(2, 1, 5, 5), torch.tensor([0, 1])),
                                 "held-out images are"),
    "rule-unknown": (lambda i: rules.build({"type": "rmsprop"}), "unknown update rule"),
    "rule-zero-hidden": (lambda i: rules.build({"type": "lstm", "hidden": 0}), "hidden"),
    "rule-unknown-feature": (lambda i: rules.build({"type": "lstm", "features": ["x"]}),
                             "unknown input feature"),
    "rule-unknown-option": (lambda i: rules.build({"type": "sgd", "rate": 1}),
                            "unknown option(s) rate"),
    "rule-nan-lr": (lambda i: lft.SGD(lr=float("nan")), "lr"),
    "oracle-zero-q": (lambda i: oracles.build_oracle({"type": "zo", "q": 0}), "q"),
    "oracle-inf-mu": (lambda i: oracles.ZerothOrder(mu=float("inf")), "mu"),
    "oracle-unknown": (lambda i: oracles.build_oracle({"type": "so"}), "unknown"),
    "evaluate-zero-steps": (lambda i: lft.evaluate(Method(preset("lft"), SMALL), SMALL,
                                                           steps=0), "steps"),
    "evaluate-other-family": (lambda i: lft.evaluate(
        checkpoint.load(i / "maml-small.safetensors")[0], SineFamily(), n_tasks=2, steps=1),
        "learned initialisation of 25 parameters"),
    "checkpoint-pickle": (lambda i: checkpoint.load(i / "evil.safetensors"), "never unpickles"),
    "checkpoint-other-rule-size": (lambda i: checkpoint.load(i / "tampered.safetensors"),
                                   "lstm(hidden=4"),
    "checkpoint-rule-into-bigger-rule": (
        lambda i: checkpoint.load_rule(i / "lft3.safetensors", {"type": "lstm", "hidden": 20}),
        "holds a lstm(hidden=3"),
    "checkpoint-rule-into-sgd": (lambda i: checkpoint.load_rule(i / "lft3.safetensors",
                                                                 {"type": "sgd"}), "not a sgd"),
    "finetuner-unknown": (lambda i: lft.FineTuner.load("sine-typo"),
                          "unknown pretrained fine-tuner"),
    "finetuner-maml": (lambda i: lft.FineTuner.load(i / "maml-small.safetensors"),
                       "no meta-learned update rule"),
    "finetuner-zero-lr": (lambda i: lft.FineTuner.load("sine-fo-lft").optimizer(
        torch.nn.Linear(2, 1).parameters(), lr_scale=0), "lr_scale"),
    "finetuner-bad-oracle": (lambda i: lft.FineTuner.load("sine-fo-lft").optimizer(
        torch.nn.Linear(2, 1).parameters(), zeroth_order=True, q=0), "q"),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_public_function_refuses_bad_input_in_one_line(case, inputs, tmp_path, monkeypatch):
    fn, needle = API_CASES[case]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # never a real data cache
    monkeypatch.delenv("LFT_DATA_DIR", raising=False)
    with pytest.raises(ValueError) as info:
        fn(inputs)
    message = str(info.value)
    assert needle in message and "\n" not in message, message


def test_more_shots_than_the_data_is_refused_when_the_family_is_built(data_dir):
    with pytest.raises(ValueError, match=r"shots=6000 but class .* use shots <= \d+"):
        tasks.ClassificationFamily("mnist", shots=6000, data_dir=str(data_dir))
