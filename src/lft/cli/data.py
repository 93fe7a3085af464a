"""``lft data download|check NAME``: the named image data sets."""

from __future__ import annotations

from lft.data.sources import SOURCES


def register(sub) -> None:
    """Add ``data`` to the ``lft`` sub-command parsers."""
    d = sub.add_parser("data", help="image data sets: download or check them")
    d.add_argument("action", choices=("download", "check"))
    d.add_argument("name", choices=SOURCES)
    d.add_argument("--data-dir", default=None,
                   help="data folder (default $LFT_DATA_DIR, else the user cache folder)")
    d.set_defaults(handler=cmd_data)


def cmd_data(a) -> int:
    """``lft data``: download a source's files (checked) or decode and describe them."""
    from lft.data import download, load_source, resolve_data_dir

    if a.action == "download":
        path = download(a.name, a.data_dir, progress=True)
        print(f"{a.name}: files verified in {path}")
        return 0
    splits = load_source(a.name, a.data_dir)
    print(f"{a.name} in {resolve_data_dir(a.data_dir)}:")
    for split, s in splits.items():
        print(f"  {split}: {len(s)} images of shape {s.image_shape}, {len(s.classes)} classes")
    return 0
