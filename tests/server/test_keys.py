"""The stack's keys: the secrets file, its public halves, and which service holds which."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from server.keys import NEEDS, ServiceSecrets, ed25519_public, load_or_create_secrets, secrets_for


def test_secrets_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secrets.json"
    first = load_or_create_secrets(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secrets(path) == first
    keys = (first.jwt_signing_key, first.url_signing_key, first.internal_token)
    assert len(set(keys)) == 3 and all(len(k) >= 32 for k in keys)
    shown = repr(first) + str(first)  # what a log line or a traceback would print
    for key in keys:
        assert key.hex() not in shown and repr(key)[2:-1] not in shown  # neither as hex nor as bytes


def test_a_secrets_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    load_or_create_secrets(path)
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        load_or_create_secrets(path)


def test_a_secrets_file_of_an_earlier_version_is_completed_and_keeps_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    old = {"jwt_signing_key": "11" * 32, "url_signing_key": "22" * 32, "demo_password": "kept"}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(old, out)
    secrets = load_or_create_secrets(path)
    assert secrets.jwt_signing_key == bytes.fromhex("11" * 32) and secrets.demo_password == "kept"
    assert len(secrets.internal_token) == 32 and "internal_token" in json.loads(path.read_text())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_each_service_holds_only_what_it_needs(tmp_path: Path) -> None:
    secrets = load_or_create_secrets(tmp_path / "secrets.json")
    signers = {kind for kind in NEEDS if secrets_for(kind, secrets).jwt_signing_key is not None}
    url_signers = {kind for kind in NEEDS if secrets_for(kind, secrets).url_signing_key is not None}
    assert signers == {"auth"} and url_signers == {"playback"}  # nobody else can mint tokens or URLs
    edge = secrets_for("edge", secrets)
    assert edge.url_verify_key == ed25519_public(secrets.url_signing_key) and edge.jwt_verify_key is None
    gateway = secrets_for("gateway", secrets)
    assert gateway.jwt_verify_key == ed25519_public(secrets.jwt_signing_key)
    assert secrets_for("origin", secrets) == ServiceSecrets(internal_token=secrets.internal_token)
    with pytest.raises(ValueError, match="not given"):
        edge.require("url_signing_key")


def test_service_secrets_travel_as_json_and_refuse_anything_else() -> None:
    secrets = ServiceSecrets(internal_token=b"i" * 32, jwt_verify_key=b"v" * 32)
    assert ServiceSecrets.from_json(json.loads(json.dumps(secrets.to_json()))) == secrets
    for bad in (None, [], {"internal_token": 1}, {"internal_token": "zz"}, {"internal_token": "00", "extra": "00"}):
        with pytest.raises(ValueError):
            ServiceSecrets.from_json(bad)


def test_a_key_removed_from_the_file_is_replaced_by_a_fresh_one(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    first = load_or_create_secrets(path)
    data = json.loads(path.read_text())
    del data["jwt_signing_key"]  # rotating the token key: every login ends
    path.write_text(json.dumps(data))
    second = load_or_create_secrets(path)
    assert second.jwt_signing_key != first.jwt_signing_key and second.url_signing_key == first.url_signing_key
