"""Every error is JSON `{"error": {"code", "message"}}` with the right status, never a trace."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.models import AuditEntry, Run, Toolbox
from api.secret_box import SecretBox


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert "Traceback" not in response.text
    return error


@pytest.fixture
def toolbox_id(db: Session, secrets: SecretBox, alice: dict[str, str]) -> str:
    toolbox = Toolbox(
        droplet_id=7,
        name="toolbox-7",
        owner_id=alice["id"],
        address="127.0.24.250",
    )
    secrets.seal_into(toolbox, Toolbox.agent_token_ciphertext, "agent-token-for-tests-0123456789")
    db.add(toolbox)
    db.commit()
    return toolbox.id


def test_unknown_routes_and_methods(client: httpx.Client) -> None:
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(client.delete("/healthz"), 405, "method_not_allowed")


def test_unknown_toolbox_is_404(client: httpx.Client, alice: dict[str, str]) -> None:
    response = client.get("/api/v1/toolboxes/0123", headers={"Authorization": alice["auth"]})
    assert_error(response, 404, "toolbox_not_found")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("tools", {"name": "Bad Name", "image": "busybox:1"}, "name"),
        ("tools", {"name": "web", "image": "{{ lookup('pipe','id') }}"}, "image"),
        ("tools", {"name": "web", "image": "busybox:1", "env": {"A": "{{ 7*7 }}"}}, "env.A"),
        ("tools", {"name": "web", "image": "busybox:1", "command": ["{% raw %}"]}, "command.0"),
        (
            "tools",
            {
                "name": "web",
                "image": "busybox:1",
                "ports": [{"host_port": 80, "container_port": 80}],
            },
            "ports.0.host_port",
        ),
        ("tools", {"name": "web", "image": "busybox:1", "surprise": 1}, "surprise"),
        ("dtma/redeploy", {"version": "1.0; rm -rf /"}, "version"),
    ],
)
def test_bad_action_input_is_422_naming_the_field_and_starts_nothing(
    client: httpx.Client,
    db: Session,
    alice: dict[str, str],
    toolbox_id: str,
    path: str,
    body: dict[str, object],
    field: str,
) -> None:
    response = client.post(
        f"/api/v1/toolboxes/{toolbox_id}/{path}",
        json=body,
        headers={"Authorization": alice["auth"]},
    )
    error = assert_error(response, 422, "invalid_input")
    assert error["field"] == field
    assert db.scalar(select(func.count()).select_from(Run)) == 0
    assert db.scalar(select(Toolbox.active_run_id).where(Toolbox.id == toolbox_id)) is None


def test_bad_tool_name_in_the_path_is_422(
    client: httpx.Client, alice: dict[str, str], toolbox_id: str
) -> None:
    response = client.post(
        f"/api/v1/toolboxes/{toolbox_id}/tools/%7B%7Bx%7D%7D/restart",
        headers={"Authorization": alice["auth"]},
    )
    assert assert_error(response, 422, "invalid_input")["field"] == "name"


def test_malformed_json_is_422(
    client: httpx.Client, alice: dict[str, str], toolbox_id: str
) -> None:
    response = client.post(
        f"/api/v1/toolboxes/{toolbox_id}/tools",
        content=b"{not json",
        headers={"Authorization": alice["auth"], "Content-Type": "application/json"},
    )
    assert_error(response, 422, "invalid_input")


def test_oversized_bodies_are_413_declared_or_streamed(
    client: httpx.Client, alice: dict[str, str], toolbox_id: str
) -> None:
    url = f"/api/v1/toolboxes/{toolbox_id}/tools"
    headers = {"Authorization": alice["auth"], "Content-Type": "application/json"}
    assert_error(
        client.post(url, content=b"x" * 2_000_000, headers=headers), 413, "payload_too_large"
    )

    def chunks():  # no Content-Length: the limit is found while reading
        for _ in range(40):
            yield b" " * 65536

    assert_error(client.post(url, content=chunks(), headers=headers), 413, "payload_too_large")


def test_compat_endpoints_refuse_unknown_actions_and_missing_fields_with_400(
    client: httpx.Client, db: Session, alice: dict[str, str], toolbox_id: str
) -> None:
    auth = {"Authorization": alice["auth"]}
    for path, body, text in [
        ("toolbox-tools", {"toolboxId": toolbox_id, "action": "explode"}, "unknown action"),
        ("toolbox-tools", {"toolboxId": toolbox_id, "action": "stop"}, "instanceId is required"),
        ("toolbox-tools", {"action": "list"}, "toolboxId is required"),
        (
            "toolbox-tools",
            {"toolboxId": toolbox_id, "action": "stop", "instanceId": "{{x}}"},
            "not a tool instance",
        ),
        ("toolbox-dtma-console", {"toolboxId": toolbox_id, "action": "reboot"}, "unknown action"),
    ]:
        response = client.post(f"/functions/v1/{path}", json=body, headers=auth)
        assert response.status_code == 400, response.text
        answer = response.json()
        assert answer["success"] is False and text in answer["error"]
        assert answer["timestamp"]
    assert db.scalar(select(func.count()).select_from(Run)) == 0


def test_rejected_sync_is_audited_with_its_reason(
    client: httpx.Client, db: Session, admin: dict[str, str]
) -> None:
    """No DigitalOcean token configured: 502 naming the setting, and an audit row."""
    response = client.post("/api/v1/toolboxes/sync", headers={"Authorization": admin["auth"]})
    assert assert_error(response, 502, "digitalocean_not_configured")
    entry = db.scalar(select(AuditEntry).where(AuditEntry.action == "toolboxes.sync"))
    assert entry is not None and entry.outcome == "failed"
    assert "DTMA_DO_API_TOKEN" in (entry.detail or "")
