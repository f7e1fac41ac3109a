"""A small tmpfs of its own, to fill up on purpose (disk-full tests)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.harness import require_or_skip


def fill(folder: Path, *, leave: int = 0) -> Path:
    """Fill the file system under `folder` with one file until at most
    `leave` bytes are free; returns that file (delete it to make room)."""
    ballast = folder / "ballast"
    chunk = b"\0" * 65536
    with open(ballast, "ab") as f:
        while True:
            free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
            if free <= leave:
                break
            try:
                f.write(chunk[:max(4096, min(len(chunk), free - leave))])
                f.flush()
            except OSError:
                break
    return ballast


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted at tmp_path/"tmpfs", unmounted afterwards; the
    test is skipped when mounting is not permitted (not root, a container)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        require_or_skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


@pytest.fixture
def pg_tmpfs() -> Iterator[Path]:
    """A 16 MiB tmpfs the local PostgreSQL server can write to (a folder
    owned by `postgres` in a mount outside root's private temp folders), for
    a tablespace; skipped when it cannot be made."""
    import pwd
    import tempfile

    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        require_or_skip("no local postgres user: the server is elsewhere")
    mount = Path(tempfile.mkdtemp(prefix="bitmail-pgfull-"))
    mount.chmod(0o755)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        mount.rmdir()
        require_or_skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    space = mount / "tablespace"
    space.mkdir(mode=0o700)
    os.chown(space, owner.pw_uid, owner.pw_gid)
    try:
        yield space
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)
            mount.rmdir()
