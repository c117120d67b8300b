"""The key vault on the sandbox fleet, over HTTP, checked on the droplets themselves:
bootstrap to per-toolbox keys, rotation, a rotation that fails midway, a replaced host
key, master-key rotation, and no private key anywhere it must not be."""

from __future__ import annotations

import base64
import re
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from api.models import AuditEntry, Toolbox
from api.secret_box import column_binding
from api.vault import sealed
from api.vault.crypto import Keyring, generate_master_key
from api.vault.sshkeys import key_material
from runner.redact import secret_fragments
from sandbox.fleet import SandboxInfo
from tests.api.console import CLI, docker_exec, wait_until
from tests.vault.conftest import VaultConsole, close_control_masters, ssh_login

pytestmark = pytest.mark.sandbox

PEM_HEADER = b"-----BEGIN OPENSSH PRIVATE KEY-----"
ABSENT_TOOL = "vault-absent"


def authorized_blobs(container: str) -> list[str]:
    content = docker_exec(container, "cat", "/root/.ssh/authorized_keys")
    return re.findall(r"AAAA[0-9A-Za-z+/]+={0,2}", content)


def blob(public_key: str) -> str:
    return key_material(public_key).split()[1]


def droplet_host_key_fingerprints(container: str) -> set[str]:
    listing = docker_exec(
        container, "sh", "-c", "for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf $f; done"
    )
    return {line.split()[1] for line in listing.splitlines()}


def rotate(served: VaultConsole, name: str) -> tuple[int, dict[str, Any]]:
    with served.console.http(timeout=900) as http:
        response = http.post(f"/api/v1/toolboxes/{served.toolboxes[name]['id']}/ssh-key/rotate")
    return response.status_code, response.json()


def reach(served: VaultConsole, name: str) -> dict[str, Any]:
    """An action that needs an SSH login: restarting a tool that does not exist fails in
    the role ("not found") when the run got in, and is `unreachable` when it did not."""
    with served.console.http(timeout=900) as http:
        toolbox_id = served.toolboxes[name]["id"]
        response = http.post(f"/api/v1/toolboxes/{toolbox_id}/tools/{ABSENT_TOOL}/restart")
    result: dict[str, Any] = response.json()
    # Got in: the role's "not found" is the caller's fault (404); did not: a gateway's (502).
    expected = 404 if result.get("error_code") == "tool_not_found" else 502
    assert response.status_code == expected, result
    return result


def assert_reached(result: dict[str, Any], name: str) -> None:
    assert result["status"] == "failed", result
    assert f"tool instance '{ABSENT_TOOL}' not found on {name}" in result["error"]


def key_rows(served: VaultConsole, name: str) -> list[tuple[str, str, str, str | None]]:
    return [(k.id, k.state, k.fingerprint, k.private_key_sealed) for k in served.keys(name)]


def test_first_contact_pins_the_host_keys_the_droplet_offers(
    vault_console: VaultConsole, sandbox: SandboxInfo
) -> None:
    # First in the module, before any toolbox has its own key. The first SSH contact (the
    # sync's state probe when no agent answers, else this action) records the host keys.
    droplet = sandbox.droplets[0]
    toolbox_id = vault_console.toolboxes[droplet.name]["id"]

    # An action before the toolbox has its own key: it gets in with the operator key, and
    # with strict checking against the recorded keys.
    assert_reached(reach(vault_console, droplet.name), droplet.name)

    with vault_console.console.http() as http:
        after = http.get(f"/api/v1/toolboxes/{toolbox_id}/host-key").json()
    assert {k["fingerprint"] for k in after["pinned"]} == droplet_host_key_fingerprints(
        droplet.container
    )
    assert {k["recorded_by"] for k in after["pinned"]} == {"trust-on-first-use"}
    engine = vault_console.engine()
    with Session(engine) as session:
        pins = list(session.scalars(select(AuditEntry).where(
            AuditEntry.toolbox_id == toolbox_id, AuditEntry.action == "toolbox.host_key.pin"
        )))  # fmt: skip
    engine.dispose()
    assert [(e.actor, e.outcome) for e in pins] == [("system", "successful")]
    assert set(pins[0].parameters["fingerprints"]) == {k["fingerprint"] for k in after["pinned"]}


@pytest.fixture(scope="module")
def bootstrapped(vault_console: VaultConsole) -> dict[str, dict[str, Any]]:
    """Every toolbox given its own key through the API (in parallel, one per toolbox)."""
    names = sorted(vault_console.toolboxes)
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        answers = dict(zip(names, pool.map(lambda n: rotate(vault_console, n), names), strict=True))
    for name, (status, body) in answers.items():
        assert status == 200, (name, body)
        vault_console.active_private_key(name)  # remembered for the leak checks
    return {name: body for name, (_, body) in answers.items()}


def test_bootstrap_gives_every_toolbox_its_own_key_and_removes_the_operator_key(
    vault_console: VaultConsole,
    bootstrapped: dict[str, dict[str, Any]],
    sandbox: SandboxInfo,
    tmp_path: Path,
) -> None:
    operator_key = sandbox.operator_key.read_text()
    operator_key_public = sandbox.operator_key.with_suffix(".pub").read_text()
    for droplet in sandbox.droplets:
        outcome = bootstrapped[droplet.name]
        assert (outcome["operation"], outcome["success"]) == ("ssh_key.bootstrap", True)
        assert [r["action"] for r in outcome["runs"]] == ["ssh_key.authorize", "ssh_key.rotate"]
        with vault_console.console.http() as http:
            access = http.get(
                f"/api/v1/toolboxes/{vault_console.toolboxes[droplet.name]['id']}/ssh-key"
            ).json()
        assert (access["source"], access["fingerprint"]) == ("toolbox", outcome["fingerprint"])
        active = next(k for k in access["keys"] if k["state"] == "active")
        # On the droplet: the toolbox's own key is authorized, the operator key is not.
        present = authorized_blobs(droplet.container)
        assert blob(active["public_key"]) in present
        assert blob(operator_key_public) not in present
        pins = vault_console.pinned_known_hosts(droplet.name)
        own = ssh_login(
            droplet.address, vault_console.active_private_key(droplet.name), pins, tmp_path
        )
        assert own.returncode == 0 and own.stdout.strip() == "logged-in", own.stderr
        operator = ssh_login(droplet.address, operator_key, pins, tmp_path)
        assert operator.returncode == 255 and "Permission denied" in operator.stderr
        # The pinned host keys are the droplet's real ones (trust on first use).
        with vault_console.console.http() as http:
            host_keys = http.get(
                f"/api/v1/toolboxes/{vault_console.toolboxes[droplet.name]['id']}/host-key"
            ).json()
        pinned = {k["fingerprint"] for k in host_keys["pinned"]}
        assert pinned == droplet_host_key_fingerprints(droplet.container)
        assert {k["recorded_by"] for k in host_keys["pinned"]} == {"trust-on-first-use"}


def test_console_actions_reach_each_toolbox_with_its_own_key(
    vault_console: VaultConsole, bootstrapped: dict[str, dict[str, Any]], sandbox: SandboxInfo
) -> None:
    # Only the toolbox's key is authorized on the droplet (previous test), and the inventory
    # names no key file: a run that gets in used the key the vault handed it.
    for droplet in sandbox.droplets:
        assert_reached(reach(vault_console, droplet.name), droplet.name)


def test_rotation_leaves_only_the_new_key_working(
    vault_console: VaultConsole, bootstrapped: dict[str, dict[str, Any]], sandbox: SandboxInfo,
    tmp_path: Path,
) -> None:  # fmt: skip
    droplet = sandbox.droplet("toolbox-1")
    old_private = vault_console.active_private_key("toolbox-1")
    old_fingerprint = next(
        k.fingerprint for k in vault_console.keys("toolbox-1") if k.state == "active"
    )

    status, outcome = rotate(vault_console, "toolbox-1")

    assert status == 200, outcome
    assert outcome["operation"] == "ssh_key.rotate"
    assert outcome["previous_fingerprint"] == old_fingerprint
    assert outcome["active_fingerprint"] == outcome["fingerprint"] != old_fingerprint
    new_private = vault_console.active_private_key("toolbox-1")
    pins = vault_console.pinned_known_hosts("toolbox-1")
    refused = ssh_login(droplet.address, old_private, pins, tmp_path)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    accepted = ssh_login(droplet.address, new_private, pins, tmp_path)
    assert accepted.returncode == 0, accepted.stderr
    active = [k for k in vault_console.keys("toolbox-1") if k.state == "active"]
    present = authorized_blobs(droplet.container)
    assert blob(active[0].public_key) in present
    retired = next(k for k in vault_console.keys("toolbox-1") if k.fingerprint == old_fingerprint)
    assert blob(retired.public_key) not in present
    assert (retired.state, retired.private_key_sealed) == ("retired", None)
    assert retired.retired_at is not None
    with vault_console.console.http() as http:
        access = http.get(
            f"/api/v1/toolboxes/{vault_console.toolboxes['toolbox-1']['id']}/ssh-key"
        ).json()
    assert access["rotated_at"] is not None and access["fingerprint"] == outcome["fingerprint"]


def _authorize_runs(served: VaultConsole, toolbox_id: str, *, key_added: bool) -> set[str]:
    """Ids of the toolbox's ssh_key.authorize runs (only those that added the key yet)."""
    query = (
        "SELECT r.id FROM runs r WHERE r.toolbox_id = :toolbox AND r.action = 'ssh_key.authorize'"
    )
    if key_added:
        query += (
            " AND EXISTS (SELECT 1 FROM run_events e WHERE e.run_id = r.id"
            " AND e.type = 'task_changed' AND e.task = 'Authorize the key for root')"
        )
    engine = served.engine()
    try:
        with engine.connect() as connection:
            return {row[0] for row in connection.execute(text(query), {"toolbox": toolbox_id})}
    finally:
        engine.dispose()


def test_rotation_failing_midway_keeps_the_old_key_and_the_database(
    vault_console: VaultConsole, bootstrapped: dict[str, dict[str, Any]], sandbox: SandboxInfo,
    tmp_path: Path,
) -> None:  # fmt: skip
    droplet = sandbox.droplet("toolbox-2")
    toolbox_id = vault_console.toolboxes["toolbox-2"]["id"]
    old_private = vault_console.active_private_key("toolbox-2")
    rows_before = key_rows(vault_console, "toolbox-2")
    old_fingerprint = next(fp for _, state, fp, _ in rows_before if state == "active")
    authorized_blobs_before = authorized_blobs(droplet.container)
    answer: dict[str, Any] = {}
    earlier = _authorize_runs(vault_console, toolbox_id, key_added=False)

    caller = threading.Thread(
        target=lambda: answer.update(
            zip(("status", "body"), rotate(vault_console, "toolbox-2"), strict=True)
        )
    )
    caller.start()
    try:
        # sshd goes away right after the new key was added, before the login proof.
        wait_until(
            lambda: _authorize_runs(vault_console, toolbox_id, key_added=True) - earlier,
            300,
            "the new key to be added",
        )
        docker_exec(droplet.container, "systemctl", "stop", "ssh")
        caller.join(timeout=900)
    finally:
        docker_exec(droplet.container, "systemctl", "start", "ssh")

    assert answer["status"] == 502, answer
    outcome = answer["body"]
    assert outcome["success"] is False
    assert outcome["active_fingerprint"] == old_fingerprint
    assert "could not be proven" in outcome["message"], outcome
    proof_run = next(r for r in outcome["runs"] if r["action"] == "ssh_key.rotate")
    assert proof_run["success"] is False and proof_run["error"], proof_run
    # The database is exactly as before: same rows, same states, same sealed private key.
    assert key_rows(vault_console, "toolbox-2") == rows_before
    # The old key still logs in; the new one was never activated.
    pins = vault_console.pinned_known_hosts("toolbox-2")
    still = ssh_login(droplet.address, old_private, pins, tmp_path)
    assert still.returncode == 0, still.stderr
    old_blob = blob(
        next(k.public_key for k in vault_console.keys("toolbox-2") if k.state == "active")
    )
    present = authorized_blobs(droplet.container)
    assert old_blob in present
    attempted = set(present) - set(authorized_blobs_before)
    if "removed again" in outcome["message"]:
        assert attempted == set(), "the unproven key is still authorized"
    assert_reached(reach(vault_console, "toolbox-2"), "toolbox-2")


def test_replaced_host_key_fails_runs_until_an_admin_accepts_it(
    vault_console: VaultConsole, bootstrapped: dict[str, dict[str, Any]], sandbox: SandboxInfo
) -> None:
    droplet = sandbox.droplet("toolbox-2")
    toolbox_id = vault_console.toolboxes["toolbox-2"]["id"]
    pinned_before = droplet_host_key_fingerprints(droplet.container)
    docker_exec(droplet.container, "sh", "-c",
                "rm /etc/ssh/ssh_host_* && ssh-keygen -A && systemctl restart ssh")  # fmt: skip
    close_control_masters(droplet.address)
    new_ed25519 = docker_exec(
        droplet.container, "ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub"
    ).split()[1]
    rows_before = key_rows(vault_console, "toolbox-2")

    refused = reach(vault_console, "toolbox-2")

    assert refused["status"] == "unreachable", refused
    assert "host key for toolbox-2 changed" in refused["error"]
    assert key_rows(vault_console, "toolbox-2") == rows_before
    with vault_console.console.http() as http:
        seen = http.get(f"/api/v1/toolboxes/{toolbox_id}/host-key", params={"scan": True}).json()
        assert seen["matches"] is False
        assert {k["fingerprint"] for k in seen["pinned"]} == pinned_before
        assert new_ed25519 in {k["fingerprint"] for k in seen["offered"]}
        stale = http.post(
            f"/api/v1/toolboxes/{toolbox_id}/host-key/accept",
            json={"fingerprint": sorted(pinned_before)[0]},
        )
        assert stale.status_code == 409 and stale.json()["error"]["code"] == "host_key_not_offered"
        assert {
            k["fingerprint"]
            for k in http.get(f"/api/v1/toolboxes/{toolbox_id}/host-key").json()["pinned"]
        } == pinned_before
        accepted = http.post(
            f"/api/v1/toolboxes/{toolbox_id}/host-key/accept", json={"fingerprint": new_ed25519}
        )
        assert accepted.status_code == 200, accepted.text
        body = accepted.json()
    assert [(k["fingerprint"], k["recorded_by"]) for k in body["pinned"]] == [
        (new_ed25519, "vault-admin")
    ]
    assert pinned_before <= {k["fingerprint"] for k in body["history"]}
    engine = vault_console.engine()
    with Session(engine) as session:
        entries = list(session.scalars(select(AuditEntry).where(
            AuditEntry.toolbox_id == toolbox_id, AuditEntry.action == "toolbox.host_key.accept"
        ).order_by(AuditEntry.id)))  # fmt: skip
    engine.dispose()
    assert [(e.outcome, e.actor, e.parameters["fingerprint"]) for e in entries] == [
        ("rejected", "vault-admin", sorted(pinned_before)[0]),
        ("successful", "vault-admin", new_ed25519),
    ]
    assert_reached(reach(vault_console, "toolbox-2"), "toolbox-2")


def test_master_key_rotation_keeps_every_toolbox_reachable(
    vault_console: VaultConsole, bootstrapped: dict[str, dict[str, Any]], sandbox: SandboxInfo
) -> None:
    old = vault_console.master_keys[0]
    new = generate_master_key()
    old_id = vault_console.keyring.primary_id
    new_id = Keyring.parse(new, origin="test").primary_id
    vault_console.console.stop()
    rotated = subprocess.run(
        [str(CLI), "keys", "rotate-master"],
        env={**vault_console.console.env, "DTMA_MASTER_KEY": f"{new},{old}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rotated.returncode == 0, rotated.stderr
    assert f"with master key {new_id} (" in rotated.stdout and f"from {old_id}" in rotated.stdout
    engine = vault_console.engine()
    with Session(engine) as session:
        assert set(sealed.key_usage(session)) == {new_id}
    engine.dispose()

    with pytest.raises(RuntimeError, match="does not open this database's secrets"):
        vault_console.restart([old])
    vault_console.restart([new])

    for droplet in sandbox.droplets:
        assert_reached(reach(vault_console, droplet.name), droplet.name)


def test_revoke_removes_the_key_from_the_droplet_and_erases_it(
    vault_console: VaultConsole, bootstrapped: dict[str, dict[str, Any]], sandbox: SandboxInfo,
    tmp_path: Path,
) -> None:  # fmt: skip
    droplet = sandbox.droplet("toolbox-1")
    toolbox_id = vault_console.toolboxes["toolbox-1"]["id"]
    private = vault_console.active_private_key("toolbox-1")
    active = next(k for k in vault_console.keys("toolbox-1") if k.state == "active")

    with vault_console.console.http(timeout=900) as http:
        response = http.post(f"/api/v1/toolboxes/{toolbox_id}/ssh-key/revoke")
        access = http.get(f"/api/v1/toolboxes/{toolbox_id}/ssh-key").json()

    assert response.status_code == 200, response.text
    assert response.json()["operation"] == "ssh_key.revoke"
    assert blob(active.public_key) not in authorized_blobs(droplet.container)
    refused = ssh_login(
        droplet.address, private, vault_console.pinned_known_hosts("toolbox-1"), tmp_path
    )
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    revoked = next(k for k in vault_console.keys("toolbox-1") if k.id == active.id)
    assert (revoked.state, revoked.private_key_sealed) == ("revoked", None)
    assert (access["source"], access["fingerprint"]) == ("bootstrap", None)
    # Decommissioned: the console has no key left that the droplet accepts. (A connection
    # ansible keeps open, authenticated before the revocation, would serve runs for up to
    # ControlPersist's 60 s: end it rather than wait.)
    close_control_masters(droplet.address)
    unreachable = reach(vault_console, "toolbox-1")
    assert unreachable["status"] == "unreachable" and "Permission denied" in unreachable["error"]


def test_database_holds_no_plaintext_secret(
    vault_console: VaultConsole, bootstrapped: dict[str, dict[str, Any]]
) -> None:
    engine = vault_console.engine()
    with Session(engine) as session:
        agent_tokens = [
            vault_console.keyring.unseal(
                t.agent_token_ciphertext, column_binding(Toolbox.agent_token_ciphertext, t.id)
            )
            for t in session.scalars(select(Toolbox))
        ]
        session.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))
    engine.dispose()
    files = [p for p in vault_console.workdir.glob("console.db*") if p.is_file()]
    raw = b"".join(p.read_bytes() for p in files)
    assert raw, files
    assert PEM_HEADER not in raw and b"PRIVATE KEY" not in raw
    for private in vault_console.private_keys:
        body = "".join(private.strip().splitlines()[1:-1])
        for fragment in [*secret_fragments(private), body]:
            assert fragment.encode() not in raw
        assert base64.b64decode(body)[-64:] not in raw  # the raw key bytes, too
    for token in agent_tokens:
        assert token.encode() not in raw


def test_no_private_key_in_logs_events_artifacts_or_responses(
    vault_console: VaultConsole, bootstrapped: dict[str, dict[str, Any]]
) -> None:
    with vault_console.console.http() as http:
        runs = http.get("/api/v1/runs", params={"limit": 500}).json()
        for run in runs:
            http.get(f"/api/v1/runs/{run['id']}")
        for toolbox in vault_console.toolboxes.values():
            http.get(f"/api/v1/toolboxes/{toolbox['id']}")
            http.get(f"/api/v1/toolboxes/{toolbox['id']}/ssh-key")
            http.get(f"/api/v1/toolboxes/{toolbox['id']}/host-key")
    assert len(runs) >= 2 * len(vault_console.toolboxes)
    engine = vault_console.engine()
    with engine.connect() as connection:
        events = [
            str(row) for row in connection.execute(text("SELECT type, task, data FROM run_events"))
        ]
        stored = [
            str(row) for row in connection.execute(text("SELECT request, result, error FROM runs"))
        ]
        audit_rows = [
            str(row) for row in connection.execute(text("SELECT parameters, detail FROM audit_log"))
        ]
    engine.dispose()
    assert events and stored and audit_rows
    artifacts = [
        p.read_bytes().decode(errors="replace")
        for p in (vault_console.workdir / "runs").rglob("*")
        if p.is_file()
    ]
    places = {
        "console log": [vault_console.console.log_path.read_text()],
        "API responses": vault_console.console.seen_bodies,
        "run events": events,
        "runs": stored,
        "audit log": audit_rows,
        "run artifacts": artifacts,
    }
    fragments = {f for private in vault_console.private_keys for f in secret_fragments(private)}
    for place, texts in places.items():
        for content in texts:
            assert "PRIVATE KEY" not in content, place
            leaked = [f for f in fragments if f in content]
            assert not leaked, f"private key material in {place}"
