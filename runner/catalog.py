"""The allow-list of playbooks and the variables each one accepts.

A playbook is allowed when it is a file in the playbook directory (`playbooks/`). The
variables it accepts are the options of the argument specs (`meta/argument_specs.yml`) of
the roles it runs, minus the variables the playbook itself sets: those fix the role's
action (`tool_instance_action: restart`) and an extra var would silently override them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PLAYBOOK_DIR = PROJECT_ROOT / "playbooks"
ROLES_DIR = PROJECT_ROOT / "roles"

PLAYBOOK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.ya?ml$")
_ROLE_INCLUDES = {
    "include_role",
    "import_role",
    "ansible.builtin.include_role",
    "ansible.builtin.import_role",
}
_TASK_LISTS = ("pre_tasks", "tasks", "post_tasks", "handlers")
_BLOCK_LISTS = ("block", "rescue", "always")


@dataclass(frozen=True)
class PlaybookSpec:
    """What one playbook accepts: argument-spec options by name, and what it fixes itself."""

    name: str
    path: Path
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    fixed: frozenset[str] = frozenset()

    @property
    def accepted(self) -> list[str]:
        return sorted(name for name in self.options if name not in self.fixed)

    def secret_options(self) -> frozenset[str]:
        """Options declared `no_log: true`: their values are secrets."""
        return frozenset(n for n, spec in self.options.items() if spec.get("no_log"))


class _TolerantLoader(yaml.SafeLoader):
    """Reads playbooks that use ansible's own tags (`!unsafe`, `!vault`) as plain data."""


def _plain(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_TolerantLoader.add_multi_constructor("!", _plain)


def _load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_TolerantLoader)  # a SafeLoader subclass


def _role_dir(role: str, playbook_dir: Path) -> Path | None:
    for base in (playbook_dir / "roles", ROLES_DIR):
        candidate = base / role
        if candidate.is_dir():
            return candidate
    return None


def _role_options(role: str, entry_point: str, playbook_dir: Path) -> dict[str, dict[str, Any]]:
    role_dir = _role_dir(role, playbook_dir)
    if role_dir is None:
        return {}  # ansible itself reports the missing role when the run starts
    for name in ("argument_specs.yml", "argument_specs.yaml"):
        specs_file = role_dir / "meta" / name
        if specs_file.is_file():
            specs = (_load_yaml(specs_file) or {}).get("argument_specs") or {}
            return dict((specs.get(entry_point) or {}).get("options") or {})
    return {}


@dataclass
class _Collector:
    playbook_dir: Path
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    fixed: set[str] = field(default_factory=set)

    def role(self, name: str, entry_point: str, role_vars: Mapping[str, Any]) -> None:
        self.options.update(_role_options(name, entry_point, self.playbook_dir))
        self.fixed.update(role_vars)

    def play(self, play: Mapping[str, Any]) -> None:
        self.fixed.update(play.get("vars") or {})
        for entry in play.get("roles") or []:
            if isinstance(entry, str):
                self.role(entry, "main", {})
            else:
                name = entry.get("role") or entry.get("name")
                params = {k: v for k, v in entry.items() if k not in ("role", "name", "vars")}
                self.role(str(name), "main", {**(entry.get("vars") or {}), **params})
        for key in _TASK_LISTS:
            self.tasks(play.get(key) or [])

    def tasks(self, tasks: list[Any]) -> None:
        for task in tasks:
            if not isinstance(task, Mapping):
                continue
            for key in _BLOCK_LISTS:
                self.tasks(task.get(key) or [])
            for action in _ROLE_INCLUDES & task.keys():
                args = task[action] if isinstance(task[action], Mapping) else {}
                entry = str(args.get("tasks_from") or "main")
                self.role(str(args.get("name")), entry, task.get("vars") or {})


def load_spec(path: Path) -> PlaybookSpec:
    """Read one playbook and the argument specs of the roles it runs."""
    collector = _Collector(playbook_dir=path.parent)
    try:
        plays = _load_yaml(path) or []
    except yaml.YAMLError:
        plays = []  # not a playbook ansible can read: the run fails with ansible's own error
    for play in plays if isinstance(plays, list) else []:
        if isinstance(play, Mapping):
            collector.play(play)
    return PlaybookSpec(
        name=path.name, path=path, options=collector.options, fixed=frozenset(collector.fixed)
    )


class PlaybookCatalog(Mapping[str, PlaybookSpec]):
    """Playbook name -> PlaybookSpec for every playbook in a directory.

    Read on every access, not cached at import: playbooks and role specs are files that an
    operator may update while the console runs, and reading them costs a few milliseconds.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __getitem__(self, name: str) -> PlaybookSpec:
        if name not in self:
            raise KeyError(name)
        return load_spec(self.directory / name)

    def __iter__(self) -> Iterator[str]:
        if not self.directory.is_dir():
            return iter(())
        return iter(sorted(p.name for p in self.directory.iterdir() if p.name in self))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, name: object) -> bool:
        return (
            isinstance(name, str)
            and PLAYBOOK_NAME.match(name) is not None
            and (self.directory / name).is_file()
        )


PLAYBOOKS = PlaybookCatalog(DEFAULT_PLAYBOOK_DIR)
