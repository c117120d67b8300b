"""Run the console's playbooks through ansible-runner; typed events in, ConsoleResult out.

    from runner import RunRequest, run_playbook, start_run
    result = run_playbook(RunRequest(playbook="tool_restart.yml", hosts=["toolbox-1"],
                                     extravars={"tool_instance_name": "echo"}))

This package is the only place that knows ansible-runner. See runner/README.md.
"""

from runner.catalog import PLAYBOOKS, PlaybookSpec
from runner.errors import RequestError
from runner.handle import RunHandle
from runner.interface import run_playbook, start_run
from runner.inventory import refresh_inventory
from runner.models import ConsoleResult, HostCounts, RunEvent, RunStatus, TaskOutcome
from runner.processes import stop_run_processes
from runner.request import RunRequest, validate_request
from runner.rundir import discard_run_dir

__all__ = [
    "PLAYBOOKS",
    "ConsoleResult",
    "HostCounts",
    "PlaybookSpec",
    "RequestError",
    "RunEvent",
    "RunHandle",
    "RunRequest",
    "RunStatus",
    "TaskOutcome",
    "discard_run_dir",
    "refresh_inventory",
    "run_playbook",
    "start_run",
    "stop_run_processes",
    "validate_request",
]
