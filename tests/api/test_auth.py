"""Authentication and ownership: tokens, JWTs, owners, admins."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import hash_token
from api.models import ApiToken, Toolbox
from api.secret_box import SecretBox
from tests.api.conftest import JWT_AUDIENCE, JWT_ISSUER

SECRET = "test-jwt-secret-0123456789abcdef"


def jwt_for(subject: str, *, expires_in: int = 300, secret: str = SECRET, **more: object) -> str:
    """A Supabase-shaped JWT with the issuer and audience the test console checks."""
    claims = {
        "sub": subject,
        "exp": int(time.time()) + expires_in,
        "role": "authenticated",
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        **more,
    }
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, "HS256")


@pytest.fixture
def alices_toolbox(db: Session, secrets: SecretBox, alice: dict[str, str]) -> str:
    toolbox = Toolbox(
        droplet_id=101,
        name="toolbox-a",
        owner_id=alice["id"],
    )
    secrets.seal_into(toolbox, Toolbox.agent_token_ciphertext, "agent-token")
    db.add(toolbox)
    db.commit()
    return toolbox.id


def test_api_tokens_are_stored_only_as_hashes(db: Session, alice: dict[str, str]) -> None:
    rows = list(db.scalars(select(ApiToken).where(ApiToken.user_id == alice["id"])))
    assert [row.token_hash for row in rows] == [hash_token(alice["token"])]
    assert all(alice["token"] not in row.token_hash for row in rows)


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing bearer token"),
        ("Bearer", "expected 'Authorization: Bearer <token>'"),
        ("Basic YWxpY2U6eA==", "expected 'Authorization: Bearer <token>'"),
        ("Bearer dtma_not-a-real-token", "invalid API token"),
        ("Bearer a.b.c", "invalid token"),
    ],
)
def test_missing_or_bad_credentials_get_401(
    client: httpx.Client, authorization: str | None, message: str
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.get("/api/v1/toolboxes", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert message in response.json()["error"]["message"]
    assert response.headers["www-authenticate"] == "Bearer"


def test_expired_and_forged_jwts_get_401(client: httpx.Client, alice: dict[str, str]) -> None:
    expired = client.get(
        "/api/v1/toolboxes",
        headers={"Authorization": f"Bearer {jwt_for(alice['id'], expires_in=-5)}"},
    )
    assert expired.status_code == 401
    assert expired.json()["error"]["message"] == "token expired"
    assert expired.json()["error"]["code"] == "token_expired"
    forged = jwt_for(alice["id"], secret="another-secret-0123456789abcdef0")
    response = client.get("/api/v1/toolboxes", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert "Signature verification failed" in response.json()["error"]["message"]
    no_exp = jwt_for(alice["id"], exp=None)
    response = client.get("/api/v1/toolboxes", headers={"Authorization": f"Bearer {no_exp}"})
    assert response.status_code == 401
    assert "exp" in response.json()["error"]["message"]


def test_owner_sees_own_toolbox_with_token(
    client: httpx.Client, alice: dict[str, str], alices_toolbox: str
) -> None:
    auth = {"Authorization": alice["auth"]}
    listed = client.get("/api/v1/toolboxes", headers=auth)
    assert [t["id"] for t in listed.json()] == [alices_toolbox]
    detail = client.get(f"/api/v1/toolboxes/{alices_toolbox}", headers=auth)
    assert detail.status_code == 200
    assert detail.json()["name"] == "toolbox-a"
    assert "agent-token" not in detail.text and "agent_token" not in detail.text


def test_other_users_get_404_and_admins_see_everything(
    client: httpx.Client,
    alice: dict[str, str],
    bob: dict[str, str],
    admin: dict[str, str],
    alices_toolbox: str,
) -> None:
    as_bob = {"Authorization": bob["auth"]}
    assert client.get("/api/v1/toolboxes", headers=as_bob).json() == []
    response = client.get(f"/api/v1/toolboxes/{alices_toolbox}", headers=as_bob)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "toolbox_not_found"
    as_admin = {"Authorization": admin["auth"]}
    assert [t["id"] for t in client.get("/api/v1/toolboxes", headers=as_admin).json()] == [
        alices_toolbox
    ]
    assert client.get(f"/api/v1/toolboxes/{alices_toolbox}", headers=as_admin).status_code == 200


def test_non_admins_get_403_on_admin_routes(
    client: httpx.Client,
    db: Session,
    alice: dict[str, str],
    bob: dict[str, str],
    admin: dict[str, str],
    alices_toolbox: str,
) -> None:
    as_alice = {"Authorization": alice["auth"]}
    response = client.post("/api/v1/toolboxes/sync", headers=as_alice)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    response = client.patch(
        f"/api/v1/toolboxes/{alices_toolbox}", headers=as_alice, json={"owner": "bob"}
    )
    assert response.status_code == 403
    db.expire_all()
    assert db.get(Toolbox, alices_toolbox).owner_id == alice["id"]  # type: ignore[union-attr]
    response = client.patch(
        f"/api/v1/toolboxes/{alices_toolbox}",
        headers={"Authorization": admin["auth"]},
        json={"owner": "bob"},
    )
    assert response.status_code == 200
    assert response.json()["owner_id"] == bob["id"]
    assert client.get(f"/api/v1/toolboxes/{alices_toolbox}", headers=as_alice).status_code == 404
