"""The DigitalOcean emulator's state: droplets and account SSH keys, kept in a JSON file.

Everything the emulator knows survives its own restart; writes go to a temporary file
renamed into place, so a crash never leaves half a state behind.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGIONS = {
    "nyc1": "New York 1", "nyc3": "New York 3", "sfo3": "San Francisco 3",
    "ams3": "Amsterdam 3", "fra1": "Frankfurt 1", "lon1": "London 1",
    "sgp1": "Singapore 1", "tor1": "Toronto 1", "blr1": "Bangalore 1", "syd1": "Sydney 1",
}  # fmt: skip
SIZES = {
    "s-1vcpu-512mb-10gb": {"memory": 512, "vcpus": 1, "disk": 10, "price_monthly": 4.0},
    "s-1vcpu-1gb": {"memory": 1024, "vcpus": 1, "disk": 25, "price_monthly": 6.0},
    "s-1vcpu-2gb": {"memory": 2048, "vcpus": 1, "disk": 50, "price_monthly": 12.0},
    "s-2vcpu-2gb": {"memory": 2048, "vcpus": 2, "disk": 60, "price_monthly": 18.0},
    "s-2vcpu-4gb": {"memory": 4096, "vcpus": 2, "disk": 80, "price_monthly": 24.0},
}
IMAGES = {
    "docker-20-04": {"id": 151206484, "name": "Docker on Ubuntu 22.04", "distribution": "Ubuntu"},
    "debian-12-x64": {"id": 151206485, "name": "12 x64", "distribution": "Debian"},
}
FIRST_DROPLET_ID = 400000001
FIRST_KEY_ID = 41000001


def key_fingerprint(public_key: str) -> str:
    """MD5 fingerprint of an OpenSSH public key, in DigitalOcean's colon notation."""
    parts = public_key.split()
    if len(parts) < 2:
        raise ValueError("public_key is not an OpenSSH public key")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError as error:
        raise ValueError("public_key is not an OpenSSH public key") from error
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


@dataclass
class EmulatorState:
    path: Path
    droplets: dict[int, dict[str, Any]] = field(default_factory=dict)
    keys: dict[int, dict[str, Any]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @classmethod
    def load(cls, path: Path) -> EmulatorState:
        state = cls(path=path)
        if path.exists():
            raw = json.loads(path.read_text())
            state.droplets = {int(k): v for k, v in raw.get("droplets", {}).items()}
            state.keys = {int(k): v for k, v in raw.get("keys", {}).items()}
        return state

    def save(self) -> None:
        with self.lock:
            payload = json.dumps({"droplets": self.droplets, "keys": self.keys}, indent=1)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(payload)
            os.replace(temporary, self.path)

    def next_droplet_id(self) -> int:
        return max(self.droplets, default=FIRST_DROPLET_ID - 1) + 1

    def next_key_id(self) -> int:
        return max(self.keys, default=FIRST_KEY_ID - 1) + 1

    def find_key(self, reference: int | str) -> dict[str, Any] | None:
        """An account key by id or fingerprint, as POST /v2/droplets accepts either."""
        for key in self.keys.values():
            if reference in (key["id"], str(key["id"]), key["fingerprint"]):
                return key
        return None

    def used_indexes(self) -> set[int]:
        return {droplet["_index"] for droplet in self.droplets.values()}
