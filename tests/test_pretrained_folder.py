"""FineTuner.save_pretrained / from_pretrained: Hub-compatible folders that give the same
updates as the packaged fine-tuner, hub ids through a local Hugging Face cache, clear errors."""

import hashlib
import json
import os
import sys
import tempfile
import types
from pathlib import Path

import pytest
import torch
from torch import nn

import lft
from lft import checkpoint
from lft.cli import main
from lft.finetuner import FineTuner
from lft.pretrained import folder

PACKAGED = sorted(FineTuner.list())
BASES = Path(tempfile.mkdtemp(prefix="lft-bases-"))


def test_a_subspace_fine_tuner_asks_for_its_basis_file():
    model = nn.Linear(783, 1)
    with pytest.raises(ValueError, match="pass basis=FILE"):
        FineTuner.load("uap-mnist-zo-lft-sgd").optimizer(model)


def params_and_grads(seed=0):
    """Named parameters of a small conv net (weights and biases: every role) and gradients."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"0.weight": (3, 1, 3, 3), "0.bias": (3,), "2.weight": (2, 12), "2.bias": (2,)}
    params = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    grads = [{k: torch.randn(s, generator=g) for k, s in shapes.items()} for _ in range(3)]
    return params, grads


def functional_run(ft, steps=3):
    params, grads = params_and_grads()
    state = ft.init(params)
    for grad in grads[:steps]:
        params, state = ft.update(grad, state, params)
    return params


def optimizer_run(ft, steps=3):
    torch.manual_seed(0)
    dim = ft.oracle.get("dim") if ft.oracle.get("type") == "subspace" else None
    if dim is None:
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
        x = torch.randn(8, 3)
    else:  # queries along a basis fitted for optimisees of dim parameters: one that size
        model, x = nn.Linear(dim - 1, 1), torch.randn(8, dim - 1)
    y = torch.randn(8, 1)
    more = {"q": 4} if ft.zeroth_order and dim is None else {}
    if dim is not None:  # the packaged basis, as the file the optimizer reads
        from lft.oracles import save_basis

        tensors, _ = checkpoint.read(lft.pretrained.resolve(ft.name))
        more["basis"] = str(save_basis(BASES / f"{ft.name}.safetensors", tensors["oracle.basis"]))
    opt = ft.optimizer(model, seed=1, **more)

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        if not ft.zeroth_order:
            loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return [p.detach().clone() for p in model.parameters()]


def same_updates(a, b) -> bool:
    fa, fb = functional_run(a), functional_run(b)
    oa, ob = optimizer_run(a), optimizer_run(b)
    return (all(torch.equal(fa[k], fb[k]) for k in fa)
            and all(torch.equal(x, y) for x, y in zip(oa, ob)))


@pytest.mark.parametrize("name", PACKAGED)
def test_save_then_from_pretrained_gives_identical_updates(name, tmp_path):
    ft = FineTuner.load(name)
    out = ft.save_pretrained(tmp_path / name)
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "model.safetensors"]
    back = FineTuner.from_pretrained(out)
    assert (back.name, back.oracle, back.family, back.info) == (
        name, ft.oracle, ft.family, ft.info)
    assert back.zeroth_order == ft.zeroth_order
    assert same_updates(ft, back)
    # the comparison can fail: one changed weight changes the updates
    other = FineTuner.from_pretrained(out)
    with torch.no_grad():
        next(iter(other.rule.parameters())).add_(0.5)
    assert not same_updates(ft, other)


def test_folder_files_are_an_lft_checkpoint_a_config_and_a_model_card(tmp_path):
    ft = FineTuner.load("images-fo-lft")
    out = ft.save_pretrained(tmp_path / "images")
    config = json.loads((out / "config.json").read_text())
    assert config["library_name"] == "lft" and config["name"] == "images-fo-lft"
    assert config["method"]["rule"] == ft.rule.config()
    assert folder.machine_paths(config) == []
    _, meta = checkpoint.read(out / "model.safetensors")  # lft's checkpoint reader reads it
    assert meta["family"] == config["family"] and meta["extra"]["pretrained"] == ft.info
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: lft\ntags:\n")
    front = card.split("---")[1]
    assert '- "lft"' in front and '- "first-order"' in front and '- "mnist"' in front
    assert "FineTuner.from_pretrained('./images')" in card
    accuracy = ft.info["reported"]["values"]["accuracy"]["20"]
    assert f"| 20 | {accuracy[0]:.4f} ± {accuracy[1]:.4f}" in card
    assert "lft evaluate ./images --tasks 500 --steps 20 --seed 0 --data-dir DATA" in card
    assert ft.info["command"] in card
    hub = FineTuner.load("sine-zo-lft").save_pretrained(tmp_path / "zo", repo_id="me/zo")
    card = (hub / "README.md").read_text()
    assert "from_pretrained('me/zo')" in card and '- "zeroth-order"' in card
    assert "lft evaluate hf://me/zo --tasks 500 --steps 20 --seed 0\n" in card


def test_lft_evaluate_and_load_accept_a_pretrained_folder(tmp_path, capsys):
    out = FineTuner.load("sine-fo-lft").save_pretrained(tmp_path / "sine")
    assert FineTuner.load(out).name == "sine-fo-lft"
    assert main(["evaluate", str(out), "--tasks", "4", "--steps", "2", "--quiet"]) == 0
    text = capsys.readouterr().out  # the reported figures travel with the folder
    assert "FO-LFT on sine" in text and "--tasks 500 --steps 20 --seed 0" in text


def test_lft_export_writes_a_folder_that_loads_and_refuses_a_foreign_one(tmp_path, capsys):
    assert main(["export", "sine-zo-lft", str(tmp_path / "zo"), "--repo-id", "me/zo"]) == 0
    assert "written to" in capsys.readouterr().out
    back, ref = FineTuner.from_pretrained(tmp_path / "zo"), FineTuner.load("sine-zo-lft")
    assert back.zeroth_order and back.rule.config() == ref.rule.config()
    assert all(torch.equal(a, b) for a, b in zip(back.rule.state_dict().values(),
                                                 ref.rule.state_dict().values()))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["export", "sine-fo-lft", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lft: error: ") and err.count("\n") == 1 and "overwrite" in err
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


def test_save_never_clobbers_a_foreign_folder(tmp_path):
    ft = FineTuner.load("sine-fo-lft")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an lft pretrained folder.*overwrite=True"):
        ft.save_pretrained(foreign)
    assert os.listdir(foreign) == ["notes.txt"]
    ft.save_pretrained(foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    ft.save_pretrained(foreign)  # an lft folder now: saving again replaces its files
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        ft.save_pretrained(tmp_path / "file")
    assert not [p for p in os.listdir(foreign) if p.startswith(".")]  # no temporary files left


def test_machine_paths_are_dropped_or_refused(tmp_path):
    ft = FineTuner.load("images-fo-lft")
    ft.family = {**ft.family, "families": [{**f, "data_dir": "/work/data"}
                                           for f in ft.family["families"]]}
    out = ft.save_pretrained(tmp_path / "a")
    assert "/work" not in (out / "config.json").read_text()
    assert "/work" not in str(checkpoint.read(out / "model.safetensors")[1])
    ft.family = {"task": "uap", "victim": "/home/me/victim.safetensors"}
    with pytest.raises(ValueError, match=r"family.victim: /home/me/victim.safetensors"):
        ft.save_pretrained(tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_bad_folders_are_refused_in_one_line(tmp_path):
    out = FineTuner.load("sine-fo-lft").save_pretrained(tmp_path / "good")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    (other / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    with pytest.raises(checkpoint.CheckpointError, match="not an lft fine-tuner configuration"):
        FineTuner.from_pretrained(other)
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="no config.json or model.safetensors"):
        FineTuner.from_pretrained(tmp_path / "empty")
    config = json.loads((out / "config.json").read_text())
    config["method"]["oracle"] = {"type": "zo", "q": 5}
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(checkpoint.CheckpointError, match="disagree on the method"):
        FineTuner.from_pretrained(out)
    with pytest.raises(checkpoint.CheckpointError, match="no pretrained folder"):
        FineTuner.from_pretrained(tmp_path / "a" / "b" / "c")
    with pytest.raises(checkpoint.CheckpointError, match="is a file"):
        FineTuner.from_pretrained(out / "config.json")


def hub_cache_with(tmp_path, ft, repo_id="someone/sine-ft"):
    """A Hugging Face cache (blobs, snapshots/REV as links, refs/main) holding ``ft``."""
    staged = ft.save_pretrained(tmp_path / "staged")
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / rev).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    for name in folder.FILES:
        data = (staged / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (repo / "snapshots" / rev / name).symlink_to(os.path.relpath(blob, repo / "snapshots"
                                                                     / rev))
    return tmp_path / "hub", repo_id


def test_hub_id_loads_offline_from_a_hugging_face_cache(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ft = FineTuner.load("sine-zo-lft")
    cache, repo_id = hub_cache_with(tmp_path, ft)
    back = FineTuner.from_pretrained(repo_id, cache_dir=cache)
    assert back.name == "sine-zo-lft" and same_updates(ft, back)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # where huggingface_hub looks by default
    assert same_updates(ft, FineTuner.from_pretrained(repo_id))
    assert same_updates(ft, FineTuner.load(f"hf://{repo_id}"))  # and lft evaluate hf://...
    assert lft.pretrained.resolve(f"hf://{repo_id}").name == "model.safetensors"
    with pytest.raises(checkpoint.CheckpointError, match=r"pip install lft\[hub\]"):
        FineTuner.from_pretrained("someone/not-cached")
    with pytest.raises(checkpoint.CheckpointError, match=r"pip install lft\[hub\]"):
        FineTuner.from_pretrained(repo_id, revision="v2")  # a ref the cache does not hold


def test_hub_id_goes_through_huggingface_hub_when_installed(tmp_path, monkeypatch):
    out = FineTuner.load("sine-fo-lft").save_pretrained(tmp_path / "dl")
    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        if repo_id == "someone/missing":
            raise OSError("404 Client Error: Repository Not Found")
        return str(out)

    fake = types.ModuleType("huggingface_hub")
    fake.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    ft = FineTuner.from_pretrained("someone/sine", revision="v1", cache_dir=tmp_path / "c",
                                   local_files_only=True)
    assert ft.name == "sine-fo-lft"
    repo_id, kwargs = calls[0]
    assert repo_id == "someone/sine" and kwargs["revision"] == "v1"
    assert kwargs["cache_dir"] == tmp_path / "c" and kwargs["local_files_only"] is True
    assert set(kwargs["allow_patterns"]) == {"config.json", "model.safetensors", "README.md"}
    with pytest.raises(checkpoint.CheckpointError,
                       match="cannot fetch the fine-tuner 'someone/missing'.*Not Found") as e:
        FineTuner.from_pretrained("someone/missing")
    assert "\n" not in str(e.value)


def curves(method, family):
    out = lft.evaluate(method, family, n_tasks=4, steps=3, seed=1, progress=False)
    return {k: c.values for k, c in out.items()}


@pytest.mark.parametrize("name", ["sine-fo-lft", "sine-zo-lft"])
def test_a_method_for_any_family_from_any_form_of_fine_tuner(name, tmp_path):
    """``fine_tuner_method`` / ``method_for`` fine-tune a family the rule never saw (a smaller
    sine MLP) exactly as the checkpoint's own method does (what ``lft evaluate`` runs)."""
    from lft.finetuner import fine_tuner_method
    from lft.tasks import SineFamily

    family = SineFamily(hidden=(6,))
    reference, _, _ = checkpoint.load(lft.pretrained.path(name))
    want = curves(reference, family)
    ft = FineTuner.load(name)
    out = ft.save_pretrained(tmp_path / name)
    for source in (name, lft.pretrained.path(name), out, ft, FineTuner.from_pretrained(out)):
        method = fine_tuner_method(source, family)
        assert method.config.oracle == ft.oracle
        got = curves(method, family)
        assert all(torch.equal(got[k], want[k]) for k in want), source
    assert all(torch.equal(v, want[k]) for k, v in curves(ft.method_for(family), family).items())


def test_fine_tuner_method_keeps_a_learned_initialisation_and_refuses_other_shapes(tmp_path):
    from lft.finetuner import fine_tuner_method
    from lft.meta import Method, preset
    from lft.tasks import SineFamily

    family = SineFamily(hidden=(4,))
    maml = Method(preset("maml"), family, seed=3)
    path = checkpoint.save(tmp_path / "maml.safetensors", maml, family)
    method = fine_tuner_method(path, family)
    assert torch.equal(method.init.theta0, maml.init.theta0)
    with pytest.raises(checkpoint.CheckpointError,
                       match="MAML fine-tuner meta-trained on sine tasks, which does not fit "
                             "my 8-unit sines.*learned initialisation fits only") as e:
        fine_tuner_method(path, SineFamily(hidden=(8,)), target="my 8-unit sines")
    assert "\n" not in str(e.value)
