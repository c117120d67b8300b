"""Entry point: `dtma-agent` (systemd runs it from the current release's venv)."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from . import __version__
from .settings import AgentSettings, SettingsError

# systemd's RestartPreventExitStatus: a bad configuration is not fixed by restarting.
EXIT_BAD_CONFIG = 2


def main() -> None:
    parser = argparse.ArgumentParser(prog="dtma-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    parser.parse_args()
    try:
        settings = AgentSettings.from_env()
    except SettingsError as exc:
        print(f"dtma-agent: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_CONFIG)

    from .app import create_app

    tls = settings.tls
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        loop="asyncio",
        http="h11",
        lifespan="on",
        timeout_graceful_shutdown=5,
        ssl_certfile=tls.certificate if tls else None,
        ssl_keyfile=tls.private_key if tls else None,
        ssl_ciphers="ECDHE+AESGCM:ECDHE+CHACHA20",
    )


if __name__ == "__main__":
    main()
