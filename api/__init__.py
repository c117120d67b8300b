"""The DTMA console's HTTP service (FastAPI): auth, persistence, toolboxes, runs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dtma-console")
except PackageNotFoundError:  # running from a checkout that was not installed
    __version__ = "0.0.0"
