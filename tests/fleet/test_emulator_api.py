"""The DigitalOcean emulator's HTTP behaviour: auth, validation, pagination, error shapes.

These run the real HTTP server on a loopback port against a state file in a temporary
directory; no droplet container is created (droplet creation is covered in test_fleet).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from sandbox.config import SandboxConfig
from sandbox.do_state import EmulatorState
from sandbox.emulator import Emulator, _Handler

TOKEN = "test-token-0123456789"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3ksbYjM2d6Vn6Q0vXkL6Uq5wGmQ1p1TQ3xgq6qZ0aQ x"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _seed(state_file: Path, count: int) -> None:
    state = EmulatorState(path=state_file)
    for index in range(1, count + 1):
        droplet_id = 400000000 + index
        state.droplets[droplet_id] = {
            "id": droplet_id,
            "name": f"toolbox-{index}",
            "status": "active",
            "tags": ["dtma"] if index % 2 else ["other"],
            "networks": {"v4": [{"ip_address": f"127.0.99.{index}", "type": "public"}]},
            "_index": index,
        }
    state.save()


@pytest.fixture
def emulator_url(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    config = SandboxConfig(state_dir=tmp_path, net="127.0.99", api_port=port, prefix="unit-")
    _seed(config.state_file, 7)
    emulator = Emulator(config, TOKEN, image=None)
    handler = type("Handler", (_Handler,), {"emulator": emulator})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/v2"
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(emulator_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator_url, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def test_wrong_token_gets_401_with_digitalocean_error_shape(emulator_url: str) -> None:
    for headers in ({"Authorization": "Bearer nope"}, {}, {"Authorization": TOKEN}):
        answer = httpx.get(f"{emulator_url}/droplets", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["id"] == "unauthorized"
        assert answer.json()["message"]


def test_tag_filter_and_total(client: httpx.Client) -> None:
    page = client.get("/droplets", params={"tag_name": "dtma", "per_page": 200}).json()
    assert [d["name"] for d in page["droplets"]] == [
        "toolbox-1", "toolbox-3", "toolbox-5", "toolbox-7",
    ]  # fmt: skip
    assert page["meta"]["total"] == 4
    assert page["links"]["pages"] == {}


def test_internal_fields_are_not_exposed(client: httpx.Client) -> None:
    droplet = client.get("/droplets/400000001").json()["droplet"]
    assert not [key for key in droplet if key.startswith("_")]


def test_pagination_links_walk_every_droplet_once(client: httpx.Client) -> None:
    seen: list[str] = []
    url: str | None = "/droplets?per_page=3"
    pages = 0
    while url:
        page = client.get(url).json()
        seen.extend(d["name"] for d in page["droplets"])
        links = page["links"]["pages"]
        if pages == 0:
            assert "prev" not in links and links["last"].endswith("/v2/droplets?page=3&per_page=3")
        url = links.get("next")
        pages += 1
    assert pages == 3
    assert seen == [f"toolbox-{i}" for i in range(1, 8)]
    assert client.get("/droplets?per_page=3&page=3").json()["links"]["pages"]["prev"]


def test_per_page_is_capped_at_200_and_bad_paging_is_refused(client: httpx.Client) -> None:
    assert len(client.get("/droplets?per_page=5000").json()["droplets"]) == 7
    for bad in ("page=0", "per_page=-1", "page=x"):
        answer = client.get(f"/droplets?{bad}")
        assert answer.status_code == 400
        assert answer.json()["id"] == "bad_request"


def test_unknown_droplet_and_route_are_404(client: httpx.Client) -> None:
    for path in ("/droplets/1", "/droplets/abc", "/nothing"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.json()["id"] == "not_found"


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("[]", "JSON object"),
        ('{"name": "x y", "region": "fra1", "size": "s-1vcpu-1gb", "image": "i"}', "name"),
        ('{"name": "a", "region": "mars1", "size": "s-1vcpu-1gb", "image": "i"}', "region"),
        ('{"name": "a", "region": "fra1", "size": "huge", "image": "i"}', "size"),
        ('{"name": "a", "region": "fra1", "size": "s-1vcpu-1gb"}', "image"),
        (
            '{"name": "a", "region": "fra1", "size": "s-1vcpu-1gb", "image": "i", "tags": ["a b"]}',
            "tags",
        ),
        (
            '{"name": "a", "region": "fra1", "size": "s-1vcpu-1gb", "image": "i", "ssh_keys": [7]}',
            "ssh_keys",
        ),
        ("{not json", "JSON"),
    ],
)
def test_bad_droplet_body_gets_422_naming_the_problem(
    client: httpx.Client, body: str, complaint: str
) -> None:
    answer = client.post("/droplets", content=body)
    assert answer.status_code == 422
    assert answer.json()["id"] == "unprocessable_entity"
    assert complaint in answer.json()["message"]
    assert client.get("/droplets").json()["meta"]["total"] == 7


def test_account_keys_are_created_once_with_a_fingerprint(client: httpx.Client) -> None:
    created = client.post("/account/keys", json={"name": "ops", "public_key": PUBLIC_KEY})
    assert created.status_code == 201
    key = created.json()["ssh_key"]
    assert len(key["fingerprint"].split(":")) == 16
    duplicate = client.post("/account/keys", json={"name": "again", "public_key": PUBLIC_KEY})
    assert duplicate.status_code == 422
    assert [k["id"] for k in client.get("/account/keys").json()["ssh_keys"]] == [key["id"]]
    bad = client.post("/account/keys", json={"name": "x", "public_key": "not a key"})
    assert bad.status_code == 422


def test_state_survives_a_restart(tmp_path: Path) -> None:
    config = SandboxConfig(state_dir=tmp_path, net="127.0.99", api_port=1, prefix="unit-")
    _seed(config.state_file, 2)
    first = Emulator(config, TOKEN, image=None)
    first.create_key({"name": "ops", "public_key": PUBLIC_KEY})
    second = Emulator(config, TOKEN, image=None)
    assert sorted(second.state.droplets) == [400000001, 400000002]
    assert second.list_keys()["meta"]["total"] == 1
