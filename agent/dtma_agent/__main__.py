"""Entry point: `dtma-agent` (systemd runs it from the current release's venv)."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import sys

from . import __version__
from .settings import AgentSettings, SettingsError

# systemd's RestartPreventExitStatus: a bad configuration is not fixed by restarting.
EXIT_BAD_CONFIG = 2
_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10, "trace": 5}


def main() -> None:
    if sys.argv[1:]:
        import argparse  # only for --version and --help: it is not small

        parser = argparse.ArgumentParser(prog="dtma-agent", description=__doc__)
        parser.add_argument("--version", action="version", version=__version__)
        parser.parse_args()
    try:
        settings = AgentSettings.from_env()
    except SettingsError as exc:
        print(f"dtma-agent: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_CONFIG)
    logging.basicConfig(
        level=_LEVELS.get(settings.log_level, 20), format="%(levelname)s: %(message)s"
    )

    from .app import AgentApp
    from .notify import notify
    from .server import HttpServer, serve_until_stopped, tls_context

    tls = None
    if settings.tls is not None:
        try:
            tls = tls_context(settings.tls.certificate, settings.tls.private_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"dtma-agent: cannot use the TLS certificate and key: {exc}", file=sys.stderr)
            sys.exit(EXIT_BAD_CONFIG)
    app = AgentApp(settings)
    app.startup()
    scheme = "https" if tls else "http"

    def ready() -> None:
        logging.getLogger("dtma_agent").info(
            "dtma-agent %s serving %s on %s:%d", __version__, scheme, settings.host, settings.port
        )
        # Type=notify: systemd reports the unit started only now, once the port listens.
        try:
            notify(f"READY=1\nSTATUS=serving {scheme} on port {settings.port}")
        except OSError as exc:
            logging.getLogger("dtma_agent").warning("could not tell systemd: %s", exc)
        os.environ.pop("NOTIFY_SOCKET", None)

    try:
        asyncio.run(serve_until_stopped(HttpServer(app, tls), settings.host, settings.port, ready))
    except OSError as exc:  # cannot listen (address in use, ...): systemd may retry
        where = f"{settings.host}:{settings.port}"
        print(f"dtma-agent: cannot listen on {where}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
