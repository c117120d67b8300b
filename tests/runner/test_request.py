"""Requests are validated before anything starts; RequestError names the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner import PLAYBOOKS, RequestError, RunRequest
from runner.extravars import unsafe_yaml
from runner.request import validate_request

PLAYBOOKS_DIR = Path(__file__).parent / "playbooks"
INVENTORY = Path(__file__).parent / "playbooks" / "probe.yml"  # any existing file will do


def _request(**overrides: object) -> RunRequest:
    fields: dict[str, object] = {
        "playbook": "tool_restart.yml",
        "hosts": ["toolbox-1"],
        "extravars": {"tool_instance_name": "echo"},
        "inventory": INVENTORY,
    }
    return RunRequest(**{**fields, **overrides})  # type: ignore[arg-type]


def _refused(**overrides: object) -> RequestError:
    with pytest.raises(RequestError) as refused:
        validate_request(_request(**overrides))
    return refused.value


def test_the_allow_list_is_the_playbooks_directory() -> None:
    assert "tool_restart.yml" in PLAYBOOKS
    assert "../ansible.cfg" not in PLAYBOOKS
    spec = PLAYBOOKS["tool_restart.yml"]
    assert "tool_instance_name" in spec.accepted
    assert "tool_instance_action" in spec.fixed
    assert "tool_instance_action" not in spec.accepted


def test_a_valid_request_is_coerced_like_ansible_would() -> None:
    valid = validate_request(
        _request(playbook="tool_logs.yml", extravars={"tool_instance_name": "echo",
                                                      "tool_instance_logs_tail": "50"})
    )  # fmt: skip
    assert valid.extravars == {"tool_instance_name": "echo", "tool_instance_logs_tail": 50}
    assert valid.action == "tool.logs"
    assert len(valid.run_id) == 32


@pytest.mark.parametrize("playbook", ["nope.yml", "../playbooks/tool_restart.yml", "/etc/passwd"])
def test_a_playbook_outside_the_allow_list_is_refused(playbook: str) -> None:
    assert _refused(playbook=playbook).field == "playbook"


def test_an_unknown_variable_is_refused_by_name() -> None:
    error = _refused(extravars={"tool_instance_name": "echo", "ansible_host": "10.0.0.1"})
    assert error.field == "ansible_host"
    assert "not a variable of tool_restart.yml" in error.message


def test_an_ill_typed_variable_is_refused_by_name() -> None:
    error = _refused(
        playbook="tool_logs.yml",
        extravars={"tool_instance_name": "echo", "tool_instance_logs_tail": "lots"},
    )
    assert error.field == "tool_instance_logs_tail"
    assert "int" in error.message


def test_a_structure_where_a_string_belongs_is_refused() -> None:
    assert _refused(extravars={"tool_instance_name": {"a": 1}}).field == "tool_instance_name"


def test_a_choice_outside_the_spec_is_refused() -> None:
    error = _refused(
        playbook="tool_deploy.yml",
        extravars={"tool_instance_name": "echo", "tool_instance_image": "x:1",
                   "tool_instance_restart_policy": "sometimes"},
    )  # fmt: skip
    assert error.field == "tool_instance_restart_policy"


def test_the_action_fixed_by_the_playbook_cannot_be_overridden() -> None:
    error = _refused(extravars={"tool_instance_name": "echo", "tool_instance_action": "remove"})
    assert error.field == "tool_instance_action"
    assert "cannot be overridden" in error.message


@pytest.mark.parametrize(
    ("extravars", "field"),
    [
        ({"tool_instance_name": "{{ lookup('pipe', 'id') }}"}, "tool_instance_name"),
        ({"tool_instance_name": "a{% if 1 %}b{% endif %}"}, "tool_instance_name"),
        ({"tool_instance_name": "x{# c #}"}, "tool_instance_name"),
    ],
)
def test_templating_characters_are_refused(extravars: dict[str, object], field: str) -> None:
    assert _refused(extravars=extravars).field == field


def test_templating_deep_inside_a_structure_is_refused_with_its_path() -> None:
    error = _refused(
        playbook="tool_deploy.yml",
        extravars={"tool_instance_name": "echo", "tool_instance_image": "x:1",
                   "tool_instance_env": {"TOKEN": "{{ lookup('env', 'HOME') }}"}},
    )  # fmt: skip
    assert error.field == "tool_instance_env.TOKEN"


@pytest.mark.parametrize(
    "hosts", [[], ["all"], ["ungrouped"], ["toolbox-1,toolbox-2"], ["!toolbox-1"], ["tool*"]]
)
def test_host_patterns_are_refused(hosts: list[str]) -> None:
    assert _refused(hosts=hosts).field == "hosts"


@pytest.mark.parametrize("name", ["ANSIBLE_SSH_ARGS", "PATH", "LD_PRELOAD", "SSH_AUTH_SOCK", "a b"])
def test_the_run_environment_cannot_steer_ansible(name: str) -> None:
    assert _refused(env={name: "x"}).field == "env"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": "60"}, "timeout"),
        ({"inventory": "/nonexistent/inventory.yml"}, "inventory"),
        ({"ssh_private_key": "not a key"}, "ssh_private_key"),
        ({"run_id": "../escape"}, "run_id"),
    ],
)
def test_other_bad_fields_are_named(overrides: dict[str, object], field: str) -> None:
    assert _refused(**overrides).field == field


def test_a_path_variable_is_not_expanded_from_the_console_environment() -> None:
    valid = validate_request(
        _request(playbook="probe.yml", playbook_dir=PLAYBOOKS_DIR,
                 extravars={"probe_path": "$HOME/~x"})
    )  # fmt: skip
    assert valid.extravars["probe_path"] == "$HOME/~x"


def test_no_log_variables_the_key_and_the_environment_are_secrets() -> None:
    valid = validate_request(
        _request(
            playbook="tool_deploy.yml",
            extravars={"tool_instance_name": "echo", "tool_instance_image": "x:1",
                       "tool_instance_env": {"API_KEY": "value-of-the-api-key"}},
            ssh_private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END ...",
            env={"DO_API_TOKEN": "token-value", "DTMA_DO_TAG": "toolbox"},
        )
    )  # fmt: skip
    assert "toolbox" not in valid.secrets  # a tag, not a secret: host names stay readable
    assert "value-of-the-api-key" in valid.secrets
    assert "token-value" in valid.secrets
    assert any("PRIVATE KEY" in secret for secret in valid.secrets)
    assert "secret" not in repr(_request(env={"X": "secret"}))


def test_extravars_are_written_tagged_unsafe() -> None:
    text = unsafe_yaml({"a": "{{ x }}", "b": [1, "y"], "c": {"d": "z"}, "e": True})
    assert text.count("!unsafe") == 3
    loaded = yaml.safe_load(text.replace("!unsafe ", ""))
    assert loaded == {"a": "{{ x }}", "b": [1, "y"], "c": {"d": "z"}, "e": True}


def test_extravars_that_look_like_numbers_reach_ansible_as_strings(tmp_path: Path) -> None:
    """ansible-core reads `!unsafe "0"` as the integer 0: a tool named "0" must stay "0"."""
    values = {"name": "0", "env": {"A": "1e3", "B": "true", "C": "null", "D": "0x1f", "E": "x"}}
    (tmp_path / "extravars.yml").write_text(unsafe_yaml(values))
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug:\n"
        "        msg: \"TYPES={{ ([name] + env.values() | list) | map('type_debug') | join(',') }}"
        " VALUES={{ ([name] + env.values() | list) | join(',') }}\"\n"
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
         "-c", "local", str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'extravars.yml'}"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TYPES=str,str,str,str,str,str" in done.stdout
    assert "VALUES=0,1e3,true,null,0x1f,x" in done.stdout
