"""Bounded load per user, answered 429 with a stable code and Retry-After: runs in flight
per user (DTMA_MAX_RUNS_PER_USER), SSH-probe fallbacks on their own bounded pool so that a
flood of reads of unreachable toolboxes never stalls authentication, and followed log
streams per user and in all. Empty fleet: the unreachable toolbox is a loopback address
whose port 22 accepts and never speaks (a tarpit), with nothing on the agent's port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.app import create_app
from api.context import Context
from api.errors import TooManyRequests
from api.models import Run, Toolbox
from api.secret_box import SecretBox
from api.services.limits import FollowSlots
from api.settings import Settings
from api.vault.models import ToolboxHostKey
from tests.api.console import wait_until

TARPIT = "127.0.79.201"  # in slot 1's loopback range; nothing else listens there


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(
        settings.model_copy(
            update={
                "max_runs_per_user": 2,
                "ssh_probe_concurrency": 2,
                "ssh_probe_timeout": 4.0,
                "ssh_keyscan_timeout": 1,
                "agent_timeout": 1.0,
            }
        )
    )


def toolbox(
    db: Session, secrets: SecretBox, owner_id: str, droplet_id: int, address: str | None = None
) -> Toolbox:
    row = Toolbox(
        droplet_id=droplet_id,
        name=f"toolbox-{droplet_id}",
        owner_id=owner_id,
        address=address,
    )
    secrets.seal_into(row, Toolbox.agent_token_ciphertext, "agent-token")
    db.add(row)
    db.commit()
    return row


def in_flight_run(db: Session, user_id: str, toolbox_id: str, status: str) -> Run:
    run = Run(
        toolbox_id=toolbox_id, user_id=user_id, action="tool.restart", playbook="x", status=status
    )
    db.add(run)
    db.commit()
    return run


def test_a_user_with_max_runs_in_flight_gets_429_and_nothing_starts(
    client: httpx.Client,
    db: Session,
    secrets: SecretBox,
    alice: dict[str, str],
    bob: dict[str, str],
) -> None:
    mine = toolbox(db, secrets, alice["id"], 1)
    elsewhere = toolbox(db, secrets, alice["id"], 2)
    running = in_flight_run(db, alice["id"], elsewhere.id, "running")
    in_flight_run(db, alice["id"], elsewhere.id, "queued")
    # Another user's run holds the toolbox: a start that passes the cap meets the lock.
    mine.active_run_id = in_flight_run(db, bob["id"], mine.id, "running").id
    db.commit()
    runs_before = db.scalar(select(func.count()).select_from(Run))

    auth = {"Authorization": alice["auth"]}
    refused = client.post(f"/api/v1/toolboxes/{mine.id}/tools/echo/restart", headers=auth)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "too_many_runs"
    assert refused.json()["error"]["limit"] == 2
    assert refused.headers["retry-after"].isdigit()
    compat = client.post(
        "/functions/v1/toolbox-tools",
        headers=auth,
        json={"toolboxId": mine.id, "action": "restart", "instanceId": "echo"},
    )
    assert compat.status_code == 429
    assert (compat.json()["success"], compat.json()["code"]) == (False, "too_many_runs")
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Run)) == runs_before

    running.status = "successful"  # one of alice's runs ended: she is under the cap again
    db.commit()
    passed = client.post(f"/api/v1/toolboxes/{mine.id}/tools/echo/restart", headers=auth)
    assert passed.status_code == 409 and passed.json()["error"]["code"] == "toolbox_busy"


@pytest.fixture
def tarpit() -> Iterator[str]:
    """TARPIT:22 accepts connections and never sends an SSH banner."""
    listener = socket.create_server((TARPIT, 22))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield TARPIT
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()


def test_a_flood_of_reads_of_unreachable_toolboxes_cannot_stall_authentication(
    client: httpx.Client,
    context: Context,
    db: Session,
    secrets: SecretBox,
    alice: dict[str, str],
    admin: dict[str, str],
    tarpit: str,
) -> None:
    dead = toolbox(db, secrets, alice["id"], 3, address=tarpit)
    # Pinned already (a toolbox the console knows): no first-contact key scan on reads.
    db.add(
        ToolboxHostKey(
            toolbox_id=dead.id, state="pinned", key_type="ssh-ed25519",
            public_key="AAAAC3NzaC1lZDI1NTE5AAAAIBmXcDmmjZAdtRbEUaNqUoVEPbRc9XdnSBdAXKC1n3Oo",
            fingerprint="SHA256:test", recorded_by="test",
        )
    )  # fmt: skip
    db.commit()
    url = f"/api/v1/toolboxes/{dead.id}/dtma/status"
    auth = {"Authorization": alice["auth"]}
    with ThreadPoolExecutor(50) as flood:
        hanging = [flood.submit(client.get, url, headers=auth) for _ in range(2)]
        wait_until(lambda: context.probes.busy == 2 or None, 30, "two SSH probes in flight")
        refused = [flood.submit(client.get, url, headers=auth) for _ in range(45)]
        # While the flood is refused and two probes hang, another caller is let in.
        tokens = client.get("/api/v1/tokens", headers={"Authorization": admin["auth"]})
        assert tokens.status_code == 200
        assert context.probes.busy == 2  # ... before either hanging probe gave up
        answers = [future.result() for future in refused]
        assert context.probes.busy == 2
        assert {a.status_code for a in answers} == {429}
        assert {a.json()["error"]["code"] for a in answers} == {"ssh_probes_busy"}
        assert all(a.headers["retry-after"].isdigit() for a in answers)
        ended = [future.result() for future in hanging]
    # The two that got a probe waited it out and say so; nothing was served as live.
    assert {a.status_code for a in ended} == {502}
    assert {a.json()["error"]["code"] for a in ended} == {"toolbox_unreachable"}, ended[0].text


def test_follow_slots_cap_each_user_and_everyone() -> None:
    slots = FollowSlots()
    alice = [slots.take("alice", per_user=2, overall=3) for _ in range(2)]
    with pytest.raises(TooManyRequests) as mine:
        slots.take("alice", per_user=2, overall=3)
    assert (mine.value.code, mine.value.status, mine.value.extra["limit"]) == (
        "too_many_follows", 429, 2,
    )  # fmt: skip
    bob = slots.take("bob", per_user=2, overall=3)
    with pytest.raises(TooManyRequests) as everyone:
        slots.take("carol", per_user=2, overall=3)
    assert everyone.value.code == "follows_exhausted"
    alice[0]()
    alice[0]()  # a second release of the same slot changes nothing
    assert slots.open_for("alice") == 1
    slots.take("carol", per_user=2, overall=3)
    bob()
    assert slots.open_for("bob") == 0
