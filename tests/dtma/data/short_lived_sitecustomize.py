"""Makes the DTMA agent short-lived: 1.5 s after it first accepts connections it exits (and
systemd restarts it). Installed on a droplet as sitecustomize.py, found through a PYTHONPATH
drop-in of dtma.service, to prove that the settle window catches an agent that answers
/health and then does not stay up."""

import os
import socket
import threading
import time


def _exit_soon_after_serving() -> None:
    while True:
        try:
            socket.create_connection(("127.0.0.1", 30000), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(1.5)
    print("deliberately short-lived agent: exiting", flush=True)
    os._exit(1)


threading.Thread(target=_exit_soon_after_serving, daemon=True).start()
