"""API tokens' life cycle, through `dtma-console token ...` and /api/v1/tokens: labels,
expiry, listing without the secret, revocation at once, and the web sessions that end with
their token. Empty fleet: nothing here needs a droplet."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from api.cli import app as console_cli
from api.context import Context
from api.db import session_scope
from api.models import ApiToken, utcnow
from api.web.models import WebSession

CONTRACT_FIELDS = {
    "id", "user", "label", "admin", "created_at", "last_used_at", "expires_at", "revoked_at",
}  # fmt: skip


# Commands are slow to start (a process each): their own logic is the same on both engines,
# which the HTTP tests cover.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def cli(context: Context, *args: str) -> subprocess.CompletedProcess[str]:
    """`dtma-console` on the same database and master key as the app under test: the Typer
    app its entry point runs, run in this process (a process of its own costs ~2 s of CPU;
    tests/api/test_commands.py runs `dtma-console token create` as a process)."""
    settings = context.settings
    env = {"DTMA_DATABASE_URL": settings.database_url}
    if settings.master_key is not None:
        env["DTMA_MASTER_KEY"] = settings.master_key.get_secret_value()
    else:
        env["DTMA_MASTER_KEY_FILE"] = str(settings.master_key_file.resolve())
    done = CliRunner().invoke(console_cli, list(args), env=env, catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), done.exit_code, done.stdout, done.stderr)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def listed(context: Context) -> list[dict[str, Any]]:
    done = cli(context, "token", "list", "--json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


@SQLITE_ONLY
def test_cli_token_create_list_revoke_and_the_token_is_refused_at_once(
    client: httpx.Client, context: Context
) -> None:
    created = cli(
        context, "token", "create", "--user", "ci", "--label", "nightly", "--expires", "30d"
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("dtma_") and secret not in created.stderr
    assert client.get("/api/v1/toolboxes", headers=bearer(secret)).status_code == 200

    rows = listed(context)
    assert len(rows) == 1
    row = rows[0]
    assert set(row) >= CONTRACT_FIELDS
    assert (row["user"], row["label"], row["admin"], row["revoked_at"]) == (
        "ci",
        "nightly",
        False,
        None,
    )
    assert row["id"] in created.stderr  # the id to revoke it by is told at creation
    lifetime = utcnow() + timedelta(days=30) - _time(row["expires_at"])
    assert abs(lifetime.total_seconds()) < 120
    assert row["last_used_at"] is not None  # the request above used it
    table = cli(context, "token", "list")
    assert row["id"] in table.stdout and "nightly" in table.stdout
    assert secret not in json.dumps(rows) + table.stdout
    assert secret[5:20] not in json.dumps(rows) + table.stdout

    revoked = cli(context, "token", "revoke", row["id"])
    assert revoked.returncode == 0, revoked.stderr
    answer = client.get("/api/v1/toolboxes", headers=bearer(secret))
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "token_revoked"


@SQLITE_ONLY
def test_cli_refuses_bad_lifetimes_and_unknown_ids(context: Context) -> None:
    refused = cli(context, "token", "create", "--user", "ci", "--expires", "30x")
    assert refused.returncode == 1, refused.stdout
    assert "not a lifetime such as 30d" in refused.stderr and refused.stdout == ""
    unknown = cli(context, "token", "revoke", "0" * 32)
    assert unknown.returncode == 1 and "not found" in unknown.stderr
    with session_scope(context.sessions) as session:
        assert session.scalar(select(ApiToken)) is None  # nothing half made


def test_an_expired_token_gets_token_expired(
    client: httpx.Client, db: Session, alice: dict[str, str]
) -> None:
    made = client.post("/api/v1/tokens", headers=bearer(alice["token"]), json={"expires_in": "1h"})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert client.get("/api/v1/toolboxes", headers=bearer(token)).status_code == 200
    row = db.get(ApiToken, made.json()["id"])
    assert row is not None
    row.expires_at = utcnow() - timedelta(seconds=1)  # an hour went by
    db.commit()
    answer = client.get("/api/v1/toolboxes", headers=bearer(token))
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "token_expired"
    own = client.get("/api/v1/tokens", headers=bearer(alice["token"])).json()
    assert {t["id"]: t["state"] for t in own}[row.id] == "expired"


def test_users_list_create_and_revoke_only_their_own_tokens(
    client: httpx.Client, alice: dict[str, str], bob: dict[str, str], admin: dict[str, str]
) -> None:
    as_alice, as_bob, as_admin = (
        bearer(alice["token"]),
        bearer(bob["token"]),
        bearer(admin["token"]),
    )
    made = client.post("/api/v1/tokens", headers=as_alice, json={"label": "laptop"})
    assert made.status_code == 201, made.text
    second = made.json()
    assert (second["user"], second["label"], second["expires_at"]) == ("alice", "laptop", None)

    own = client.get("/api/v1/tokens", headers=as_alice).json()
    assert {t["user"] for t in own} == {"alice"} and len(own) == 2
    assert all("token" not in t and "token_hash" not in t for t in own)
    assert alice["token"] not in json.dumps(own)
    everything = client.get("/api/v1/tokens", headers=as_admin).json()
    assert {t["user"] for t in everything} == {"alice", "bob", "root"}

    others = client.post(f"/api/v1/tokens/{second['id']}/revoke", headers=as_bob)
    assert others.status_code == 404 and others.json()["error"]["code"] == "token_not_found"
    assert client.get("/api/v1/toolboxes", headers=bearer(second["token"])).status_code == 200
    for_bob = client.post("/api/v1/tokens", headers=as_alice, json={"user": "bob"})
    assert for_bob.status_code == 403

    revoked = client.post(f"/api/v1/tokens/{second['id']}/revoke", headers=as_alice)
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    refused = client.get("/api/v1/toolboxes", headers=bearer(second["token"]))
    assert refused.json()["error"]["code"] == "token_revoked"
    again = client.post(f"/api/v1/tokens/{second['id']}/revoke", headers=as_alice)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]  # the first time stays

    bobs = client.post("/api/v1/tokens", headers=as_admin, json={"user": "bob", "label": "ops"})
    assert bobs.status_code == 201 and bobs.json()["user"] == "bob"
    bob_id = next(t["id"] for t in everything if t["user"] == "bob")
    assert client.post(f"/api/v1/tokens/{bob_id}/revoke", headers=as_admin).status_code == 200
    assert client.get("/api/v1/tokens", headers=as_bob).status_code == 401
    assert client.get("/api/v1/tokens", headers=bearer(bobs.json()["token"])).status_code == 200


def test_bad_token_requests_are_4xx_with_stable_codes(
    client: httpx.Client, alice: dict[str, str], admin: dict[str, str]
) -> None:
    as_alice = bearer(alice["token"])
    for body, field in (
        ({"expires_in": "forever"}, "expires_in"),
        ({"label": "x" * 129}, "label"),
        ({"secret": "mine"}, "secret"),
    ):
        answer = client.post("/api/v1/tokens", headers=as_alice, json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "invalid_input"
        assert answer.json()["error"]["field"] == field
    nobody = client.post("/api/v1/tokens", headers=bearer(admin["token"]), json={"user": "nobody"})
    assert nobody.status_code == 422 and nobody.json()["error"]["field"] == "user"
    long_id = client.post(f"/api/v1/tokens/{'a' * 33}/revoke", headers=as_alice)
    assert long_id.status_code == 422
    assert len(client.get("/api/v1/tokens", headers=as_alice).json()) == 1  # nothing made


def test_last_used_is_written_at_most_once_a_minute(
    client: httpx.Client, db: Session, alice: dict[str, str]
) -> None:
    client.get("/api/v1/toolboxes", headers=bearer(alice["token"]))
    row = db.scalar(select(ApiToken).where(ApiToken.user_id == alice["id"]))
    assert row is not None and row.last_used_at is not None
    first = row.last_used_at
    client.get("/api/v1/toolboxes", headers=bearer(alice["token"]))
    db.expire_all()
    assert row.last_used_at == first
    row.last_used_at = first - timedelta(minutes=2)
    db.commit()
    client.get("/api/v1/toolboxes", headers=bearer(alice["token"]))
    db.expire_all()
    assert row.last_used_at is not None and row.last_used_at > first


@contextmanager
def _signed_in_browser(base_url: str, token: str) -> Iterator[httpx.Client]:
    """A browser's cookie jar signed in through the login form with `token`."""
    with httpx.Client(base_url=base_url, follow_redirects=False) as browser:
        form = browser.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf is not None
        answer = browser.post("/login", data={"token": token, "csrf_token": csrf.group(1)})
        assert answer.status_code == 303, answer.text
        assert browser.get("/toolboxes").status_code == 200
        yield browser


def test_revoked_and_expired_tokens_end_their_web_sessions(
    client: httpx.Client, db: Session, alice: dict[str, str]
) -> None:
    base_url = str(client.base_url)
    short = new_token(client, alice, "1h")
    with _signed_in_browser(base_url, alice["token"]) as browser:
        token_id = db.scalar(
            select(ApiToken.id).where(ApiToken.user_id == alice["id"], ApiToken.id != short["id"])
        )
        assert db.scalar(select(WebSession).where(WebSession.api_token_id == token_id))
        client.post(f"/api/v1/tokens/{token_id}/revoke", headers=bearer(alice["token"]))
        page = browser.get("/toolboxes")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        db.expire_all()
        assert db.scalar(select(WebSession).where(WebSession.api_token_id == token_id)) is None

    with _signed_in_browser(base_url, short["token"]) as browser:
        session_row = db.scalar(select(WebSession).where(WebSession.api_token_id == short["id"]))
        assert session_row is not None  # the session lives no longer than its token
        assert session_row.expires_at <= _time(short["expires_at"])
        row = db.get(ApiToken, short["id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.commit()
        assert browser.get("/toolboxes").status_code == 303


def new_token(client: httpx.Client, who: dict[str, str], lifetime: str) -> dict[str, Any]:
    """A fresh token of `who`'s, made through the API (the caller's first token stays)."""
    made = client.post(
        "/api/v1/tokens", headers=bearer(who["token"]), json={"expires_in": lifetime}
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)
