"""`abrkit user`: manage the stack's users (scrypt password hashes, title entitlements) and revoke tokens.

Changes take effect in a running stack at once: the auth service re-reads the stack file, and every
service re-reads the revocation file.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from server.commands import CommandError


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


def _revocations_path(config_path: Path) -> Path:
    from server.config import REVOCATIONS_FILE, stack_config_from_json
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "content_root" in data:
            return stack_config_from_json(data, config_path).resolved_revocations_path
    except (OSError, ValueError):
        pass
    return config_path.parent / REVOCATIONS_FILE


def run(args: argparse.Namespace) -> int:
    from server.auth import RevocationStore, hash_password
    from server.config import UserRecord, default_config_path, read_users, update_users

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
    revocations = RevocationStore(_revocations_path(path))
    if args.action == "set":
        new_hash = None
        if args.password or args.password_stdin:
            new_hash = hash_password(_read_password(args.password_stdin))

        def change(users: dict[str, UserRecord]) -> None:
            old = users[name]
            users[name] = UserRecord(username=name, password_hash=new_hash or old.password_hash,
                                     titles=_titles(args.titles) if args.titles is not None else old.titles,
                                     disabled=False if args.enable else old.disabled)

        update_users(path, change)
        if new_hash:  # a new password ends the sessions made with the old one
            revocations.revoke_subject(name)
        print(f"updated user {name}")
    elif args.action == "revoke":
        if args.jti:
            import time
            revocations.revoke_jti(args.jti, until=time.time() + 7 * 86_400)
            print(f"revoked token {args.jti}")
            return 0

        def disable(users: dict[str, UserRecord]) -> None:
            old = users[name]
            users[name] = UserRecord(username=name, password_hash=old.password_hash, titles=old.titles, disabled=True)

        update_users(path, disable)
        revocations.revoke_subject(name)
        print(f"revoked user {name}: existing tokens are rejected and no new ones are issued")
    elif args.action == "remove":
        update_users(path, lambda users: users.pop(name))
        revocations.revoke_subject(name)
        print(f"removed user {name}")
    return 0
