"""JWTs (Supabase shape) mapped safely: `iss` and `aud` required and checked, external
identities kept apart (issuer + subject) and never landing on a local or admin user, and
droplet owner tags naming user ids, not names. Empty fleet."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from api.models import ExternalIdentity, Toolbox, User
from api.secret_box import SecretBox
from api.settings import Settings
from tests.api.conftest import JWT_ISSUER, SeededEmulator, seeded_droplet
from tests.api.test_auth import jwt_for


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_jwt_secret_without_issuer_or_audience_refuses_to_start() -> None:
    for missing in ("jwt_issuer", "jwt_audience"):
        values = {"jwt_secret": "s" * 32, "jwt_issuer": JWT_ISSUER, "jwt_audience": "authenticated"}
        del values[missing]
        with pytest.raises(ValidationError, match="DTMA_JWT_SECRET needs DTMA_JWT_ISSUER and"):
            Settings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"iss": None}, 'Token is missing the "iss" claim'),
        ({"aud": None}, 'Token is missing the "aud" claim'),
        ({"iss": "https://elsewhere.example.test/auth/v1"}, "Invalid issuer"),
        ({"aud": "anon"}, "Audience doesn't match"),
    ],
)
def test_jwts_without_the_configured_issuer_and_audience_get_401(
    client: httpx.Client, db: Session, claims: dict[str, object], message: str
) -> None:
    answer = client.get("/api/v1/toolboxes", headers=bearer(jwt_for("someone", **claims)))
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert message in answer.json()["error"]["message"]
    assert db.scalar(select(ExternalIdentity)) is None  # nobody was provisioned


def test_a_subject_naming_a_local_admin_gets_a_regular_user_of_its_own(
    client: httpx.Client,
    db: Session,
    secrets: SecretBox,
    admin: dict[str, str],
    alice: dict[str, str],
) -> None:
    toolbox = Toolbox(droplet_id=7, name="toolbox-a", owner_id=alice["id"])
    secrets.seal_into(toolbox, Toolbox.agent_token_ciphertext, "t")
    db.add(toolbox)
    db.commit()
    # The identity provider's subjects are its own: one equal to a local id means nothing.
    as_root_sub = bearer(jwt_for(admin["id"], email="root"))
    assert client.post("/api/v1/toolboxes/sync", headers=as_root_sub).status_code == 403
    as_alice_sub = bearer(jwt_for(alice["id"], email="alice"))
    assert client.get("/api/v1/toolboxes", headers=as_alice_sub).json() == []
    assert client.get(f"/api/v1/toolboxes/{toolbox.id}", headers=as_alice_sub).status_code == 404

    identities = {(i.issuer, i.subject): i for i in db.scalars(select(ExternalIdentity))}
    assert set(identities) == {(JWT_ISSUER, admin["id"]), (JWT_ISSUER, alice["id"])}
    external = {identity.user_id for identity in identities.values()}
    assert not external & {admin["id"], alice["id"]}
    users = {u.id: u for u in db.scalars(select(User))}
    assert {users[i].name for i in external} == {"ext:root", "ext:alice"}
    assert not any(users[i].is_admin for i in external)
    assert users[admin["id"]].name == "root" and users[admin["id"]].is_admin

    again = client.get("/api/v1/tokens", headers=as_alice_sub)  # the same identity again
    assert again.status_code == 200
    db.expire_all()
    assert len(list(db.scalars(select(ExternalIdentity)))) == 2


@pytest.fixture
def app(settings: Settings, do_emulator: SeededEmulator) -> FastAPI:
    configured = settings.model_copy(
        update={"do_api_url": do_emulator.url, "do_api_token": SecretStr(do_emulator.token)}
    )
    return create_app(configured)


def test_owner_tags_name_user_ids_not_display_names(
    client: httpx.Client,
    db: Session,
    admin: dict[str, str],
    alice: dict[str, str],
    do_emulator: SeededEmulator,
) -> None:
    # A JWT user whose e-mail reads "alice" cannot claim the droplets tagged for alice.
    jwt_alice = bearer(jwt_for("idp-subject-1", email="alice"))
    assert client.get("/api/v1/toolboxes", headers=jwt_alice).status_code == 200
    do_emulator.seed(
        [
            seeded_droplet(1, ["dtma", f"dtma-owner:{alice['id']}"]),
            seeded_droplet(2, ["dtma", "dtma-owner:alice"]),
            seeded_droplet(3, ["dtma", "dtma-owner:ext:alice"]),
        ]
    )
    synced = client.post("/api/v1/toolboxes/sync", headers=bearer(admin["token"]))
    assert synced.status_code == 200, synced.text
    owners = {t.name: t.owner_id for t in db.scalars(select(Toolbox))}
    assert owners == {"toolbox-1": alice["id"], "toolbox-2": None, "toolbox-3": None}
    mine = client.get("/api/v1/toolboxes", headers=bearer(alice["token"])).json()
    assert [t["name"] for t in mine] == ["toolbox-1"]
    assert client.get("/api/v1/toolboxes", headers=jwt_alice).json() == []
