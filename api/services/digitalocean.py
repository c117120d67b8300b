"""The DigitalOcean API v2 (or the sandbox emulator): the tagged droplets, and for
provisioning (api/services/provisioning.py) account SSH keys and droplets created and
destroyed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from api.errors import UpstreamError
from api.settings import Settings


@dataclass(frozen=True)
class DropletInfo:
    id: int
    name: str
    status: str
    region: str | None
    public_ipv4: str | None
    tags: tuple[str, ...]


def _public_ipv4(droplet: dict[str, Any]) -> str | None:
    for network in droplet.get("networks", {}).get("v4", []):
        if network.get("type") == "public":
            return str(network["ip_address"])
    return None


def _parse(droplet: dict[str, Any]) -> DropletInfo:
    region = droplet.get("region") or {}
    return DropletInfo(
        id=int(droplet["id"]),
        name=str(droplet["name"]),
        status=str(droplet.get("status", "unknown")),
        region=region.get("slug"),
        public_ipv4=_public_ipv4(droplet),
        tags=tuple(droplet.get("tags") or ()),
    )


def _client(settings: Settings, timeout: float) -> httpx.Client:
    if settings.do_api_token is None:
        raise UpstreamError(
            "DTMA_DO_API_TOKEN is not set: the console cannot read the DigitalOcean API",
            code="digitalocean_not_configured",
        )
    headers = {"Authorization": f"Bearer {settings.do_api_token.get_secret_value()}"}
    return httpx.Client(
        base_url=settings.do_api_url.rstrip("/") + "/", headers=headers, timeout=timeout
    )


def list_tagged_droplets(settings: Settings, *, timeout: float = 30.0) -> list[DropletInfo]:
    """Every droplet carrying DTMA_DO_TAG, following `links.pages.next`."""
    base = settings.do_api_url.rstrip("/")
    url: str | None = f"{base}/droplets"
    params: dict[str, Any] | None = {"tag_name": settings.do_tag, "per_page": 200}
    found: list[DropletInfo] = []
    seen_pages: set[str] = set()
    with _client(settings, timeout) as client:
        while url:
            try:
                response = client.get(url, params=params)
            except httpx.HTTPError as error:
                raise UpstreamError(
                    f"DigitalOcean API at {base} did not answer: {error}",
                    code="digitalocean_unreachable",
                ) from error
            if response.status_code != 200:
                raise UpstreamError(
                    f"DigitalOcean API answered {response.status_code}: {_api_message(response)}",
                    code="digitalocean_error",
                )
            try:
                page = response.json()
                found.extend(_parse(d) for d in page["droplets"])
                next_url = (page.get("links") or {}).get("pages", {}).get("next")
            except (ValueError, KeyError, TypeError) as error:
                raise UpstreamError(
                    f"DigitalOcean API answered with an unexpected body: {error}",
                    code="digitalocean_error",
                ) from error
            if next_url in seen_pages:
                break
            if next_url:
                seen_pages.add(next_url)
            url, params = next_url, None
    return found


def _api_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text[:200]))
    except ValueError:
        return response.text[:200]


class DropletRefused(UpstreamError):
    """DigitalOcean refused the request itself (4xx other than auth): the input is wrong
    (an unknown region or size, a name in use), so the caller gets a 422."""

    status = 422


def _call(
    settings: Settings,
    method: str,
    path: str,
    *,
    json: dict[str, Any] | None = None,
    allowed: tuple[int, ...] = (200, 201, 202, 204),
    timeout: float = 30.0,
) -> httpx.Response:
    base = settings.do_api_url.rstrip("/")
    with _client(settings, timeout) as client:
        try:
            response = client.request(method, path, json=json)
        except httpx.HTTPError as error:
            raise UpstreamError(
                f"DigitalOcean API at {base} did not answer: {error}",
                code="digitalocean_unreachable",
            ) from error
    if response.status_code in allowed:
        return response
    message = f"DigitalOcean API answered {response.status_code}: {_api_message(response)}"
    if response.status_code in (400, 404, 409, 422):
        raise DropletRefused(message, code="digitalocean_refused")
    raise UpstreamError(message, code="digitalocean_error")


def create_account_key(settings: Settings, name: str, public_key: str) -> int:
    """POST /v2/account/keys: the key droplets created with it get in root's authorized_keys."""
    answer = _call(settings, "POST", "account/keys", json={"name": name, "public_key": public_key})
    return int(answer.json()["ssh_key"]["id"])


def delete_account_key(settings: Settings, key_id: int) -> None:
    """DELETE /v2/account/keys/{id} (droplets made with it keep it; a missing key is fine)."""
    _call(settings, "DELETE", f"account/keys/{key_id}", allowed=(204, 404))


def create_droplet(
    settings: Settings,
    *,
    name: str,
    region: str,
    size: str,
    image: str,
    tags: list[str],
    ssh_key_ids: list[int],
) -> DropletInfo:
    """POST /v2/droplets; the droplet is `new` until it has booted."""
    body = {
        "name": name,
        "region": region,
        "size": size,
        "image": image,
        "tags": tags,
        "ssh_keys": ssh_key_ids,
    }
    return _parse(_call(settings, "POST", "droplets", json=body, timeout=120).json()["droplet"])


def get_droplet(settings: Settings, droplet_id: int) -> DropletInfo | None:
    """GET /v2/droplets/{id}; None when DigitalOcean no longer knows it."""
    answer = _call(settings, "GET", f"droplets/{droplet_id}", allowed=(200, 404))
    return None if answer.status_code == 404 else _parse(answer.json()["droplet"])


def destroy_droplet(settings: Settings, droplet_id: int) -> bool:
    """DELETE /v2/droplets/{id}; False when it was already gone."""
    answer = _call(settings, "DELETE", f"droplets/{droplet_id}", allowed=(204, 404), timeout=120)
    return answer.status_code == 204
