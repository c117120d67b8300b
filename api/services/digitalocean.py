"""Read the tagged droplets from the DigitalOcean API v2 (or the sandbox emulator)."""

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


def list_tagged_droplets(settings: Settings, *, timeout: float = 30.0) -> list[DropletInfo]:
    """Every droplet carrying DTMA_DO_TAG, following `links.pages.next`."""
    if settings.do_api_token is None:
        raise UpstreamError(
            "DTMA_DO_API_TOKEN is not set: the console cannot read the DigitalOcean API",
            code="digitalocean_not_configured",
        )
    headers = {"Authorization": f"Bearer {settings.do_api_token.get_secret_value()}"}
    base = settings.do_api_url.rstrip("/")
    url: str | None = f"{base}/droplets"
    params: dict[str, Any] | None = {"tag_name": settings.do_tag, "per_page": 200}
    found: list[DropletInfo] = []
    seen_pages: set[str] = set()
    with httpx.Client(headers=headers, timeout=timeout) as client:
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
