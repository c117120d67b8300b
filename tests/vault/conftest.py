"""Fixtures for the key vault: the console served for real with a master key and an
inventory like production's (no key file, no accept-new known_hosts: a run gets in only
with the key the console hands it), and ground truth from the droplets.

Every droplet is put back as it was at the end (authorized_keys, SSH host keys), because
the rest of the suite reaches the sandbox with the operator key.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from api.secret_box import column_binding
from api.services import users
from api.vault.crypto import Keyring, generate_master_key
from api.vault.models import ToolboxSshKey
from sandbox.config import PROJECT_ROOT
from sandbox.fleet import SandboxInfo
from tests.api.console import Console, docker_exec, new_console

HOST_KEY_BACKUP = "/root/.dtma-vault-test-host-keys"


@pytest.fixture(scope="session")
def vault_inventory(sandbox: SandboxInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sandbox inventory as production has it: the token from DO_API_TOKEN (which the
    console hands to each run), no private key file, no known_hosts file."""
    directory = tmp_path_factory.mktemp("vault-inventory")
    options = yaml.safe_load(sandbox.inventory.read_text())
    options["oauth_token"] = "{{ lookup('ansible.builtin.env', 'DO_API_TOKEN') }}"
    (directory / "digitalocean.yml").write_text(yaml.safe_dump(options, sort_keys=False))
    group_vars = directory / "group_vars" / "all"
    group_vars.mkdir(parents=True)
    shared = PROJECT_ROOT / "inventory" / "group_vars" / "all" / "connection.yml"
    (group_vars / "connection.yml").write_text(shared.read_text())
    return directory / "digitalocean.yml"


# -- droplets: snapshot and restore ---------------------------------------------------------
@dataclass
class DropletSnapshot:
    container: str
    authorized_keys: str


def _snapshot(container: str) -> DropletSnapshot:
    docker_exec(container, "sh", "-c", f"rm -rf {HOST_KEY_BACKUP} && mkdir -m 700 "
                f"{HOST_KEY_BACKUP} && cp -a /etc/ssh/ssh_host_* {HOST_KEY_BACKUP}/")  # fmt: skip
    return DropletSnapshot(container, docker_exec(container, "cat", "/root/.ssh/authorized_keys"))


def _restore(snapshot: DropletSnapshot) -> None:
    subprocess.run(
        ["docker", "exec", "-i", snapshot.container, "sh", "-c",
         "cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys"],
        input=snapshot.authorized_keys + "\n", text=True, check=True, timeout=60,
    )  # fmt: skip
    docker_exec(snapshot.container, "sh", "-c", "rm -f /etc/ssh/ssh_host_* && cp -a "
                f"{HOST_KEY_BACKUP}/. /etc/ssh/ && rm -rf {HOST_KEY_BACKUP} && "
                "systemctl restart ssh")  # fmt: skip


@pytest.fixture(scope="module")
def droplets_restored(sandbox: SandboxInfo) -> Iterator[None]:
    snapshots = [_snapshot(d.container) for d in sandbox.droplets]
    try:
        yield
    finally:
        for snapshot in snapshots:
            _restore(snapshot)
        for droplet in sandbox.droplets:
            close_control_masters(droplet.address)


# -- the console ----------------------------------------------------------------------------
@dataclass
class VaultConsole:
    console: Console
    workdir: Path
    database: Path
    master_keys: list[str]
    toolboxes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every private key seen in this session (the operator key, every toolbox key while it
    # was active or pending): none may appear in logs, events, artifacts or responses.
    private_keys: set[str] = field(default_factory=set)

    @property
    def keyring(self) -> Keyring:
        return Keyring.parse(",".join(self.master_keys), origin="test")

    def engine(self) -> Engine:
        return create_engine(f"sqlite:///{self.database}")

    def keys(self, toolbox_name: str) -> list[ToolboxSshKey]:
        """The toolbox's key rows, oldest first (detached, for comparisons)."""
        engine = self.engine()
        try:
            with Session(engine, expire_on_commit=False) as session:
                rows = list(
                    session.scalars(
                        select(ToolboxSshKey)
                        .where(ToolboxSshKey.toolbox_id == self.toolboxes[toolbox_name]["id"])
                        .order_by(ToolboxSshKey.created_at)
                    )
                )
                session.expunge_all()
                return rows
        finally:
            engine.dispose()

    def active_private_key(self, toolbox_name: str) -> str:
        """Unsealed here, as the console would: the test is on the console's side."""
        active = [k for k in self.keys(toolbox_name) if k.state == "active"]
        assert len(active) == 1, [(k.state, k.fingerprint) for k in self.keys(toolbox_name)]
        assert active[0].private_key_sealed is not None
        sealed = active[0].private_key_sealed
        private = self.keyring.unseal(
            sealed, column_binding(ToolboxSshKey.private_key_sealed, active[0].id)
        )
        self.private_keys.add(private)
        return private

    def pinned_known_hosts(self, toolbox_name: str) -> str:
        from api.vault.models import ToolboxHostKey

        address = self.toolboxes[toolbox_name]["address"]
        engine = self.engine()
        try:
            with Session(engine) as session:
                rows = session.scalars(
                    select(ToolboxHostKey).where(
                        ToolboxHostKey.toolbox_id == self.toolboxes[toolbox_name]["id"],
                        ToolboxHostKey.state == "pinned",
                    )
                )
                return "".join(f"{address} {r.key_type} {r.public_key}\n" for r in rows)
        finally:
            engine.dispose()

    def restart(self, master_keys: list[str]) -> None:
        self.console.stop()
        self.master_keys = master_keys
        self.console.env["DTMA_MASTER_KEY"] = ",".join(master_keys)
        self.console.start()


@pytest.fixture(scope="module")
def vault_console(
    sandbox: SandboxInfo,
    vault_inventory: Path,
    droplets_restored: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[VaultConsole]:
    """`dtma-console serve` with DTMA_MASTER_KEY, the production-like inventory, the
    operator key as the bootstrap key (removed from droplets once they have their own),
    toolboxes synced and an admin token."""
    workdir = tmp_path_factory.mktemp("vault-console")
    database = workdir / "console.db"
    console = new_console(sandbox, workdir, f"sqlite:///{database}")
    master = generate_master_key()
    console.env.pop("DTMA_KNOWN_HOSTS_FILE", None)  # pins come from the vault only
    console.env |= {
        "DTMA_MASTER_KEY": master,
        "DTMA_INVENTORY": str(vault_inventory),
        "DTMA_SSH_REVOKE_BOOTSTRAP_KEY": "true",
        "DTMA_KEEP_RUN_DIRS": "1",  # kept, so that the test can search them for keys
    }
    served = VaultConsole(console, workdir, database, [master])
    served.private_keys.add(sandbox.operator_key.read_text())
    console.start()
    engine = served.engine()
    with Session(engine) as session, session.begin():
        _, console.token = users.create_token(session, "vault-admin", admin=True)
    engine.dispose()
    try:
        with console.http() as http:
            synced = http.post("/api/v1/toolboxes/sync")
            assert synced.status_code == 200, synced.text
            served.toolboxes = {t["name"]: t for t in synced.json()["toolboxes"]}
        yield served
    finally:
        console.stop()


# -- ssh from the test, as ground truth ------------------------------------------------------
def ssh_login(
    address: str, private_key: str, known_hosts: str, workdir: Path
) -> subprocess.CompletedProcess[str]:
    """A fresh ssh login as root offering only `private_key` (held by a throwaway
    ssh-agent fed through stdin: the key is never written to disk)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = hashlib.sha256(private_key.encode()).hexdigest()[:12]
    socket = workdir / f"agent-{tag}.sock"
    pins = workdir / f"known_hosts-{tag}"
    pins.write_text(known_hosts)
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket)], stdout=subprocess.DEVNULL)
    try:
        env = {"SSH_AUTH_SOCK": str(socket), "PATH": "/usr/bin:/bin"}
        for _ in range(100):
            if socket.exists():
                break
            subprocess.run(["sleep", "0.05"], check=True)
        subprocess.run(["ssh-add", "-q", "-"], input=private_key, text=True, env=env, check=True)
        public = subprocess.run(
            ["ssh-add", "-L"], env=env, capture_output=True, text=True, check=True
        ).stdout
        pub_file = workdir / f"key-{tag}.pub"
        pub_file.write_text(public)
        return subprocess.run(
            ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ControlMaster=no",
             "-o", "ControlPath=none", "-o", "IdentitiesOnly=yes",
             "-o", f"IdentityFile={pub_file}", "-o", "PreferredAuthentications=publickey",
             "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={pins}",
             "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
             f"root@{address}", "--", "echo", "logged-in"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        agent.terminate()
        agent.wait(timeout=10)
        socket.unlink(missing_ok=True)


def close_control_masters(address: str) -> None:
    """End the ControlPersist connections ansible keeps to `address` (~/.ansible/cp).

    A replaced machine drops them with its network connection; a host key regenerated in
    place (as the tests do) would otherwise let runs ride on a connection verified before.
    """
    resolved = subprocess.run(
        ["ssh", "-G", "-o", "ControlPath=%C", f"root@{address}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    digest = next(
        line.split()[1] for line in resolved.splitlines() if line.startswith("controlpath ")
    )
    for socket in (Path.home() / ".ansible" / "cp").glob(f"{digest}*"):
        subprocess.run(
            ["ssh", "-O", "exit", "-o", f"ControlPath={socket}", f"root@{address}"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
