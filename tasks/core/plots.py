"""Where a ``--plot`` PNG goes: checked before a command does its work (a report that cannot be
saved is bad input, said before anything is printed), and written without following a link."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from tasks.core.errors import BadInput


def check_plot_path(path: Path) -> None:
    """A ``--plot`` target the command can write: a .png, not a link, in a writable folder.

    Raises:
        BadInput: naming what is wrong with it.
    """
    if path.suffix.lower() != ".png":
        raise BadInput(f"--plot must name a .png file: {path}")
    if path.is_symlink():
        raise BadInput(f"--plot {path} is a symbolic link: not followed (name the file itself)")
    if path.exists() and not path.is_file():
        raise BadInput(f"--plot {path} exists and is not a regular file")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise BadInput(f"--plot {path}: no such folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInput(f"--plot {path}: the folder {folder} is not writable")


def save_png(fig: Any, path: Path, **options: Any) -> None:
    """``fig.savefig`` into a temporary file beside ``path``, then renamed over it: a link put there
    meanwhile is replaced, never followed, and a failed write leaves no half-written picture.

    Raises:
        BadInput: the file cannot be written.
    """
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=folder)
        os.close(fd)
        try:
            fig.savefig(tmp, format="png", **options)
            os.chmod(tmp, 0o666 & ~_umask())  # a picture to share, as any new file is (mkstemp made it 0600)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:
        raise BadInput(f"--plot {path}: cannot write it ({exc.strerror or exc})") from None


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
