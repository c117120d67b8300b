"""Extra variables are data, never code.

Every variable is checked against the playbook's accepted options (type, choices, nested
options) with ansible's own argument-spec validator before anything starts, any string that
looks like a Jinja2 template is refused, and what is passed on is written with YAML's
`!unsafe` tag so that ansible never templates it even if a check here were missed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from runner.catalog import PlaybookSpec
from runner.errors import RequestError

TEMPLATE_MARKERS = ("{{", "{%", "{#")


def reject_templates(field: str, value: Any) -> None:
    """RequestError naming the first string (or key) under `value` that contains a template."""
    if isinstance(value, str):
        if any(marker in value for marker in TEMPLATE_MARKERS):
            raise RequestError(field, "templating characters ({{ {% {#) are not allowed")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            reject_templates(f"{field}.{key}", key)
            reject_templates(f"{field}.{key}", item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            reject_templates(f"{field}[{index}]", item)


def _without_expansion(option: Mapping[str, Any]) -> dict[str, Any]:
    """The option spec with `type: path` read as a plain string.

    Ansible's path check expands `~` and `$VARS` from *this* process's environment, which
    would let a request read the console's environment; the role still sees a path.
    """
    spec = dict(option)
    if spec.get("type") == "path":
        spec["type"] = "str"
    if spec.get("elements") == "path":
        spec["elements"] = "str"
    if isinstance(spec.get("options"), Mapping):
        spec["options"] = {k: _without_expansion(v) for k, v in spec["options"].items()}
    for key in ("description", "version_added", "author", "short_description"):
        spec.pop(key, None)
    return spec


def _check_option(name: str, option: Mapping[str, Any], value: Any) -> Any:
    spec = _without_expansion(option)
    if spec.get("type", "str") == "str" and not isinstance(value, (str, int, float)):
        raise RequestError(name, f"must be a string, got {type(value).__name__}")
    spec.pop("required", None)  # presence is checked by the caller, with a clearer message
    result = ArgumentSpecValidator({name: spec}).validate({name: value})
    if result.error_messages:
        raise RequestError(name, "; ".join(result.error_messages))
    return result.validated_parameters[name]


def validate_extravars(spec: PlaybookSpec, extravars: Mapping[str, Any]) -> dict[str, Any]:
    """The extra vars, type-coerced as ansible would; RequestError for anything refused."""
    checked: dict[str, Any] = {}
    for name, value in extravars.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise RequestError(str(name), "is not a valid variable name")
        if name in spec.fixed:
            raise RequestError(name, f"is set by {spec.name} and cannot be overridden")
        if name not in spec.options:
            accepted = ", ".join(spec.accepted) or "none"
            raise RequestError(name, f"is not a variable of {spec.name} (accepted: {accepted})")
        reject_templates(name, value)
        checked[name] = _check_option(name, spec.options[name], value)
    for name in spec.accepted:
        if spec.options[name].get("required") and name not in checked:
            raise RequestError(name, f"is required by {spec.name}")
    return checked


class _Unsafe(str):
    """A string to be written with ansible's `!unsafe` tag."""


class _UnsafeDumper(yaml.SafeDumper):
    pass


_UnsafeDumper.add_representer(
    _Unsafe, lambda dumper, data: dumper.represent_scalar("!unsafe", str(data), style='"')
)


def _reads_back_as_text(value: str) -> bool:
    """Whether a plain YAML scalar with this text would load as a string.

    ansible-core 2.19 resolves the text under `!unsafe` as if it were untagged, so
    `!unsafe "0"` loads as the integer 0 and a tool named "0" (or "1e3", "true") would reach
    the role as a number. Such texts hold no template markers (they are numbers, booleans or
    null), so they are written as plain quoted strings instead.
    """
    resolved = yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, (True, False))
    return bool(resolved == "tag:yaml.org,2002:str")


def _mark_unsafe(value: Any) -> Any:
    if isinstance(value, str):
        return _Unsafe(value) if _reads_back_as_text(value) else value
    if isinstance(value, Mapping):
        return {key: _mark_unsafe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mark_unsafe(item) for item in value]
    return value


def unsafe_yaml(extravars: Mapping[str, Any]) -> str:
    """YAML for `ansible-playbook -e @file` in which every string is tagged `!unsafe`
    (but those that YAML would read as another type: see `_reads_back_as_text`)."""
    return yaml.dump(_mark_unsafe(dict(extravars)), Dumper=_UnsafeDumper, sort_keys=True)
