"""`abrkit user`: manage the stack's users (scrypt password hashes, title entitlements) and revoke tokens.

Changes take effect in a running stack at once: the auth service re-reads the stack file, and the
revocation store (server/revocation.py) makes every service refuse what the change ends: new
entitlements end the user's access tokens and URLs (a refresh gets the new ones), a new password,
`revoke` and `remove` end every token of the user.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from server.commands import CommandError

if TYPE_CHECKING:
    from server.revocation import RevocationStore


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("user", help="add, list, change or revoke users of the server stack",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="stack file (default: the one `abrkit serve` uses)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = sub.add_parser("add", help="add a user (or replace one with --force)")
    add.add_argument("username")
    add.add_argument("--titles", default="", help="comma-separated titles the user may play ('*' = all)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add.add_argument("--force", action="store_true", help="replace an existing user")

    change = sub.add_parser("set", help="change a user's titles and/or password")
    change.add_argument("username")
    change.add_argument("--titles", help="comma-separated titles ('*' = all)")
    change.add_argument("--password-stdin", action="store_true", help="new password from the first line of stdin")
    change.add_argument("--password", action="store_true", help="prompt for a new password")
    change.add_argument("--enable", action="store_true", help="re-enable a revoked user")

    sub.add_parser("list", help="list users and their titles")

    revoke = sub.add_parser("revoke", help="disable a user and revoke every token issued to them so far")
    revoke.add_argument("username")
    revoke.add_argument("--jti", help="revoke only this token id (the user stays enabled)")

    remove = sub.add_parser("remove", help="delete a user (and revoke their tokens)")
    remove.add_argument("username")
    parser.set_defaults(func=run)


def _titles(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise CommandError("passwords differ")
    else:
        raise CommandError("no terminal to prompt for a password: use --password-stdin")
    if len(password) < 8:
        raise CommandError("password must be at least 8 characters")
    return password


def _token_lifetimes(config_path: Path) -> tuple[Path, float]:
    """(the stack's revocation store, how long a stamp must hold: its longest token lifetime)."""
    from server.config import REVOCATIONS_FILE, stack_config_from_json
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "content_root" in data:
            config = stack_config_from_json(data, config_path)
            return config.resolved_revocations_path, float(max(config.refresh_ttl_s, config.access_ttl_s))
    except (OSError, ValueError):
        pass
    return config_path.parent / REVOCATIONS_FILE, 7 * 86_400.0


def run(args: argparse.Namespace) -> int:
    from server.config import default_config_path
    from server.passwords import hash_password
    from server.revocation import RevocationStore, create_store
    from server.users import UserRecord, read_users, update_users

    path = (args.config or default_config_path()).expanduser().resolve()
    if args.action == "list":
        users = read_users(path) if path.exists() else {}
        for user in sorted(users.values(), key=lambda u: u.username):
            state = "  (revoked)" if user.disabled else ""
            print(f"{user.username}\t{','.join(user.titles) or '-'}{state}")
        return 0

    name = args.username
    if args.action == "add":
        record = UserRecord(username=name, password_hash=hash_password(_read_password(args.password_stdin)),
                            titles=_titles(args.titles))

        def add(users: dict[str, UserRecord]) -> None:
            if name in users and not args.force:
                raise CommandError(f"user {name} exists (use --force to replace, or `abrkit user set`)")
            users[name] = record

        update_users(path, add)
        print(f"added user {name} ({','.join(record.titles) or 'no titles'}) to {path}")
        return 0

    existing = read_users(path) if path.exists() else {}
    if name not in existing:
        raise CommandError(f"no user {name} in {path}")
    store_path, lifetime_s = _token_lifetimes(path)
    create_store(store_path)
    revocations = RevocationStore(store_path, threads=1)
    until = time.time() + lifetime_s + 300  # a stamp holds until every token issued before it has expired
    try:
        return _change(args, name, path, revocations, until)
    finally:
        revocations.close()


def _change(args: argparse.Namespace, name: str, path: Path, revocations: RevocationStore, until: float) -> int:
    from server.passwords import hash_password
    from server.users import UserRecord, update_users

    if args.action == "set":
        new_hash = None
        if args.password or args.password_stdin:
            new_hash = hash_password(_read_password(args.password_stdin))
        new_titles = _titles(args.titles) if args.titles is not None else None
        changed_titles: list[bool] = []

        def change(users: dict[str, UserRecord]) -> None:
            old = users[name]
            titles = new_titles if new_titles is not None else old.titles
            changed_titles.append(set(titles) != set(old.titles))
            users[name] = UserRecord(username=name, password_hash=new_hash or old.password_hash, titles=titles,
                                     disabled=False if args.enable else old.disabled)

        update_users(path, change)
        if new_hash:  # a new password ends the sessions made with the old one
            revocations.stamp_subject(name, until=until)
        elif changed_titles and changed_titles[0]:  # tokens and URLs carry the old entitlements: end them
            revocations.stamp_subject(name, until=until, access_only=True)
        print(f"updated user {name}")
    elif args.action == "revoke":
        if args.jti:
            revocations.revoke_token(args.jti, until=until)
            print(f"revoked token {args.jti}")
            return 0

        def disable(users: dict[str, UserRecord]) -> None:
            old = users[name]
            users[name] = UserRecord(username=name, password_hash=old.password_hash, titles=old.titles, disabled=True)

        update_users(path, disable)
        revocations.stamp_subject(name, until=until)
        print(f"revoked user {name}: existing tokens are rejected and no new ones are issued")
    elif args.action == "remove":
        update_users(path, lambda users: users.pop(name))
        revocations.stamp_subject(name, until=until)
        print(f"removed user {name}")
    return 0
