"""The data folder: private files, a store that cannot be opened said in one
line, and no half-written .eml files (issue 11, items 15, 16, 17)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest

from bitmail.mta.local import LocalProvider
from bitmail.mta.outcomes import Outcome, ProviderError

from conftest import free_port, sample_job, start_service, wait_for, write_config
from support.tmpfs import fill

PASSWORD = "correct horse battery"
NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    """The usual umask, so that only BitMail's own care makes its files private."""
    old = os.umask(0o022)
    yield
    os.umask(old)


# -- item 17: 0600 files in a 0700 folder ----------------------------------------


async def test_database_and_eml_files_are_private(tmp_path, make_settings, umask_022):
    async with start_service(make_settings()) as svc:
        headers = await svc.api_key("alice")
        resp = await svc.client.post("/api/messages", headers=headers, json={
            "to": "bob@example.com", "subject": "private", "text": "only for bob"})
        assert resp.status == 202
        outgoing = tmp_path / "data" / "outgoing"
        await wait_for(lambda: list(outgoing.glob("*.eml")))
        data = tmp_path / "data"
        assert mode(data) == 0o700
        assert mode(outgoing) == 0o700
        files = [*data.glob("bitmail.db*"), *outgoing.glob("*.eml")]
        assert any(f.name == "bitmail.db" for f in files)
        assert any(f.name.endswith("-wal") for f in files)
        assert {f.name: oct(mode(f)) for f in files} == {f.name: oct(0o600) for f in files}


async def test_an_existing_data_folder_open_to_others_is_closed(tmp_path, make_settings,
                                                                umask_022):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "bitmail.db").touch(mode=0o644)
    async with start_service(make_settings()):
        assert mode(data) == 0o700
        assert mode(data / "bitmail.db") == 0o600


# -- item 16: a full disk leaves no partial files -------------------------------


async def test_the_local_provider_leaves_no_partial_file_when_the_disk_fills(small_tmpfs):
    provider = LocalProvider("local", directory=small_tmpfs / "outgoing")
    ballast = fill(small_tmpfs, leave=64 * 1024)
    job = sample_job()
    big = type(job)(**{**{f: getattr(job, f) for f in job.__dataclass_fields__},
                       "mime": job.mime + b"x" * (512 * 1024)})
    with pytest.raises(ProviderError) as failed:
        await provider.send(big)
    assert failed.value.outcome == Outcome.PROVIDER_FAULT
    assert "No space left" in str(failed.value)
    assert sorted(p.name for p in (small_tmpfs / "outgoing").iterdir()) == []
    # Once there is room, the same job goes.
    ballast.unlink()
    await provider.send(big)
    assert [p.name for p in (small_tmpfs / "outgoing").iterdir()] == [f"{big.id}.eml"]


async def test_half_written_files_of_a_killed_process_are_removed_at_start(tmp_path):
    outgoing = tmp_path / "outgoing"
    outgoing.mkdir()
    (outgoing / ".job-7.abc123.tmp").write_bytes(b"From: half a mess")
    (outgoing / "job-6.eml").write_bytes(b"a whole message")
    provider = LocalProvider("local", directory=outgoing)
    await provider.start()
    assert sorted(p.name for p in outgoing.iterdir()) == ["job-6.eml"]


# -- item 15: a store that cannot be opened -----------------------------------------


async def serve_once(config_path: Path, timeout: float = 30,
                     prefix: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run `python -m bitmail serve`, expecting it to stop by itself: (code, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *prefix, sys.executable, "-m", "bitmail", "serve", "--config", str(config_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("serve started instead of refusing") from None
    return proc.returncode, err.decode()


def assert_one_line(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "rollback" not in err, err
    for word in words:
        assert word in lines[0], (word, err)


async def test_a_corrupt_sqlite_file_is_one_line_and_exit_code_2(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "bitmail.db").write_bytes(b"this is not a database, just some text\n" * 200)
    code, err = await serve_once(write_config(tmp_path, port=free_port()))
    assert code == 2, err
    assert_one_line(err, str(data / "bitmail.db"), "not a database")


async def test_a_data_dir_that_is_a_file_is_one_line_and_exit_code_2(tmp_path):
    (tmp_path / "data").write_text("a file where the data folder should be")
    code, err = await serve_once(write_config(tmp_path, port=free_port()))
    assert code == 2, err
    assert_one_line(err, str(tmp_path / "data"), "not a folder")


async def test_a_store_path_that_is_a_folder_is_one_line_and_exit_code_2(tmp_path):
    (tmp_path / "data" / "bitmail.db").mkdir(parents=True)
    code, err = await serve_once(write_config(tmp_path, port=free_port()))
    assert code == 2, err
    assert_one_line(err, str(tmp_path / "data" / "bitmail.db"))


async def test_an_unreadable_store_is_one_line_and_exit_code_2(tmp_path_factory):
    # Root reads whatever the mode bits say, so the service runs as nobody.
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.fail("needs root and setpriv (util-linux) to run the service as another user")
    base = Path(tempfile.mkdtemp(prefix="bitmail-nobody-"))  # outside root's 0700 tmp
    try:
        base.chmod(0o755)
        data = base / "data"
        data.mkdir(mode=0o700)
        os.chown(data, NOBODY, NOBODY)
        db = data / "bitmail.db"
        db.write_bytes(b"")
        db.chmod(0o600)  # root's, unreadable to nobody
        config_path = write_config(base, port=free_port())
        config_path.chmod(0o644)
        code, err = await serve_once(config_path, prefix=(
            setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"))
        assert code == 2, err
        assert_one_line(err, str(db), "Permission denied")
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def test_an_unreachable_postgresql_is_one_line_and_exit_code_2(tmp_path):
    port = free_port()  # nothing listens there
    config_path = write_config(
        tmp_path, f'[store]\nurl = "postgresql://nobody@127.0.0.1:{port}/bitmail"\n',
        port=free_port())
    code, err = await serve_once(config_path)
    assert code == 2, err
    assert_one_line(err, f"127.0.0.1:{port}")
