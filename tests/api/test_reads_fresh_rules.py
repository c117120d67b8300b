"""The rules of a fresh read, without a fleet: a toolbox whose last live answer is stored on
its row and that has no address (a live read can only fail). A fresh answer comes from the
row as it is; never while a run holds the toolbox nor once a run has ended since it was
observed (the row's run_ended_at, stamped by run_store); and it is served only to a caller
who is let in at that moment: a revoked token is refused at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from api.models import Run, Toolbox, utcnow
from api.secret_box import SecretBox
from api.services import run_store
from api.settings import Settings

STATUS = {"version": "1.3.0", "docker": "running"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"read_fresh_seconds": 30.0})


def observed_toolbox(db: Session, secrets: SecretBox, owner_id: str) -> Toolbox:
    """A toolbox whose agent answered just now (as a live read records it)."""
    row = Toolbox(droplet_id=301, name="toolbox-fresh", owner_id=owner_id, address=None)
    secrets.seal_into(row, Toolbox.agent_token_ciphertext, "agent-token")
    stamp = {"source": "agent", "observed_at": utcnow().isoformat()}
    row.last_state = {"status": {**stamp, "data": STATUS}}
    db.add(row)
    db.commit()
    return row


def status(client: httpx.Client, toolbox_id: str, auth: str) -> dict[str, Any]:
    answer = client.get(
        f"/api/v1/toolboxes/{toolbox_id}/dtma/status", headers={"Authorization": auth}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_fresh_answer_is_never_served_while_a_run_holds_the_toolbox_or_after_it_ends(
    client: httpx.Client, db: Session, secrets: SecretBox, alice: dict[str, str]
) -> None:
    toolbox = observed_toolbox(db, secrets, alice["id"])
    fresh = status(client, toolbox.id, alice["auth"])
    assert (fresh["source"], fresh["cached"], fresh["stale"]) == ("agent", True, False)
    assert fresh["data"] == STATUS and 0 <= fresh["age_ms"] < 30_000

    run = Run(
        toolbox_id=toolbox.id, user_id=alice["id"], action="dtma.restart", playbook="x",
        status="running", started_at=utcnow(),
    )  # fmt: skip
    db.add(run)
    db.flush()
    toolbox.active_run_id = run.id  # the run holds the lock (run_store takes it so)
    db.commit()
    during = status(client, toolbox.id, alice["auth"])
    assert (during["source"], during["cached"], during["stale"]) == ("cache", False, True)

    # The run ends (here written off as interrupted: run_store frees the lock and stamps it).
    run_store.interrupt(db, [run], "gone", "its executor is gone")
    db.commit()
    db.refresh(toolbox)
    assert toolbox.active_run_id is None and toolbox.run_ended_at is not None
    after = status(client, toolbox.id, alice["auth"])
    # Observed before the run's end: told as the stored answer, not as a fresh live one.
    assert (after["source"], after["cached"], after["stale"]) == ("cache", False, True)
    assert after["data"] == STATUS


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_revoked_token_is_refused_at_once_even_with_a_fresh_answer(
    client: httpx.Client,
    db: Session,
    secrets: SecretBox,
    alice: dict[str, str],
    bob: dict[str, str],
) -> None:
    toolbox = observed_toolbox(db, secrets, alice["id"])
    made = client.post("/api/v1/tokens", headers={"Authorization": alice["auth"]}, json={})
    assert made.status_code == 201, made.text
    token = f"Bearer {made.json()['token']}"
    assert status(client, toolbox.id, token)["cached"] is True
    revoked = client.post(
        f"/api/v1/tokens/{made.json()['id']}/revoke", headers={"Authorization": alice["auth"]}
    )
    assert revoked.status_code == 200, revoked.text
    refused = client.get(
        f"/api/v1/toolboxes/{toolbox.id}/dtma/status", headers={"Authorization": token}
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "token_revoked"
    # Someone else's toolbox is not found on the read path, fresh answer or not.
    theirs = client.get(
        f"/api/v1/toolboxes/{toolbox.id}/dtma/status", headers={"Authorization": bob["auth"]}
    )
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "toolbox_not_found"
