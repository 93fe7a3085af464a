"""The one error type of the data layer.

Every problem with data on disk (missing, truncated, corrupt, of the wrong kind, unsafe) or with
what was asked of it (more shots than a class has) raises :class:`DataError` with a one-line
message that names the file or folder, the problem and the fix. It subclasses ``ValueError``,
so the ``lft`` command line reports it as ``lft: error: ...`` without a traceback.
"""

from __future__ import annotations


class DataError(ValueError):
    """Data on disk is missing or unusable, or a request does not fit the data."""

    def __init__(self, message: str):
        # one line, whatever an underlying library put into the text we quote
        super().__init__(" ".join(str(message).splitlines()))


def fetch_hint(name: str, folder: object) -> str:
    """The two ways to get data set ``name`` into ``folder``: download it, or copy it there."""
    return (f"fix: run `lft data download {name}` on a machine with internet, or copy the "
            f"files into {folder} (or set LFT_DATA_DIR to a folder that holds {name}/)")
