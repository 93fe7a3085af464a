"""No shipped file names a folder of the machine that wrote it: every file under src/lft (text,
and the JSON headers of the packaged .safetensors fine-tuners) is scanned for absolute paths,
and ``lft evaluate images-fo-lft`` finds its data only where it is told to."""

import json
import re
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from lft.cli import main
from lft.pretrained import folder

SRC = Path(__file__).resolve().parents[1] / "src" / "lft"
# absolute folders of a POSIX, macOS or Windows machine, wherever they appear in text (a
# drive is an upper-case letter before two word characters: escapes such as 'a:\n' are not)
PATH = re.compile(r"(?<![\w./-])(/(?:work|home|tmp|Users|root|mnt|media|private|scratch|srv)/"
                  r"|(?<!\w)[A-Z]:\\{1,2}(?=\w{2})|file:///)")


def machine_paths_in(path: Path) -> list[str]:
    """What in the file at ``path`` looks like a folder of one machine (empty: none)."""
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        hits = [f"{k}: {m.group(0)}" for k, v in header.items() for m in PATH.finditer(v)]
        for key, value in header.items():
            try:
                hits += folder.machine_paths(json.loads(value), key)
            except ValueError:
                continue
        return hits
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return []  # binary files hold no paths we write
    hits = [m.group(0) for m in PATH.finditer(text)]
    if path.suffix == ".json":
        hits += folder.machine_paths(json.loads(text))
    return hits


def shipped_files():
    return sorted(p for p in SRC.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_no_file_under_src_lft_holds_a_machine_path():
    files = shipped_files()
    assert any(p.suffix == ".safetensors" for p in files) and len(files) > 50
    found = {str(p.relative_to(SRC)): hits for p in files if (hits := machine_paths_in(p))}
    assert not found, f"machine paths in shipped files: {found}"


def test_the_scan_finds_machine_paths_in_every_kind_of_file(tmp_path):
    (tmp_path / "card.md").write_text("data in /home/me/data, not in results/table1")
    (tmp_path / "config.json").write_text(json.dumps({"family": {"data_dir": "/srv2/x"}}))
    (tmp_path / "win.py").write_text('ROOT = "C:\\\\Users\\\\me"\nprint("a:\\nb A:\\n")\n')
    save_file({}, str(tmp_path / "ft.safetensors"),
              metadata={"family": json.dumps({"victim": "/opt/v.safetensors"}), "x": "ok"})
    (tmp_path / "clean.md").write_text("relative/path, lft evaluate ./folder, 1/2, https://x/y")
    assert machine_paths_in(tmp_path / "card.md") == ["/home/"]
    assert machine_paths_in(tmp_path / "config.json") == ["family.data_dir: /srv2/x"]
    assert machine_paths_in(tmp_path / "win.py") == ["C:\\\\"]
    assert machine_paths_in(tmp_path / "ft.safetensors") == ["family.victim: /opt/v.safetensors"]
    assert machine_paths_in(tmp_path / "clean.md") == []


def test_evaluate_images_finds_its_data_only_where_told(data_dir, tmp_path, monkeypatch, capsys):
    """The packaged image fine-tuner holds no data folder: ``--data-dir`` is used, and without
    it (no $LFT_DATA_DIR, an empty user cache) the error says how to get the data."""
    monkeypatch.delenv("LFT_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    args = ["evaluate", "images-fo-lft", "--tasks", "2", "--steps", "1", "--quiet"]
    assert main(args + ["--data-dir", str(data_dir)]) == 0
    assert "FO-LFT" in capsys.readouterr().out
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "lft data download" in err and str(data_dir) not in err


@pytest.mark.parametrize("name", ["images-fo-lft", "uap-fo-lft"])
def test_packaged_image_fine_tuners_keep_no_data_folder(name):
    from lft import checkpoint, pretrained

    family = checkpoint.read(pretrained.path(name))[1]["family"]
    dirs = [f.get("data_dir") for f in family.get("families", [family])]
    assert dirs and all(d is None for d in dirs), dirs
