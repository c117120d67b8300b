"""Makes the DTMA agent short-lived: 1.5 s after it first answers /health it exits (and
systemd restarts it). Installed on a droplet as sitecustomize.py, found through a PYTHONPATH
drop-in of dtma.service, to prove that the settle window catches an agent that answers
/health and then does not stay up. It counts from the first answer, not from the start:
systemd reports a Type=notify agent ready and the role reads /health once, however long the
droplet takes to get there."""

import importlib.machinery
import os
import sys
import threading
import time

_first_answer = threading.Event()


def _exit_soon_after_the_first_answer() -> None:
    _first_answer.wait()
    time.sleep(1.5)
    print("deliberately short-lived agent: exiting", flush=True)
    os._exit(1)


def _wrap_health(module) -> None:  # type: ignore[no-untyped-def]
    answer = module.AgentApp.health

    async def health(self, *args):  # type: ignore[no-untyped-def]
        _first_answer.set()
        return await answer(self, *args)

    module.AgentApp.health = health


class _WrapTheAgentApp:
    """Import hook: once dtma_agent.app has run, its /health handler is wrapped."""

    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name != "dtma_agent.app":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module) -> None:  # type: ignore[no-untyped-def]
            run(module)
            _wrap_health(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _WrapTheAgentApp())
threading.Thread(target=_exit_soon_after_the_first_answer, daemon=True).start()
