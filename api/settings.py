"""The console's configuration: one class, read from `DTMA_*` environment variables.

Every knob is documented in api/README.md. Secrets are `SecretStr` so that they never show
up in a repr, a log line or an error message.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DTMA_", extra="ignore")

    # Service
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    # Persistence
    database_url: str = "sqlite:///.data/console.db"

    # Authentication
    jwt_secret: SecretStr | None = None
    jwt_audience: str | None = None

    # DigitalOcean
    do_api_url: str = "https://api.digitalocean.com/v2"
    do_api_token: SecretStr | None = None
    do_tag: str = "dtma"

    # Ansible runs
    inventory: Path = PROJECT_ROOT / "inventory" / "digitalocean.yml"
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None
    run_timeout: int = Field(default=600, ge=5, le=86_400)

    # DTMA agent on every toolbox
    agent_port: int = Field(default=30000, ge=1, le=65535)
    agent_timeout: float = Field(default=3.0, gt=0, le=60)
    ssh_probe_timeout: float = Field(default=10.0, gt=0, le=120)
    dtma_version: str | None = None

    # Web console (api/web): browser sessions and page refresh
    web_session_hours: int = Field(default=12, ge=1, le=24 * 30)
    web_cookie_secure: bool = False  # set true when the console is served over HTTPS
    web_refresh_seconds: int = Field(default=10, ge=2, le=3600)

    @property
    def sqlite_path(self) -> Path | None:
        """The database file when the URL names an on-disk SQLite database."""
        prefix = "sqlite:///"
        if not self.database_url.startswith(prefix) or self.database_url == prefix + ":memory:":
            return None
        return Path(self.database_url.removeprefix(prefix))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
