"""A run over hosts with different SSH keys (runner/identities.py, RunRequest.host_private_keys):
what is checked before it starts, and that the keys are secrets of the run. The run itself
is proved on the fleet (test_agent_rollouts.py: a rollout over a toolbox with its own key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.vault import sshkeys
from runner import RequestError, RunRequest
from runner.identities import public_key
from runner.request import validate_request

INVENTORY = Path(__file__).resolve().parent.parent / "runner" / "playbooks" / "probe.yml"


def _request(**overrides: object) -> RunRequest:
    fields: dict[str, object] = {
        "playbook": "tool_restart.yml",
        "hosts": ["toolbox-1", "toolbox-2"],
        "extravars": {"tool_instance_name": "echo"},
        "inventory": INVENTORY,
    }
    return RunRequest(**{**fields, **overrides})  # type: ignore[arg-type]


def test_each_hosts_key_is_a_secret_of_the_run_and_its_public_half_is_derived() -> None:
    default, own = sshkeys.generate("operator"), sshkeys.generate("toolbox-2")
    valid = validate_request(_request(
        ssh_private_key=default.private_openssh,
        host_private_keys={"toolbox-2": own.private_openssh},
    ))  # fmt: skip
    assert valid.host_private_keys == {"toolbox-2": own.private_openssh}
    assert own.private_openssh in valid.secrets and default.private_openssh in valid.secrets
    assert public_key(own.private_openssh).split()[:2] == own.public_openssh.split()[:2]
    assert "host_private_keys" not in repr(_request(host_private_keys={"toolbox-2": "x"}))


@pytest.mark.parametrize(
    ("keys", "default"),
    [
        ({"toolbox-9": "own"}, True),  # not a host of the run
        ({"toolbox-2": "own"}, False),  # toolbox-1 would have no key
        ({"toolbox-2": "not a key"}, True),
    ],
)
def test_host_keys_that_cannot_serve_the_run_are_refused_before_it_starts(
    keys: dict[str, str], default: bool
) -> None:
    operator, own = sshkeys.generate("operator"), sshkeys.generate("own")
    given = {h: (own.private_openssh if k == "own" else k) for h, k in keys.items()}
    with pytest.raises(RequestError) as refused:
        validate_request(_request(
            ssh_private_key=operator.private_openssh if default else None,
            host_private_keys=given,
        ))  # fmt: skip
    assert refused.value.field == "host_private_keys"
