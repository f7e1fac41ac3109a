"""The command line: `serve`, and admin verbs (users, API keys, one message)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import json
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from . import config, logs
from .accounts import Accounts
from .app import running, serve, with_self_signed
from .datadir import DataDirError
from .errors import BitMailError
from .message import parse_message
from .store import Store, StoreError, StoreUnavailable


def _parser() -> argparse.ArgumentParser:
    # `--config` is taken before or after the command; SUPPRESS keeps a
    # subcommand's unset option from overwriting the one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="TOML settings file (or BITMAIL_CONFIG)")
    parser = argparse.ArgumentParser(prog="python -m bitmail", description=__doc__,
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    add = functools.partial(sub.add_parser, parents=[common])
    p = add("serve", help="run the service")
    p.add_argument("--self-signed", action="store_true",
                   help="serve HTTPS with a certificate made for trying it out")
    _account_commands(add)
    p = add("send", help="send one message as a user")
    p.add_argument("--from", dest="sender", required=True,
                   help="an existing user: USERNAME or USERNAME@DOMAIN")
    p.add_argument("--to", required=True)
    p.add_argument("--subject", default="")
    p.add_argument("--text", default="")
    p = add("suppression", help="the suppression list (hard bounces, complaints)")
    p.add_argument("action", choices=["list", "remove"])
    p.add_argument("address", nargs="?")
    _store_commands(add)
    return parser


def _account_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """`user add|set|list` and `apikey create|list|revoke`."""
    p = add("apikey", help="API keys: create USERNAME, list [USERNAME], revoke ID")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("target", nargs="?", metavar="USERNAME|ID")
    p.add_argument("--name", default="command line", help="what uses the key (create)")
    p = add("user", help="users: add USERNAME, set USERNAME, list")
    p.add_argument("action", choices=["add", "set", "list"])
    p.add_argument("username", nargs="?")
    p.add_argument("--password", help="at least 8 characters, not the username")
    p.add_argument("--operator", action=argparse.BooleanOptionalAction, default=None,
                   help="may see providers and change the suppression list")


def _when(t: float | None) -> str:
    if t is None:
        return "never"
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _apikey(args: argparse.Namespace, accounts: Accounts) -> int:
    """`create` prints the key (shown only then); `list` prints
    id, user, name, created, last used; `revoke ID` stops a key at once."""
    if args.action in ("create", "revoke") and not args.target:
        print(f"apikey {args.action} needs {'USERNAME' if args.action == 'create' else 'ID'}",
              file=sys.stderr)
        return 2
    if args.action == "create":
        print(await accounts.create_api_key(args.target, args.name))
    elif args.action == "list":
        for k in await accounts.keys.list(args.target.lower() if args.target else None):
            print(f"{k.id}\t{k.username}\t{k.name}\t{_when(k.created)}\t{_when(k.last_used)}")
    else:
        info = await accounts.keys.revoke(args.target)
        print(f"revoked {info.id} ({info.username}: {info.name})")
    return 0


async def _user(args: argparse.Namespace, accounts: Accounts) -> int:
    if args.action == "list":
        for name in sorted(await accounts.usernames()):
            role = "\toperator" if await accounts.is_operator(name) else ""
            print(f"{name}{role}")
        return 0
    if not args.username:
        print(f"user {args.action} needs USERNAME", file=sys.stderr)
        return 2
    if args.action == "add":
        if not args.password:
            print("user add needs USERNAME and --password", file=sys.stderr)
            return 2
        user = await accounts.create(args.username, args.password,
                                     operator=bool(args.operator))
    else:
        if args.password is None and args.operator is None:
            print("user set needs --password or --operator/--no-operator", file=sys.stderr)
            return 2
        user = await accounts.set_user(args.username, password=args.password,
                                       operator=args.operator)
    role = " (operator)" if await accounts.is_operator(user.username) else ""
    print(f"{user.address}{role}")
    return 0


def _store_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """`migrate`, and `store copy SRC DST`."""
    add("migrate", help="bring the configured store's schema up to date")
    p = add("store", help="the store as a whole")
    p.add_argument("action", choices=["copy"])
    p.add_argument("source", metavar="SRC", help="store URL to copy from (or env:NAME)")
    p.add_argument("target", metavar="DST", help="store URL to copy into (or env:NAME)")
    p.add_argument("--batch", type=int, default=200, help="documents per batch (200)")


async def _store_admin(args: argparse.Namespace, settings: config.Settings) -> int:
    from .store import open_store
    from .store.copy import copy_store

    if args.command == "migrate":
        # Opening the store runs whatever migrations it is missing.
        async with open_store(settings.store) as store:
            version = await store.schema_version()
        print(f"{settings.store.split(':', 1)[0]} store: schema version {version}")
        return 0
    # A URL given as env:NAME keeps its password off the command line.
    source = config.resolve_env(args.source, "SRC", os.environ)
    target = config.resolve_env(args.target, "DST", os.environ)
    counts = await copy_store(source, target,
                              page=max(1, args.batch),
                              progress=lambda kind, n: print(f"{kind}\t{n}", flush=True))
    print(f"copied {sum(counts.values())} documents of {len(counts)} kinds")
    return 0


async def _suppression(args: argparse.Namespace, store: Store) -> int:
    """`suppression list` prints one entry a line; `remove ADDRESS` sends to it again."""
    from .suppression import SuppressionList

    suppressions = SuppressionList(store)
    if args.action == "list":
        before = None
        while True:
            docs, before = await suppressions.entries(before=before, limit=500)
            for d in docs:
                print(f"{d['address']}\t{d.get('reason', '')}\t{d.get('provider') or ''}\t"
                      f"{d.get('detail') or ''}")
            if before is None:
                return 0
    if not args.address:
        print("suppression remove needs ADDRESS", file=sys.stderr)
        return 2
    if not await suppressions.remove(args.address):
        print(f"{args.address} is not on the suppression list", file=sys.stderr)
        return 1
    print(f"removed {args.address.strip().lower()}")
    return 0


async def _admin(args: argparse.Namespace, settings: config.Settings) -> int:
    async with running(settings, with_mta=False) as rt:
        if args.command == "apikey":
            return await _apikey(args, rt.accounts)
        elif args.command == "user":
            return await _user(args, rt.accounts)
        elif args.command == "suppression":
            return await _suppression(args, rt.store)
        elif args.command == "send":
            name, at, domain = args.sender.strip().rpartition("@")
            if at and domain.lower() != settings.domain.lower():
                print(f"--from: {args.sender} is not an address of {settings.domain}",
                      file=sys.stderr)
                return 2
            username = (name if at else args.sender).strip().lower()
            if not await rt.accounts.exists(username):
                print(f"--from: no user {username!r} here (python -m bitmail user add)",
                      file=sys.stderr)
                return 2
            user = rt.accounts.user(username)
            message = parse_message({"to": args.to, "subject": args.subject, "text": args.text},
                                    sender=user.address, domain=settings.domain,
                                    max_size=settings.max_message_size)
            message_id = await rt.mailbox.accept(message, user.username)
            print(json.dumps({"id": message_id, "status": "queued"}))
    return 0


def run_loop(main: Coroutine[Any, Any, int], choice: str) -> int:
    """Run the service on uvloop (setting `event_loop`: "auto", the default,
    takes it when it is installed, as it is everywhere but on Windows;
    "uvloop" insists) or on the standard loop ("asyncio").

    uvloop is a drop-in loop written on libuv: the same asyncio API, less time
    per callback and per socket operation."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise config.ConfigError("event_loop: uvloop is not installed") from None
        else:
            code: int = uvloop.run(main)
            return code
    return asyncio.run(main)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = config.load(getattr(args, "config", None))
        logs.configure(settings)
        if args.command == "serve":
            if args.self_signed:
                settings = with_self_signed(settings)
            return run_loop(serve(settings), settings.event_loop)
        if args.command in ("migrate", "store"):
            return asyncio.run(_store_admin(args, settings))
        return asyncio.run(_admin(args, settings))
    except config.ConfigError as exc:
        print(f"bitmail: configuration error: {exc}", file=sys.stderr)
        return 2
    except (DataDirError, StoreUnavailable) as exc:
        # Nothing to retry from here: the operator must fix the file or server.
        print(f"bitmail: {exc}", file=sys.stderr)
        return 2
    except BitMailError as exc:
        where = f"{exc.field}: " if exc.field else ""
        print(f"bitmail: {where}{exc}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"bitmail: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
