"""The data folder: BitMail's own, closed to the machine's other users.

Mail, password hashes and keys live there, so the folder is 0700 and every
file BitMail writes into it is 0600, whatever the process's umask.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


class DataDirError(Exception):
    """The data folder cannot be used; the message names the path and the problem."""


def private_folder(path: Path, *, close: bool = True) -> Path:
    """`path` as an existing folder, made 0700 when BitMail creates it and,
    with `close`, when it is open to others already.

    Raises DataDirError for a path that is not a folder or cannot be made.
    """
    if path.exists() and not path.is_dir():
        raise DataDirError(f"{path}: not a folder (the data folder must be a folder)")
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir(mode=FOLDER_MODE, exist_ok=True)
            os.chmod(path, FOLDER_MODE)  # mkdir's mode is filtered by the umask
        elif close and stat.S_IMODE(path.stat().st_mode) & 0o077:
            try:
                os.chmod(path, FOLDER_MODE)
            except PermissionError:
                raise DataDirError(f"{path}: open to other users, and this user cannot make "
                                   "it private (chmod 700 it, or run as its owner)") from None
    except OSError as exc:
        raise DataDirError(f"{path}: {exc.strerror or exc}") from None
    return path


def private_file(path: Path) -> None:
    """Create `path` empty if missing, and make it 0600 either way.

    Raises OSError (IsADirectoryError for a folder in its place).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
