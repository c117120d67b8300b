"""Who may see and do what with keys, and bad input: no sandbox needed (nothing here gets as
far as a droplet)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.context import Context
from api.db import session_scope
from api.models import AuditEntry, Toolbox
from api.services import users
from api.settings import Settings
from api.vault.crypto import generate_master_key
from tests.api.server import live_server


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'console.db'}", master_key=generate_master_key()
        )
    )


@pytest.fixture
def client(app: FastAPI) -> Iterator[httpx.Client]:
    with live_server(app) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
        yield http


@pytest.fixture
def people(app: FastAPI, client: httpx.Client) -> dict[str, Any]:
    """An admin, the owner of toolbox-5 and another user, with tokens; the toolbox's id."""
    context: Context = app.state.context
    with session_scope(context.sessions) as session:
        _, admin = users.create_token(session, "root", admin=True)
        owner, owner_token = users.create_token(session, "alice", admin=False)
        _, other = users.create_token(session, "bob", admin=False)
        toolbox = Toolbox(droplet_id=5, name="toolbox-5", owner_id=owner.id, address="127.0.25.250")
        context.secrets.seal_into(toolbox, Toolbox.agent_token_ciphertext, "agent-token")
        session.add(toolbox)
        session.flush()
        toolbox_id = toolbox.id
    return {
        "admin": {"Authorization": f"Bearer {admin}"},
        "owner": {"Authorization": f"Bearer {owner_token}"},
        "other": {"Authorization": f"Bearer {other}"},
        "toolbox": toolbox_id,
        "context": context,
    }


def test_owner_sees_key_metadata_others_do_not(
    client: httpx.Client, people: dict[str, Any]
) -> None:
    url = f"/api/v1/toolboxes/{people['toolbox']}/ssh-key"
    owned = client.get(url, headers=people["owner"])
    assert owned.status_code == 200
    assert owned.json() == {
        "toolbox_id": people["toolbox"], "source": "bootstrap", "fingerprint": None,
        "created_at": None, "rotated_at": None, "keys": [],
    }  # fmt: skip
    assert client.get(url, headers=people["admin"]).status_code == 200
    assert client.get(url, headers=people["other"]).status_code == 404
    assert client.get(url).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "host-key", None),
        ("post", "host-key/accept", {"fingerprint": "SHA256:" + "A" * 43}),
        ("post", "ssh-key/revoke", None),
    ],
)
def test_host_key_and_revoke_are_for_admins_only(
    client: httpx.Client, people: dict[str, Any], method: str, path: str, body: Any
) -> None:
    url = f"/api/v1/toolboxes/{people['toolbox']}/{path}"
    as_owner = client.request(method, url, headers=people["owner"], json=body)
    assert as_owner.status_code == 403, as_owner.text
    assert client.request(method, url, headers=people["other"], json=body).status_code == 404


def test_rotation_of_someone_elses_toolbox_is_not_found(
    client: httpx.Client, people: dict[str, Any]
) -> None:
    url = f"/api/v1/toolboxes/{people['toolbox']}/ssh-key/rotate"
    refused = client.post(url, headers=people["other"])
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "toolbox_not_found"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"fingerprint": "MD5:aa:bb"},
        {"fingerprint": "SHA256:{{ lookup('pipe', 'id') }}"},
        {"fingerprint": "SHA256:" + "A" * 43, "extra": 1},
    ],
)
def test_accept_refuses_bad_input_naming_the_field_and_changes_nothing(
    client: httpx.Client, people: dict[str, Any], body: dict[str, Any]
) -> None:
    url = f"/api/v1/toolboxes/{people['toolbox']}/host-key/accept"
    refused = client.post(url, headers=people["admin"], json=body)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["field"] in ("fingerprint", "extra")
    pinned = client.get(f"/api/v1/toolboxes/{people['toolbox']}/host-key", headers=people["admin"])
    assert pinned.json()["pinned"] == []


def test_accept_fails_cleanly_and_audited_when_the_droplet_does_not_answer(
    client: httpx.Client, people: dict[str, Any]
) -> None:
    # 127.0.25.250 is a loopback address nobody listens on.
    url = f"/api/v1/toolboxes/{people['toolbox']}/host-key/accept"
    failed = client.post(url, headers=people["admin"], json={"fingerprint": "SHA256:" + "A" * 43})
    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "host_key_scan_failed"
    assert "offered no SSH host key" in failed.json()["error"]["message"]
    with session_scope(people["context"].sessions) as session:
        entry = session.query(AuditEntry).filter_by(action="toolbox.host_key.accept").one()
        assert (entry.outcome, entry.actor) == ("failed", "root")


def test_bootstrap_without_an_operator_key_is_refused_before_anything_happens(
    client: httpx.Client, people: dict[str, Any]
) -> None:
    refused = client.post(
        f"/api/v1/toolboxes/{people['toolbox']}/ssh-key/rotate", headers=people["owner"]
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "no_bootstrap_key"
    assert "DTMA_SSH_KEY_FILE" in refused.json()["error"]["message"]
    detail = client.get(f"/api/v1/toolboxes/{people['toolbox']}/host-key", headers=people["admin"])
    assert detail.json()["pinned"] == []
    keys = client.get(f"/api/v1/toolboxes/{people['toolbox']}/ssh-key", headers=people["owner"])
    assert keys.json()["keys"] == []
