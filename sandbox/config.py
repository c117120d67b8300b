"""Where the sandbox keeps its state and which loopback addresses it uses.

Every knob comes from the environment so that several sandboxes can live side by side on
one machine (each engineer or test session its own): a state directory, a /24 of loopback
addresses, an emulator port and a container-name prefix.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SandboxConfig:
    state_dir: Path
    net: str
    api_port: int
    prefix: str

    @classmethod
    def from_env(cls) -> SandboxConfig:
        state_dir = Path(os.environ.get("DTMA_SANDBOX_DIR", PROJECT_ROOT / ".sandbox"))
        net = os.environ.get("DTMA_SANDBOX_NET", "127.0.10")
        address = ipaddress.ip_address(f"{net}.1")
        if not address.is_loopback:
            raise ValueError(f"DTMA_SANDBOX_NET={net} is not a loopback /24 (use 127.x.y)")
        return cls(
            state_dir=state_dir.resolve(),
            net=net,
            api_port=int(os.environ.get("DTMA_SANDBOX_API_PORT", "8089")),
            prefix=os.environ.get("DTMA_SANDBOX_PREFIX", ""),
        )

    def environment(self) -> dict[str, str]:
        """The variables that make another process see this same sandbox."""
        return {
            "DTMA_SANDBOX_DIR": str(self.state_dir),
            "DTMA_SANDBOX_NET": self.net,
            "DTMA_SANDBOX_API_PORT": str(self.api_port),
            "DTMA_SANDBOX_PREFIX": self.prefix,
        }

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/v2"

    @property
    def label(self) -> str:
        """Docker label value that marks this sandbox's droplet containers."""
        return str(self.state_dir)

    def address(self, index: int) -> str:
        return f"{self.net}.{index}"

    def container(self, droplet_name: str) -> str:
        return f"{self.prefix}{droplet_name}"

    # Files in the state directory.
    @property
    def operator_key(self) -> Path:
        return self.state_dir / "operator_key"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "do_token"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "emulator_state.json"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "emulator.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "emulator.log"

    @property
    def fault_file(self) -> Path:
        """Holds `hang`, `5xx` or `401` while the emulator plays an API outage (tests)."""
        return self.state_dir / "emulator_fault"

    @property
    def inventory_dir(self) -> Path:
        return self.state_dir / "inventory"

    @property
    def inventory_file(self) -> Path:
        return self.inventory_dir / "digitalocean.yml"
