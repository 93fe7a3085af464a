"""``lft export NAME_OR_CHECKPOINT DIR``: a fine-tuner as a Hugging-Face-Hub-compatible folder."""

from __future__ import annotations


def register(sub) -> None:
    """Add ``export`` to the ``lft`` sub-command parsers."""
    p = sub.add_parser("export", help="write a fine-tuner as a Hub-compatible folder",
                       description="Write a packaged fine-tuner or an lft train checkpoint as a "
                                   "folder of config.json, model.safetensors and a README model "
                                   "card (FineTuner.save_pretrained), which "
                                   "FineTuner.from_pretrained, lft evaluate DIR and "
                                   "huggingface-cli upload OWNER/NAME DIR read.")
    p.add_argument("fine_tuner", metavar="NAME_OR_CHECKPOINT",
                   help="a packaged fine-tuner's name (python -m lft.pretrained list) or a "
                        "checkpoint of lft train")
    p.add_argument("directory", metavar="DIR", help="a new or empty folder")
    p.add_argument("--repo-id", default=None, metavar="OWNER/NAME",
                   help="the Hub id the model card's usage lines name")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty folder that is not an lft fine-tuner folder")
    p.set_defaults(handler=cmd_export)


def cmd_export(a) -> int:
    """``lft export``: load the fine-tuner, save it as a folder, print what was written."""
    from lft.finetuner import FineTuner

    ft = FineTuner.load(a.fine_tuner)
    out = ft.save_pretrained(a.directory, overwrite=a.overwrite, repo_id=a.repo_id)
    print(f"{ft!r} written to {out}: {', '.join(sorted(p.name for p in out.iterdir()))}; "
          f"load it with lft.FineTuner.from_pretrained({str(out)!r}) or lft evaluate {out}")
    return 0
