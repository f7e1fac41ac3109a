"""Settings: defaults, TOML, BITMAIL_* overrides, env: secrets, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bitmail.config import ConfigError, load


def test_no_file_gives_the_embedded_default():
    settings = load(environ={})
    assert (settings.web.host, settings.web.port) == ("127.0.0.1", 8080)
    assert settings.store == "sqlite:///bitmail-data/bitmail.db"
    assert [(p.name, p.type) for p in settings.mta.providers] == [("local", "local")]


def test_environment_overrides_nested_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[web]\nport = 9000\n[mta]\nscheduler = "round-robin"\n')
    settings = load(path, environ={"BITMAIL_WEB__PORT": "8081",
                                   "BITMAIL_MTA__SCHEDULER": "adaptive"})
    assert settings.web.port == 8081 and settings.mta.scheduler == "adaptive"


def test_secrets_are_read_from_the_environment(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[mta.providers]]\nname = "mg"\ntype = "mailgun"\n'
                    'api_key = "env:MG_KEY"\ndomain = "mg.example.com"\n'
                    'failure = { threshold = 3, retry_after = "10s" }\n')
    settings = load(path, environ={"MG_KEY": "key-123"})
    [provider] = settings.mta.providers
    assert provider.options["api_key"] == "key-123"
    assert (provider.failure.threshold, provider.failure.retry_after) == (3, 10.0)


def test_a_failure_window_from_an_older_file_still_loads_and_says_it_is_unused(
        tmp_path, caplog):
    path = tmp_path / "c.toml"
    path.write_text('[[mta.providers]]\ntype = "local"\n'
                    'failure = { threshold = 3, window = "2m" }\n')
    [provider] = load(path).mta.providers
    assert provider.failure.threshold == 3
    assert "mta.providers[0].failure.window is no longer used" in caplog.text


@pytest.mark.parametrize(("body", "env", "names"), [
    ('[web]\nport = "eighty"\n', {}, "web.port"),
    ('[web]\nprot = 1\n', {}, "web.prot"),
    ('[[mta.providers]]\ntype = "carrier-pigeon"\n', {}, "mta.providers[0].type"),
    ('[[mta.providers]]\ntype = "mailgun"\napi_key = "env:NOPE"\n', {}, "NOPE"),
    ('[[mta.providers]]\ntype = "local"\nfailure = { window = "soon" }\n', {},
     "mta.providers[0].failure.window"),
    ('[mta]\nscheduler = "random"\n', {}, "mta.scheduler"),
    ('domain = "no spaces allowed"\n', {}, "domain"),
    ("this is not toml", {}, "not valid TOML"),
])
def test_a_bad_setting_is_one_error_naming_the_key(tmp_path, body, env, names):
    path = tmp_path / "c.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load(path, environ=env)
    assert names in str(err.value)


def test_serve_with_a_bad_config_prints_one_line_and_exits_2(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[web]\nport = 99999\n')
    proc = subprocess.run([sys.executable, "-m", "bitmail", "serve", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "web.port" in proc.stderr


def test_plain_http_off_loopback_is_refused(tmp_path):
    from bitmail.app import tls_context

    path = tmp_path / "c.toml"
    path.write_text('[web]\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError, match=r"web\.host"):
        tls_context(load(path, environ={}))
    allowed = load(path, environ={"BITMAIL_WEB__ALLOW_PLAIN_HTTP": "true"})
    assert tls_context(allowed) is None
