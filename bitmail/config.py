"""Settings from a TOML file, overridden by BITMAIL_* environment variables.

`BITMAIL_WEB__PORT=8081` overrides `web.port`; a value written as
`"env:NAME"` is read from the environment variable NAME, so secrets need not
sit in the file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROVIDER_TYPES = ("local", "ses", "mailgun", "mandrill", "smtp")


class ConfigError(Exception):
    """A setting that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """When a provider counts as down (`threshold` failures in a row:
    mta/health.py), and how long (seconds) until a probe may test it again."""

    threshold: int = 5
    retry_after: float = 30.0


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    type: str
    failure: FailurePolicy = field(default_factory=FailurePolicy)
    options: dict[str, Any] = field(default_factory=dict)
    webhook: dict[str, Any] = field(default_factory=dict)


EVENT_LOOPS = ("auto", "uvloop", "asyncio")


@dataclass(frozen=True, slots=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: str | None = None
    tls_key: str | None = None
    allow_plain_http: bool = False
    max_body: int = 36 * 1024 * 1024  # a 25 MB message, base64 and JSON around it
    # When set, GET /metrics needs `Authorization: Bearer <metrics_token>`.
    metrics_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class MtaSettings:
    scheduler: str = "round-robin"
    providers: tuple[ProviderSettings, ...] = ()
    lease: float = 60.0
    give_up_after: float = 3 * 24 * 3600.0
    retry_base: float = 5.0
    retry_max: float = 600.0
    send_timeout: float = 30.0
    queue_size: int = 64
    concurrency: int = 32  # sends in flight per provider: round trips overlap


@dataclass(frozen=True, slots=True)
class LogSettings:
    format: str = "text"  # one line of text, or one JSON object, per record
    level: str = "info"


LOG_FORMATS = ("text", "json")
log = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class Settings:
    domain: str = "localhost"
    data_dir: Path = Path("bitmail-data")
    max_message_size: int = 25 * 1024 * 1024
    open_signup: bool = True
    directory: bool = False  # /api/contacts offers every local account, not only correspondents
    store_url: str = ""
    web: WebSettings = field(default_factory=WebSettings)
    mta: MtaSettings = field(default_factory=MtaSettings)
    smtp_port: int | None = None  # SMTP submission, off unless set
    trash_after: float = 30 * 24 * 3600.0  # seconds a message stays in Trash ([mail] trash_after)
    # auto (uvloop where installed, a dependency except on Windows; else the
    # standard loop) | uvloop | asyncio. In bench/relay_vs_postfix.py uvloop
    # took 4-13 % less CPU per 2 KB message and relayed 1.02-1.11x as fast.
    event_loop: str = "auto"
    log: LogSettings = field(default_factory=LogSettings)

    @property
    def store(self) -> str:
        return self.store_url or f"sqlite:///{self.data_dir / 'bitmail.db'}"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any, key: str) -> float:
    """`"30s"`, `"5m"`, `"3d"`, `"250ms"` or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ConfigError(f"{key}: {value!r} is not a duration (like 30s, 5m, 3d)")


def resolve_env(value: str, key: str, environ: Mapping[str, str]) -> str:
    """`"env:NAME"` → the variable NAME's value; any other string as it is.

    ConfigError naming `key` when NAME is not set."""
    if not value.startswith("env:"):
        return value
    name = value[4:]
    if name not in environ:
        raise ConfigError(f"{key}: environment variable {name} is not set")
    return environ[name]


def _resolve_secrets(value: Any, key: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return resolve_env(value, key, environ)
    if isinstance(value, dict):
        return {k: _resolve_secrets(v, f"{key}.{k}", environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_secrets(v, f"{key}[{i}]", environ) for i, v in enumerate(value)]
    return value


def _env_overrides(raw: dict[str, Any], environ: dict[str, str]) -> None:
    for name, text in environ.items():
        if not name.startswith("BITMAIL_") or name == "BITMAIL_CONFIG":
            continue
        if name in ("BITMAIL_REQUIRE_ALL",):
            continue
        path = [p.lower() for p in name[len("BITMAIL_"):].split("__")]
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(path)} is not a table in the configuration")
            node = child
        node[path[-1]] = value


def _typed(value: Any, kind: type, key: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}")


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise ConfigError(f"{prefix}{key}: unknown setting")


def _provider(raw: Any, index: int, environ: dict[str, str]) -> ProviderSettings:
    where = f"mta.providers[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    raw = _resolve_secrets(raw, where, environ)
    name = _typed(raw.get("name", raw.get("type", "")), str, f"{where}.name")
    ptype = raw.get("type")
    if ptype not in PROVIDER_TYPES:
        raise ConfigError(f"{where}.type: must be one of {', '.join(PROVIDER_TYPES)}")
    failure_raw = raw.get("failure", {})
    if not isinstance(failure_raw, dict):
        raise ConfigError(f"{where}.failure: must be a table")
    _check_keys(failure_raw, {"threshold", "window", "retry_after"}, f"{where}.failure")
    if "window" in failure_raw:
        # Accepted so that older files still load; it has no effect (why: mta/health.py).
        parse_duration(failure_raw["window"], f"{where}.failure.window")
        log.warning("%s.failure.window is no longer used: a provider is down after "
                    "`threshold` failures in a row, however far apart", where)
    failure = FailurePolicy(
        threshold=_typed(failure_raw.get("threshold", 5), int, f"{where}.failure.threshold"),
        retry_after=parse_duration(
            failure_raw.get("retry_after", 30), f"{where}.failure.retry_after"),
    )
    if failure.threshold < 1:
        raise ConfigError(f"{where}.failure.threshold: must be at least 1")
    webhook_keys = {"webhook_signing_key", "webhook_key", "webhook_url", "sns_topics",
                    "sns_max_age"}
    options = {k: v for k, v in raw.items()
               if k not in ("name", "type", "failure") and k not in webhook_keys}
    webhook = {k: v for k, v in raw.items() if k in webhook_keys}
    if "sns_max_age" in webhook:  # how old a signed SNS message may be (its retry window)
        webhook["sns_max_age"] = parse_duration(webhook["sns_max_age"], f"{where}.sns_max_age")
    return ProviderSettings(name=name or ptype, type=ptype, failure=failure,
                            options=options, webhook=webhook)


def load(path: str | os.PathLike[str] | None = None,
         environ: dict[str, str] | None = None) -> Settings:
    """Settings from the file (or BITMAIL_CONFIG, or none) and the environment."""
    environ = dict(os.environ if environ is None else environ)
    path = path or environ.get("BITMAIL_CONFIG")
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"--config: {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _env_overrides(raw, environ)
    _check_keys(raw, {"domain", "data_dir", "max_message_size", "web", "store", "mta",
                      "accounts", "smtp", "log", "event_loop", "mail"}, "")
    event_loop = _typed(raw.get("event_loop", "auto"), str, "event_loop")
    if event_loop not in EVENT_LOOPS:
        raise ConfigError(f"event_loop: must be one of {', '.join(EVENT_LOOPS)}")
    domain = _typed(raw.get("domain", "localhost"), str, "domain").lower()
    if not re.match(r"^[a-z0-9.-]+$", domain):
        raise ConfigError(f"domain: {domain!r} is not a domain name")
    data_dir = Path(_typed(raw.get("data_dir", "bitmail-data"), str, "data_dir"))

    web_raw = raw.get("web", {})
    _check_keys(web_raw, {"host", "port", "tls_cert", "tls_key", "allow_plain_http",
                          "max_body", "metrics_token"}, "web")
    metrics_token = _resolve_secrets(web_raw.get("metrics_token"), "web.metrics_token", environ)
    if metrics_token is not None and (not isinstance(metrics_token, str)
                                      or len(metrics_token) < 16):
        raise ConfigError("web.metrics_token: use a random string of at least 16 characters")
    port = _typed(web_raw.get("port", 8080), int, "web.port")
    if not 0 <= port < 65536:
        raise ConfigError(f"web.port: {port} is not a port number")
    web = WebSettings(
        host=_typed(web_raw.get("host", "127.0.0.1"), str, "web.host"),
        port=port,
        tls_cert=web_raw.get("tls_cert"),
        tls_key=web_raw.get("tls_key"),
        allow_plain_http=_typed(web_raw.get("allow_plain_http", False), bool,
                                "web.allow_plain_http"),
        max_body=_typed(web_raw.get("max_body", 36 * 1024 * 1024), int, "web.max_body"),
        metrics_token=metrics_token,
    )
    if bool(web.tls_cert) != bool(web.tls_key):
        raise ConfigError("web.tls_cert: tls_cert and tls_key go together")

    store_raw = raw.get("store", {})
    _check_keys(store_raw, {"url"}, "store")
    store_url = _resolve_secrets(store_raw.get("url", ""), "store.url", environ)

    mta_raw = raw.get("mta", {})
    _check_keys(mta_raw, {"scheduler", "providers", "lease", "give_up_after", "retry_base",
                          "retry_max", "send_timeout", "queue_size", "concurrency"}, "mta")
    scheduler = mta_raw.get("scheduler", "round-robin")
    if scheduler not in ("round-robin", "adaptive"):
        raise ConfigError("mta.scheduler: must be round-robin or adaptive")
    providers_raw = mta_raw.get("providers", [])
    if not isinstance(providers_raw, list):
        raise ConfigError("mta.providers: must be an array of tables ([[mta.providers]])")
    providers = tuple(_provider(p, i, environ) for i, p in enumerate(providers_raw))
    names = [p.name for p in providers]
    if len(set(names)) != len(names):
        raise ConfigError("mta.providers: provider names must be unique")
    mta = MtaSettings(
        scheduler=scheduler,
        providers=providers or (ProviderSettings(name="local", type="local"),),
        lease=parse_duration(mta_raw.get("lease", 60), "mta.lease"),
        give_up_after=parse_duration(mta_raw.get("give_up_after", "3d"), "mta.give_up_after"),
        retry_base=parse_duration(mta_raw.get("retry_base", 5), "mta.retry_base"),
        retry_max=parse_duration(mta_raw.get("retry_max", 600), "mta.retry_max"),
        send_timeout=parse_duration(mta_raw.get("send_timeout", 30), "mta.send_timeout"),
        queue_size=_typed(mta_raw.get("queue_size", 64), int, "mta.queue_size"),
        concurrency=_typed(mta_raw.get("concurrency", 32), int, "mta.concurrency"),
    )
    accounts_raw = raw.get("accounts", {})
    _check_keys(accounts_raw, {"open_signup", "operators", "directory"}, "accounts")
    if "operators" in accounts_raw:
        # A name in the configuration is a role for whoever signs up with it
        # first; the role now belongs to an account an administrator marks.
        raise ConfigError(
            "accounts.operators: no longer supported (with open signup, anyone could claim "
            "such a name); remove it and mark operator accounts with "
            "`python -m bitmail user set NAME --operator`")
    smtp_raw = raw.get("smtp", {})
    _check_keys(smtp_raw, {"port"}, "smtp")
    mail_raw = raw.get("mail", {})
    _check_keys(mail_raw, {"trash_after"}, "mail")
    log = _log_settings(raw.get("log", {}))
    return Settings(
        domain=domain,
        data_dir=data_dir,
        max_message_size=_typed(raw.get("max_message_size", 25 * 1024 * 1024), int,
                                "max_message_size"),
        open_signup=_typed(accounts_raw.get("open_signup", True), bool, "accounts.open_signup"),
        directory=_typed(accounts_raw.get("directory", False), bool, "accounts.directory"),
        store_url=store_url,
        web=web,
        mta=mta,
        smtp_port=_typed(smtp_raw["port"], int, "smtp.port") if "port" in smtp_raw else None,
        trash_after=parse_duration(mail_raw.get("trash_after", "30d"), "mail.trash_after"),
        event_loop=event_loop,
        log=log,
    )


def _log_settings(raw: Any) -> LogSettings:
    if not isinstance(raw, dict):
        raise ConfigError("log: must be a table")
    _check_keys(raw, {"format", "level"}, "log")
    fmt = _typed(raw.get("format", "text"), str, "log.format").lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"log.format: must be one of {', '.join(LOG_FORMATS)}")
    level = _typed(raw.get("level", "info"), str, "log.level").lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"log.level: must be one of {', '.join(LOG_LEVELS)}")
    return LogSettings(format=fmt, level=level)
