"""Bench-only callback: when the ansible-playbook process started, and when it reached the
playbook, the play, its first task and its end (epoch seconds, JSON in $DTMA_TIMELINE)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import psutil
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: dtma_timeline
    type: aggregate
    short_description: timestamps of an ansible-playbook run's phases (bench/ only)
    description: Writes the process start and the first playbook, play and task times.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "dtma_timeline"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marks: dict[str, float] = {
            "process": psutil.Process().create_time(),
            "callback_loaded": time.time(),
        }

    def _mark(self, name: str) -> None:
        self.marks.setdefault(name, time.time())

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._mark("playbook")

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._mark("play")

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._mark("first_task")
        if "validate_argument_spec" not in str(task.action):
            self._mark("first_role_task")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._mark("end")
        with open(os.environ["DTMA_TIMELINE"], "w") as out:
            json.dump(self.marks, out)
