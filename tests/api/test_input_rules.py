"""One source of truth for input rules: the API's schemas take their patterns and bounds from
the roles, refuse what the roles refuse (422, never a failed run), and match names whole."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.models import Run, Toolbox
from api.schemas import role_rules as rules
from api.schemas.actions import DeployTool, HealthCheck, RedeployAgent
from api.secret_box import SecretBox
from api.web.deploy_form import DeployForm
from runner.catalog import DEFAULT_PLAYBOOK_DIR, PROJECT_ROOT, load_spec
from runner.extravars import validate_extravars
from tests.api.test_errors import assert_error

ROLE = PROJECT_ROOT / "roles" / "tool_instance"
BASE = {"name": "web", "image": "dtma-tool-echo:1.0"}
CHECK = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]


def _refused(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as refused:
        DeployTool.model_validate(body)
    return [tuple(problem["loc"]) for problem in refused.value.errors()]


# -- one place for every rule ---------------------------------------------------------------
def test_the_rules_are_written_once_in_the_role() -> None:
    """No Python module repeats a role's pattern or the template markers."""
    sources = [
        path
        for top in ("api", "runner", "agent")
        for path in (PROJECT_ROOT / top).rglob("*.py")
        if ".venv" not in path.parts
    ]
    patterns = [rules.TOOL_NAME, rules.IMAGE, rules.ENV_KEY, rules.MEMORY, rules.IPV4]
    for path in sources:
        text = path.read_text()
        for pattern in patterns:
            assert pattern not in text, f"{path} repeats the role's pattern {pattern}"
    markers = [p for p in sources if re.search(r"^TEMPLATE_MARKERS\s*=", p.read_text(), re.M)]
    assert [p.relative_to(PROJECT_ROOT) for p in markers] == [Path("runner/extravars.py")]


def test_validate_yml_takes_every_bound_from_vars() -> None:
    """A number other than 0 or 1 in a comparison of tasks/validate.yml would be a second
    copy of a bound (0 and 1 are "none" and "one": `length > 0`, `length <= 1`)."""
    text = (ROLE / "tasks" / "validate.yml").read_text()
    compared = re.findall(r"(?:<=?|>=?|==|!=)\s*(-?\d[\d.]*)", text)
    assert compared, "the pattern finds no comparison at all"
    assert [number for number in compared if number not in ("0", "1")] == []
    assert "is match(" not in text and "'match'" not in text  # whole matches only


def test_the_argument_specs_document_the_bounds_that_apply() -> None:
    options = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"][
        "main"
    ]["options"]

    def described(*path: str) -> str:
        option: dict[str, Any] = {"options": options}
        for name in path:
            option = option["options"][name]
        text = option["description"]
        return " ".join(text) if isinstance(text, list) else str(text)

    where = {
        "host_port": ("tool_instance_ports", "host_port"),
        "container_port": ("tool_instance_ports", "container_port"),
        "cpus": ("tool_instance_cpus",),
        "stop_timeout": ("tool_instance_stop_timeout",),
        "verify_timeout": ("tool_instance_verify_timeout",),
        "settle_seconds": ("tool_instance_settle_seconds",),
        "logs_tail": ("tool_instance_logs_tail",),
        "healthcheck_interval": ("tool_instance_healthcheck", "interval"),
        "healthcheck_timeout": ("tool_instance_healthcheck", "timeout"),
        "healthcheck_retries": ("tool_instance_healthcheck", "retries"),
        "healthcheck_start_period": ("tool_instance_healthcheck", "start_period"),
        "log_max_file": ("tool_instance_log_max_file",),
        "volumes": ("tool_instance_volumes",),
        "labels": ("tool_instance_labels",),
    }
    assert set(where) == set(rules.TOOL_BOUNDS)
    for bound, path in where.items():
        low = rules.CPUS_LIMIT_MIN if bound == "cpus" else rules.TOOL_BOUNDS[bound].min
        expected = f"{low:g}-{rules.TOOL_BOUNDS[bound].max:g}"
        assert expected in described(*path), (bound, described(*path))


def test_the_api_schema_carries_the_role_bounds() -> None:
    schema = DeployTool.model_json_schema()
    definitions = schema["$defs"]
    pairs = {
        "host_port": definitions["PortSpec"]["properties"]["host_port"],
        "container_port": definitions["PortSpec"]["properties"]["container_port"],
        "cpus": schema["properties"]["cpus"],
        "settle_seconds": schema["properties"]["settle_seconds"],
        "healthcheck_interval": definitions["HealthCheck"]["properties"]["interval_seconds"],
        "healthcheck_timeout": definitions["HealthCheck"]["properties"]["timeout_seconds"],
        "healthcheck_retries": definitions["HealthCheck"]["properties"]["retries"],
        "healthcheck_start_period": definitions["HealthCheck"]["properties"][
            "start_period_seconds"
        ],
    }
    for bound, prop in pairs.items():
        expected = rules.TOOL_BOUNDS[bound]
        assert (prop["minimum"], prop["maximum"]) == (expected.min, expected.max), bound
    assert schema["properties"]["image"]["maxLength"] == rules.IMAGE_MAX_LENGTH == 255
    assert schema["properties"]["name"]["pattern"] == rules.TOOL_NAME
    assert schema["properties"]["settle_seconds"]["default"] == rules.tool_default("settle_seconds")


def test_every_variable_the_api_sends_is_an_option_of_the_playbook() -> None:
    """Names come from the role's argument specs: the runner's own check accepts them all."""
    spec = DeployTool.model_validate(
        BASE
        | {
            "env": {"GREETING": "hi"},
            "ports": [{"host_port": 18080, "container_port": 8080}],
            "command": ["httpd", "-f"],
            "memory": "64m",
            "cpus": 0.5,
            "settle_seconds": 2,
            "healthcheck": {"test": CHECK, "interval_seconds": 2, "start_period_seconds": 1},
        }
    )
    checked = validate_extravars(
        load_spec(DEFAULT_PLAYBOOK_DIR / "tool_deploy.yml"), spec.extravars()
    )
    assert checked["tool_instance_healthcheck"] == {
        "test": CHECK,
        "interval": "2s",
        "timeout": "5s",
        "retries": 3,
        "start_period": "1s",
    }
    assert checked["tool_instance_settle_seconds"] == 2
    # Without a health check the variable is left to the role's default.
    assert "tool_instance_healthcheck" not in DeployTool.model_validate(BASE).extravars()


# -- bounds, at and just past each edge -----------------------------------------------------
@pytest.mark.parametrize(
    ("field", "accepted", "refused"),
    [
        ("cpus", [0, rules.CPUS_LIMIT_MIN, rules.TOOL_BOUNDS["cpus"].max], [0.001, 512.5, -1]),
        ("settle_seconds", [0, 120], [-1, 121]),
        ("memory", ["0", "6m", "6291456", "1g"], ["1k", "6291455", "1t", "1g\n"]),
        ("image", ["a" * 255], ["a" * 256, "dtma-tool-echo:1.0\n"]),
        ("name", ["a" * 63], ["a" * 64, "web\n", "web\n\n", "Web"]),
    ],
)
def test_deploy_bounds_are_the_roles(field: str, accepted: list[Any], refused: list[Any]) -> None:
    for value in accepted:
        DeployTool.model_validate(BASE | {field: value})
    for value in refused:
        assert _refused(BASE | {field: value}) == [(field,)], value


@pytest.mark.parametrize(
    ("healthcheck", "where"),
    [
        ({"test": ["CMD"]}, ("healthcheck", "test")),
        ({"test": ["wget", "http://x/"]}, ("healthcheck", "test")),
        ({"test": ["CMD", "{{ lookup('pipe', 'id') }}"]}, ("healthcheck", "test", 1)),
        ({"test": CHECK, "interval_seconds": 0}, ("healthcheck", "interval_seconds")),
        ({"test": CHECK, "timeout_seconds": 3601}, ("healthcheck", "timeout_seconds")),
        ({"test": CHECK, "retries": 0}, ("healthcheck", "retries")),
        ({"test": CHECK, "retries": 101}, ("healthcheck", "retries")),
        ({"test": CHECK, "start_period_seconds": -1}, ("healthcheck", "start_period_seconds")),
        ({"test": CHECK, "start_period_seconds": 3601}, ("healthcheck", "start_period_seconds")),
        # The first answer would come after the deploy stopped waiting for "healthy".
        ({"test": CHECK, "interval_seconds": 26, "timeout_seconds": 5}, ("healthcheck",)),
        ({"test": CHECK, "surprise": 1}, ("healthcheck", "surprise")),
    ],
)
def test_bad_health_checks_are_refused(healthcheck: dict[str, Any], where: tuple[Any, ...]) -> None:
    assert where in _refused(BASE | {"healthcheck": healthcheck})


def test_health_check_edges_are_accepted() -> None:
    window = rules.tool_default("verify_timeout")
    edge = HealthCheck(test=["CMD-SHELL", "true"], interval_seconds=window - 1, timeout_seconds=1)
    assert edge.role_input()["interval"] == f"{window - 1}s"
    HealthCheck(test=CHECK, retries=100, start_period_seconds=3600)


def test_agent_version_is_matched_whole() -> None:
    assert RedeployAgent(version="1.2.3").version == "1.2.3"
    for bad in ("1.2.3\n", "1.0; rm -rf /", "v" * 65):
        with pytest.raises(ValidationError):
            RedeployAgent(version=bad)


def test_public_form_never_shows_env_values() -> None:
    spec = DeployTool.model_validate(
        BASE | {"env": {"TOKEN": "s3cret-value"}, "healthcheck": {"test": CHECK}}
    )
    shown = spec.public()
    assert shown["env"] == {"TOKEN": "<redacted>"}
    assert "s3cret-value" not in repr(shown)
    assert shown["healthcheck"]["interval_seconds"] == 5
    assert shown["settle_seconds"] == rules.tool_default("settle_seconds")


# -- through HTTP: 422 (or the compat 400), never a run -------------------------------------
@pytest.fixture
def toolbox_id(db: Session, secrets: SecretBox, alice: dict[str, str]) -> str:
    toolbox = Toolbox(
        droplet_id=8,
        name="toolbox-8",
        owner_id=alice["id"],
        address="127.0.24.251",
    )
    secrets.seal_into(toolbox, Toolbox.agent_token_ciphertext, "agent-token-for-tests-0123456789")
    db.add(toolbox)
    db.commit()
    return toolbox.id


def _no_run(db: Session) -> None:
    assert db.scalar(select(func.count()).select_from(Run)) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (BASE | {"name": "web\n"}, "name"),
        (BASE | {"image": "a" * 256}, "image"),
        (BASE | {"cpus": 513}, "cpus"),
        (BASE | {"settle_seconds": 121}, "settle_seconds"),
        (BASE | {"healthcheck": {"test": CHECK, "retries": 0}}, "healthcheck.retries"),
        (BASE | {"healthcheck": {"test": ["CMD", "{{ 7*7 }}"]}}, "healthcheck.test.1"),
    ],
)
def test_bad_deploys_are_422_and_start_nothing(
    client: httpx.Client,
    db: Session,
    alice: dict[str, str],
    toolbox_id: str,
    body: dict[str, Any],
    field: str,
) -> None:
    response = client.post(
        f"/api/v1/toolboxes/{toolbox_id}/tools", json=body, headers={"Authorization": alice["auth"]}
    )
    assert assert_error(response, 422, "invalid_input")["field"] == field
    _no_run(db)


def test_a_name_with_a_newline_is_refused_in_every_route(
    client: httpx.Client, db: Session, alice: dict[str, str], toolbox_id: str
) -> None:
    auth = {"Authorization": alice["auth"]}
    for action in ("start", "stop", "restart"):
        response = client.post(
            f"/api/v1/toolboxes/{toolbox_id}/tools/web%0A/{action}", headers=auth
        )
        assert assert_error(response, 422, "invalid_input")["field"] == "name"
    response = client.delete(f"/api/v1/toolboxes/{toolbox_id}/tools/web%0A", headers=auth)
    assert assert_error(response, 422, "invalid_input")["field"] == "name"
    compat = client.post(
        "/functions/v1/toolbox-tools",
        json={"toolboxId": toolbox_id, "action": "restart", "instanceId": "web\n"},
        headers=auth,
    )
    assert compat.status_code == 400, compat.text
    assert compat.json()["success"] is False
    _no_run(db)


# -- the web form's parsing -----------------------------------------------------------------
def _form(**values: str) -> DeployForm:
    form = DeployForm.submitted(BASE | values)
    form.parse()
    return form


def test_the_deploy_form_builds_the_health_check_and_limits() -> None:
    form = DeployForm.submitted(
        BASE
        | {
            "health_command": "wget -q -O /dev/null http://127.0.0.1:8080/",
            "health_interval": "2",
            "health_retries": "4",
            "settle_seconds": "5",
            "memory": "64m",
            "cpus": "0.5",
        }
    )
    spec = form.parse()
    assert spec is not None, form.errors
    assert spec.extravars()["tool_instance_healthcheck"] == {
        "test": CHECK,
        "interval": "2s",
        "timeout": "5s",
        "retries": 4,
        "start_period": "0s",
    }
    assert (spec.settle_seconds, spec.memory, spec.cpus) == (5, "64m", 0.5)
    assert form.numbers["settle_seconds"].max == "120"
    assert form.numbers["health_interval"].default == "5"


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"health_interval": "2"}, "health_command", "give the check's command"),
        ({"health_command": "wget {{ x }}"}, "health_command", "templating characters"),
        (
            {"health_command": "true", "health_interval": "30", "health_timeout": "10"},
            "health_interval",
            "the first result would come after the 30 s",
        ),
        ({"health_command": "true", "health_retries": "0"}, "health_retries", "greater than"),
        ({"health_command": "true", "health_timeout": "x"}, "health_timeout", "whole number"),
        ({"memory": "1k"}, "memory", "at least 6m"),
        ({"memory": "lots"}, "memory", "256m or 1g"),
        ({"cpus": "600"}, "cpus", "less than or equal to 512"),
        ({"cpus": "0.001"}, "cpus", "at least 0.01"),
        ({"settle_seconds": "121"}, "settle_seconds", "less than or equal to 120"),
        ({"settle_seconds": "1.5"}, "settle_seconds", "whole number"),
    ],
)
def test_the_deploy_form_reports_each_problem_at_its_field(
    values: dict[str, str], field: str, message: str
) -> None:
    form = _form(**values)
    assert field in form.errors, form.errors
    assert message in form.errors[field], form.errors
