"""The users of a stack: scrypt password hashes and title entitlements, kept in the `users` section
of the stack file, which `abrkit user` rewrites atomically under a lock and auth re-reads."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.config import ALL_TITLES, USERNAME_RE
from server.formats.names import is_valid_title
from server.privatefiles import file_lock, read_json_object, write_private


@dataclass(frozen=True, kw_only=True, slots=True)
class UserRecord:
    """A user: scrypt password hash (see `server.auth.hash_password`) and entitled titles ("*" = all)."""

    username: str
    password_hash: str = field(repr=False)
    titles: tuple[str, ...] = ()
    disabled: bool = False

    def __post_init__(self) -> None:
        if not USERNAME_RE.match(self.username):
            raise ValueError(f"invalid username {self.username!r} (letters, digits, . _ @ -; at most 64)")
        if not self.password_hash.startswith("scrypt$"):
            raise ValueError(f"user {self.username}: password_hash is not an scrypt hash")
        for title in self.titles:
            if title != ALL_TITLES and not is_valid_title(title):
                raise ValueError(f"user {self.username}: invalid title {title!r}")

    def to_json(self) -> dict[str, Any]:
        return {"password_hash": self.password_hash, "titles": list(self.titles), "disabled": self.disabled}

    @classmethod
    def from_json(cls, username: str, data: Mapping[str, Any]) -> UserRecord:
        titles = data.get("titles", [])
        if not isinstance(titles, list) or not all(isinstance(t, str) for t in titles):
            raise ValueError(f"user {username}: titles must be a list of strings")
        return cls(username=username, password_hash=str(data["password_hash"]), titles=tuple(titles),
                   disabled=bool(data.get("disabled", False)))


def read_users(path: Path) -> dict[str, UserRecord]:
    """The `users` section of a stack (or users-only) JSON file."""
    data = read_json_object(path)
    users = data.get("users", {})
    if not isinstance(users, dict):
        raise ValueError(f"{path}: 'users' must be an object")
    try:
        return {name: UserRecord.from_json(name, record) for name, record in users.items()}
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: malformed user record ({exc})") from None


def update_users(path: Path, change: Callable[[dict[str, UserRecord]], None]) -> dict[str, UserRecord]:
    """Apply `change` to the users of `path` under a lock and write the file back atomically (0600)."""
    with file_lock(path):
        data = read_json_object(path) if path.exists() else {}
        users = read_users(path) if path.exists() else {}
        change(users)
        data["users"] = {name: users[name].to_json() for name in sorted(users)}
        write_private(path, json.dumps(data, indent=2) + "\n")
        return users
