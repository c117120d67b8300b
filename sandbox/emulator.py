"""A DigitalOcean API v2 emulator: a real HTTP server with DigitalOcean's JSON shapes.

It serves what the community.digitalocean inventory plugin and the console read
(droplets with pagination and tag filtering, account SSH keys created and deleted) and
creates real droplet containers on POST, which get the sandbox's tool images (the stand-in
for a registry they could pull from) before they turn `active`. Run it with
`python -m sandbox.emulator`; `dtma-console sandbox up` does that for you.
"""

from __future__ import annotations

import hmac
import json
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from sandbox import droplets
from sandbox.config import SandboxConfig
from sandbox.do_state import IMAGES, REGIONS, SIZES, EmulatorState, key_fingerprint

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$")
TAG_PATTERN = re.compile(r"^[a-zA-Z0-9_:\-]{1,255}$")
TOOLBOX_NAME = re.compile(r"^toolbox-(\d{1,3})$")
MAX_PER_PAGE = 200
MAX_BODY = 64 * 1024
SSH_WAIT_SECONDS = 120.0
# How long a booted droplet's Docker engine may take to take the tool images.
ENGINE_WAIT_SECONDS = 120.0
# Outages a test can switch on by writing the fault file (SandboxConfig.fault_file): the API
# answers nothing for as long as it says `hang` (at most HANG_SECONDS), 503 for `5xx`, and
# 401 for `401` (a revoked token). Removing the file ends the outage.
HANG_SECONDS = 300.0
FAULTS = {
    "5xx": (HTTPStatus.SERVICE_UNAVAILABLE, "service_unavailable", "emulated outage"),
    "401": (HTTPStatus.UNAUTHORIZED, "unauthorized", "Unable to authenticate you."),
}


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_id, self.message = status, error_id, message


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def public_droplet(droplet: dict[str, Any]) -> dict[str, Any]:
    """The droplet as the API shows it (internal bookkeeping fields start with '_')."""
    return {k: v for k, v in droplet.items() if not k.startswith("_")}


class Emulator:
    """The API's behaviour, independent of HTTP plumbing (unit-tested directly)."""

    def __init__(self, config: SandboxConfig, token: str, image: str | None) -> None:
        self.config = config
        self.token = token
        self.image = image
        self.state = EmulatorState.load(config.state_file)

    # -- auth -----------------------------------------------------------------------------
    def authorize(self, header: str | None) -> None:
        scheme, _, presented = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented, self.token):
            raise ApiError(HTTPStatus.UNAUTHORIZED, "unauthorized", "Unable to authenticate you")

    # -- droplets -------------------------------------------------------------------------
    def list_droplets(self, query: dict[str, list[str]], base_url: str) -> dict[str, Any]:
        page = _positive_int(query, "page", 1)
        per_page = min(_positive_int(query, "per_page", 20), MAX_PER_PAGE)
        tag = query.get("tag_name", [None])[0]
        with self.state.lock:
            selected = [
                public_droplet(d)
                for _, d in sorted(self.state.droplets.items())
                if tag is None or tag in d["tags"]
            ]
        total = len(selected)
        last = max(1, -(-total // per_page))
        body: dict[str, Any] = {
            "droplets": selected[(page - 1) * per_page : page * per_page],
            "links": {"pages": self._page_links(base_url, query, page, last, per_page)},
            "meta": {"total": total},
        }
        return body

    @staticmethod
    def _page_links(
        base_url: str, query: dict[str, list[str]], page: int, last: int, per_page: int
    ) -> dict[str, str]:
        def link(number: int) -> str:
            params = {"page": str(number), "per_page": str(per_page)}
            params |= {k: v[0] for k, v in query.items() if k not in params}
            return f"{base_url}/v2/droplets?{urlencode(params)}"

        links: dict[str, str] = {}
        if page > 1:
            links |= {"first": link(1), "prev": link(min(page - 1, last))}
        if page < last:
            links |= {"next": link(page + 1), "last": link(last)}
        return links

    def get_droplet(self, droplet_id: str) -> dict[str, Any]:
        return {"droplet": public_droplet(self._droplet(droplet_id))}

    def _droplet(self, droplet_id: str) -> dict[str, Any]:
        droplet = self.state.droplets.get(int(droplet_id)) if droplet_id.isdigit() else None
        if droplet is None:
            raise ApiError(
                HTTPStatus.NOT_FOUND,
                "not_found",
                "The resource you were accessing could not be found.",
            )
        return droplet

    def create_droplet(self, body: Any) -> dict[str, Any]:
        spec = validate_droplet_request(body, self.state)
        with self.state.lock:
            if any(d["name"] == spec["name"] for d in self.state.droplets.values()):
                raise ApiError(
                    HTTPStatus.UNPROCESSABLE_ENTITY,
                    "unprocessable_entity",
                    f"a droplet named {spec['name']} already exists in this sandbox",
                )
            index = self._allocate_index(spec["name"])
            droplet = self._new_droplet(spec, index)
            self.state.droplets[droplet["id"]] = droplet
            self.state.save()
        try:
            self._start(droplet)
        except droplets.DropletError as error:
            with self.state.lock:
                del self.state.droplets[droplet["id"]]
                self.state.save()
            raise ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", str(error)) from error
        return {
            "droplet": public_droplet(droplet),
            "links": {"actions": [{"id": droplet["id"], "rel": "create", "href": ""}]},
        }

    def _allocate_index(self, name: str) -> int:
        used = self.state.used_indexes()
        wanted = TOOLBOX_NAME.match(name)
        if wanted and 1 <= int(wanted.group(1)) <= 199 and int(wanted.group(1)) not in used:
            return int(wanted.group(1))
        # Other names take addresses from .200 up, so toolbox-N keeps .N free.
        for index in range(200, 255):
            if index not in used:
                return index
        raise ApiError(
            HTTPStatus.UNPROCESSABLE_ENTITY, "unprocessable_entity", "droplet limit reached"
        )

    def _new_droplet(self, spec: dict[str, Any], index: int) -> dict[str, Any]:
        size = SIZES[spec["size"]]
        image = IMAGES.get(str(spec["image"]), IMAGES["docker-20-04"])
        address = self.config.address(index)
        return {
            "id": self.state.next_droplet_id(),
            "name": spec["name"],
            "memory": size["memory"],
            "vcpus": size["vcpus"],
            "disk": size["disk"],
            "locked": False,
            "status": "new",
            "kernel": None,
            "created_at": _now(),
            "features": ["monitoring"],
            "backup_ids": [],
            "snapshot_ids": [],
            "volume_ids": [],
            "image": {
                **image,
                "slug": str(spec["image"]),
                "public": True,
                "type": "base",
                "regions": list(REGIONS),
            },
            "size": {"slug": spec["size"], **size, "regions": list(REGIONS), "available": True},
            "size_slug": spec["size"],
            "networks": {
                "v4": [
                    {
                        "ip_address": address,
                        "netmask": "255.255.255.0",
                        "gateway": f"{self.config.net}.254",
                        "type": "public",
                    }
                ],
                "v6": [],
            },
            "region": {
                "slug": spec["region"],
                "name": REGIONS[spec["region"]],
                "sizes": list(SIZES),
                "features": ["backups", "ipv6", "metadata"],
                "available": True,
            },
            "tags": spec["tags"],
            "vpc_uuid": None,
            "_index": index,
            "_authorized_keys": spec["authorized_keys"],
        }

    def _start(self, droplet: dict[str, Any]) -> None:
        if self.image is None:
            raise droplets.DropletError("the emulator was started without a droplet image")
        address = droplet["networks"]["v4"][0]["ip_address"]
        _forget_host_key(self.config, address)
        droplets.start_container(
            self.config, droplet["name"], address, self.image, droplet["_authorized_keys"]
        )
        self._watch_until_active(droplet["id"], address)

    def _watch_until_active(self, droplet_id: int, address: str) -> None:
        def watch() -> None:
            try:
                droplets.wait_for_sshd(address, SSH_WAIT_SECONDS)
            except droplets.DropletError:
                return  # stays "new": that is what a stuck droplet looks like
            with self.state.lock:
                droplet = self.state.droplets.get(droplet_id)
            if droplet is not None:
                _supply_tool_images(self.config.container(droplet["name"]))
            with self.state.lock:
                if droplet_id in self.state.droplets:
                    self.state.droplets[droplet_id]["status"] = "active"
                    self.state.save()

        threading.Thread(target=watch, daemon=True).start()

    def resume(self) -> None:
        """After a restart of the emulator, keep watching droplets that were still booting."""
        for droplet in list(self.state.droplets.values()):
            if droplet["status"] == "new":
                self._watch_until_active(droplet["id"], droplet["networks"]["v4"][0]["ip_address"])

    def delete_droplet(self, droplet_id: str) -> None:
        droplet = self._droplet(droplet_id)
        droplets.remove_container(self.config.container(droplet["name"]))
        _forget_host_key(self.config, droplet["networks"]["v4"][0]["ip_address"])
        with self.state.lock:
            del self.state.droplets[droplet["id"]]
            self.state.save()

    # -- account keys ---------------------------------------------------------------------
    def list_keys(self) -> dict[str, Any]:
        with self.state.lock:
            keys = [self.state.keys[k] for k in sorted(self.state.keys)]
        return {"ssh_keys": keys, "links": {}, "meta": {"total": len(keys)}}

    def create_key(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _unprocessable("the request body must be a JSON object")
        name, public_key = body.get("name"), body.get("public_key")
        if not isinstance(name, str) or not name.strip():
            raise _unprocessable("name is required")
        if not isinstance(public_key, str):
            raise _unprocessable("public_key is required")
        try:
            fingerprint = key_fingerprint(public_key)
        except ValueError as error:
            raise _unprocessable(str(error)) from error
        with self.state.lock:
            if self.state.find_key(fingerprint) is not None:
                raise _unprocessable("SSH Key is already in use on your account")
            key = {
                "id": self.state.next_key_id(),
                "fingerprint": fingerprint,
                "public_key": public_key.strip(),
                "name": name,
            }
            self.state.keys[key["id"]] = key
            self.state.save()
        return {"ssh_key": key}

    def delete_key(self, reference: str) -> None:
        """DELETE /v2/account/keys/{id or fingerprint} (droplets keep what they were given)."""
        with self.state.lock:
            key = self.state.find_key(reference)
            if key is None:
                raise ApiError(
                    HTTPStatus.NOT_FOUND,
                    "not_found",
                    "The resource you were accessing could not be found.",
                )
            del self.state.keys[key["id"]]
            self.state.save()


def _supply_tool_images(container: str) -> None:
    """Load the sandbox tool images into a new droplet's engine once it answers (nothing
    else gives them to a droplet created through the API); a droplet that does not take
    them stays usable, and a deploy of a tool then says the image is missing."""
    from sandbox import tools

    deadline = time.monotonic() + ENGINE_WAIT_SECONDS
    while True:
        try:
            tools.load_tool_images(container)
            return
        except tools.ToolImageError as error:
            if time.monotonic() > deadline:
                sys.stderr.write(f"{_now()} tool images not loaded into {container}: {error}\n")
                return
        time.sleep(1.0)


def _unprocessable(message: str) -> ApiError:
    return ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "unprocessable_entity", message)


def _positive_int(query: dict[str, list[str]], name: str, default: int) -> int:
    raw = query.get(name, [str(default)])[0]
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(HTTPStatus.BAD_REQUEST, "bad_request", f"{name} must be a positive integer")
    return int(raw)


def validate_droplet_request(body: Any, state: EmulatorState) -> dict[str, Any]:
    """Check a POST /v2/droplets body the way DigitalOcean does; return the clean spec."""
    if not isinstance(body, dict):
        raise _unprocessable("the request body must be a JSON object")
    name = body.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise _unprocessable("name is required and must be a valid hostname")
    region = body.get("region")
    if region not in REGIONS:
        raise _unprocessable(f"region must be one of {', '.join(sorted(REGIONS))}")
    size = body.get("size")
    if size not in SIZES:
        raise _unprocessable(f"size must be one of {', '.join(sorted(SIZES))}")
    image = body.get("image")
    if not isinstance(image, str | int) or isinstance(image, bool) or not str(image):
        raise _unprocessable("image is required (a slug or an id)")
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(
        isinstance(t, str) and TAG_PATTERN.match(t) for t in tags
    ):
        raise _unprocessable("tags must be a list of tag names (letters, digits, _ : -)")
    references = body.get("ssh_keys") or []
    if not isinstance(references, list):
        raise _unprocessable("ssh_keys must be a list of key ids or fingerprints")
    authorized = []
    for reference in references:
        key = state.find_key(reference) if isinstance(reference, int | str) else None
        if key is None:
            raise _unprocessable(f"ssh_keys: no key {reference!r} on this account")
        authorized.append(key["public_key"])
    return {
        "name": name,
        "region": region,
        "size": size,
        "image": image,
        "tags": list(dict.fromkeys(tags)),
        "authorized_keys": authorized,
    }


def _forget_host_key(config: SandboxConfig, address: str) -> None:
    """A new droplet at a reused address has new host keys: drop the old pin."""
    if config.known_hosts.exists():
        subprocess.run(
            ["ssh-keygen", "-R", address, "-f", str(config.known_hosts)], capture_output=True
        )


class _Handler(BaseHTTPRequestHandler):
    emulator: Emulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        status = args[1] if len(args) > 1 else ""
        sys.stderr.write(f"{_now()} {self.command} {self.path} {status}\n")

    def _fault(self) -> str:
        try:
            return self.emulator.config.fault_file.read_text().strip()
        except OSError:
            return ""

    def _dispatch(self) -> None:
        deadline = time.monotonic() + HANG_SECONDS
        while self._fault() == "hang" and time.monotonic() < deadline:
            time.sleep(0.2)
        fault = self._fault()
        if fault in FAULTS:
            status, error_id, message = FAULTS[fault]
            self._send(status, {"id": error_id, "message": message})
            return
        try:
            self.emulator.authorize(self.headers.get("Authorization"))
            status, body = self._route()
        except ApiError as error:
            status, body = error.status, {"id": error.error_id, "message": error.message}
        self._send(status, body)

    def _route(self) -> tuple[HTTPStatus, dict[str, Any] | None]:
        url = urlparse(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        method = self.command
        match (method, parts):
            case ("GET", ["v2", "droplets"]):
                return HTTPStatus.OK, self.emulator.list_droplets(query, self._base_url())
            case ("POST", ["v2", "droplets"]):
                return HTTPStatus.ACCEPTED, self.emulator.create_droplet(self._body())
            case ("GET", ["v2", "droplets", droplet_id]):
                return HTTPStatus.OK, self.emulator.get_droplet(droplet_id)
            case ("DELETE", ["v2", "droplets", droplet_id]):
                self.emulator.delete_droplet(droplet_id)
                return HTTPStatus.NO_CONTENT, None
            case ("GET", ["v2", "account", "keys"]):
                return HTTPStatus.OK, self.emulator.list_keys()
            case ("POST", ["v2", "account", "keys"]):
                return HTTPStatus.CREATED, self.emulator.create_key(self._body())
            case ("DELETE", ["v2", "account", "keys", reference]):
                self.emulator.delete_key(reference)
                return HTTPStatus.NO_CONTENT, None
            case ("GET", ["v2", "account"]):
                return HTTPStatus.OK, {"account": {"status": "active", "droplet_limit": 50}}
        raise ApiError(
            HTTPStatus.NOT_FOUND, "not_found", "The resource you were accessing could not be found."
        )

    def _base_url(self) -> str:
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        return f"http://{host}"

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large", "body too large")
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError as error:
            raise _unprocessable("the request body is not valid JSON") from error

    def _send(self, status: HTTPStatus, body: dict[str, Any] | None) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _dispatch


def serve(config: SandboxConfig, token: str, image: str | None) -> None:
    emulator = Emulator(config, token, image)
    emulator.resume()
    handler = type("Handler", (_Handler,), {"emulator": emulator})
    server = ThreadingHTTPServer(("127.0.0.1", config.api_port), handler)
    server.daemon_threads = True
    server.serve_forever()


def main() -> None:
    config = SandboxConfig.from_env()
    token = config.token_file.read_text().strip()
    image = sys.argv[1] if len(sys.argv) > 1 else None
    serve(config, token, image)


if __name__ == "__main__":
    main()
