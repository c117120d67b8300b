"""Importing toolboxes from the DigitalOcean API (the sandbox's emulator, seeded)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from api.models import Toolbox
from api.settings import Settings
from tests.api.conftest import SeededEmulator, seeded_droplet
from tests.api.server import live_server


@pytest.fixture
def app(settings: Settings, do_emulator: SeededEmulator) -> FastAPI:
    configured = settings.model_copy(
        update={"do_api_url": do_emulator.url, "do_api_token": SecretStr(do_emulator.token)}
    )
    return create_app(configured)


def test_sync_follows_pages_imports_only_tagged_droplets_and_marks_vanished_ones(
    client: httpx.Client,
    db: Session,
    admin: dict[str, str],
    alice: dict[str, str],
    do_emulator: SeededEmulator,
) -> None:
    droplets = [seeded_droplet(i, ["dtma"] if i % 3 else ["other"]) for i in range(1, 451)]
    droplets[0]["tags"] = ["dtma", f"dtma-owner:{alice['id']}"]
    do_emulator.seed(droplets)
    auth = {"Authorization": admin["auth"]}
    report = client.post("/api/v1/toolboxes/sync", headers=auth).json()
    tagged = {d["name"] for d in droplets if "dtma" in d["tags"]}
    assert len(tagged) > 200  # more than one page of 200
    assert set(report["created"]) == tagged and report["removed"] == []
    assert {t["name"] for t in report["toolboxes"]} == tagged
    owned = client.get("/api/v1/toolboxes", headers={"Authorization": alice["auth"]}).json()
    assert [(t["name"], t["address"], t["region"]) for t in owned] == [
        ("toolbox-1", "127.0.99.2", "fra1")
    ]

    do_emulator.seed([d for d in droplets if d["name"] != "toolbox-2"])
    again = client.post("/api/v1/toolboxes/sync", headers=auth).json()
    assert again["created"] == [] and again["removed"] == ["toolbox-2"]
    assert "toolbox-2" not in {t["name"] for t in again["toolboxes"]}
    everything = client.get(
        "/api/v1/toolboxes", params={"include_removed": True}, headers=auth
    ).json()
    gone = next(t for t in everything if t["name"] == "toolbox-2")
    assert gone["removed_at"] is not None and gone["droplet_status"] == "removed"
    tokens = {t.name: t.agent_token_ciphertext for t in db.scalars(select(Toolbox))}
    assert len(set(tokens.values())) == len(tokens)  # one agent token per toolbox


def test_sync_with_a_wrong_digitalocean_token_is_502_and_changes_nothing(
    settings: Settings,
    do_emulator: SeededEmulator,
    admin: dict[str, str],
    db: Session,
) -> None:
    do_emulator.seed([seeded_droplet(1, ["dtma"])])
    wrong = settings.model_copy(
        update={"do_api_url": do_emulator.url, "do_api_token": SecretStr("not-the-token")}
    )
    with live_server(create_app(wrong)) as url:
        response = httpx.post(
            f"{url}/api/v1/toolboxes/sync", headers={"Authorization": admin["auth"]}
        )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "digitalocean_error"
    assert "401" in response.json()["error"]["message"]
    assert db.scalars(select(Toolbox)).all() == []
