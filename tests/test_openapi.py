"""The API's own description (GET /api/openapi.json), and a schemathesis run
against a live service that must find no 5xx at all and no answer the
description does not allow (issue 11, "Fuzzing")."""

from __future__ import annotations

import asyncio
import base64
import shutil
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from openapi_spec_validator import validate

from bitmail.web.openapi import OPERATIONS, describe, undescribed

from conftest import ServeProcess, free_port, write_config

PASSWORD = "correct horse battery"
# Per operation, examples from each phase: the whole run takes about half a
# minute on a loaded two-core machine.
MAX_EXAMPLES = 25
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance",
          "negative_data_rejection")


async def test_the_description_is_valid_openapi_3_1(service):
    resp = await service.client.get("/api/openapi.json")  # public: no key needed
    assert resp.status == 200
    document = await resp.json()
    assert document["openapi"] == "3.1.0"
    validate(document)


async def test_every_route_is_described(service):
    assert undescribed(service.client.app) == []


def test_every_operation_answers_errors_in_the_one_shape():
    document = describe()
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            for status, answer in op["responses"].items():
                # /healthz's 503 is its report ("down"), not a refusal.
                if int(status) >= 400 and path != "/healthz":
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (
                        method, path, status)


async def run(*args: str, timeout: float = 60, cwd: Path | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode()


async def seed_message(url: str, key: str) -> str:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        async with http.post(f"{url}/api/messages", json={
                "to": "fuzzer@localhost", "subject": "seed", "text": "plain",
                "html": "<p>rich</p>", "attachments": [{
                    "filename": "a.txt", "content_type": "text/plain",
                    "content": base64.b64encode(b"attached").decode()}]}) as resp:
            assert resp.status == 202, await resp.text()
            return (await resp.json())["id"]


def operation_data(message_id: str) -> str:
    """schemathesis.toml: the seeded message's id for the routes that take one."""
    return "".join(
        f'[[operations]]\ninclude-path = "{path}"\nparameters = {{ "path.id" = "{message_id}" }}\n'
        for path in ("/api/messages/{id}", "/api/messages/{id}/html",
                     "/api/messages/{id}/attachments/{index}"))


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error_and_no_answer_off_the_description(
        tmp_path: Path):
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    # A test dependency (pyproject's [test]): missing, the install is broken.
    assert schemathesis is not None, "schemathesis is not installed (pip install -e '.[test]')"
    port = free_port()
    config_path = write_config(tmp_path, port=port)
    bitmail = (sys.executable, "-m", "bitmail", "--config", str(config_path))
    # An operator, so that the operators' routes are reached too.
    code, out = await run(*bitmail, "user", "add", "fuzzer", "--password", PASSWORD,
                          "--operator")
    assert code == 0, out
    code, out = await run(*bitmail, "apikey", "create", "fuzzer")
    assert code == 0, out
    key = out.strip().splitlines()[-1]
    server = await ServeProcess(config_path, port, tmp_path / "serve.log").start()
    try:
        # One real message (HTML, an attachment) so that the routes under
        # /api/messages/{id} answer with their 200s, not only 404s.
        settings = tmp_path / "schemathesis.toml"
        settings.write_text(operation_data(await seed_message(server.url, key)))
        never = [op.path for op in OPERATIONS if not op.fuzz]
        started = time.monotonic()
        code, out = await run(
            schemathesis, "--config-file", str(settings),
            "run", f"{server.url}/api/openapi.json",
            "--header", f"Authorization: Bearer {key}",
            "--checks", ",".join(CHECKS),
            "--max-examples", str(MAX_EXAMPLES), "--seed", "11",
            "--request-timeout", "20", "--workers", "1", "--no-color",
            "--generation-database", "none",
            "--report", "junit", "--report-dir", str(tmp_path / "report"),
            *(arg for path in never for arg in ("--exclude-path", path)),
            timeout=170, cwd=tmp_path)  # its .schemathesis cache stays out of the tree
        took = time.monotonic() - started
    finally:
        server.kill()
    log = server.output()
    assert code == 0, out[-12000:] + "\n--- service log ---\n" + log[-4000:]
    # (aiohttp itself logs the malformed requests it refuses, with a traceback.)
    assert "unexpected error" not in log, log[-4000:]
    # Bounded by examples per operation, not by a clock (speed belongs in
    # bench/): about half a minute here.
    print(f"schemathesis took {took:.0f} s\n{out}")  # shown with -s
