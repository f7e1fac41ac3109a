"""A small tmpfs of its own, to fill up on purpose (disk-full tests)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.harness import Part, skip_without


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
    test fails when mounting is not permitted (not root, a container)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"the disk-full tests mount a tmpfs, which needs root: "
                    f"{done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


@pytest.fixture
def pg_tmpfs() -> Iterator[Path]:
    """A 16 MiB tmpfs the local PostgreSQL server can write to (a folder
    owned by `postgres` in a mount outside root's private temp folders), for
    a tablespace; skipped like any PostgreSQL test when the server is not
    local, failed when the tmpfs cannot be mounted."""
    import pwd
    import tempfile

    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        skip_without(Part.POSTGRESQL, "no local server (no postgres user) to give a tablespace")
    mount = Path(tempfile.mkdtemp(prefix="bitmail-pgfull-"))
    mount.chmod(0o755)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        mount.rmdir()
        pytest.fail(f"the disk-full tests mount a tmpfs, which needs root: "
                    f"{done.stderr.strip() or done.returncode}")
    space = mount / "tablespace"
    space.mkdir(mode=0o700)
    os.chown(space, owner.pw_uid, owner.pw_gid)
    try:
        yield space
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)
            mount.rmdir()
