"""The console's configuration: one class, read from `DTMA_*` environment variables.

Every knob is documented in api/README.md. Secrets are `SecretStr` so that they never show
up in a repr, a log line or an error message.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# An exact browser origin: scheme, host (or [IPv6]), optional port; nothing else.
CORS_ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


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
    # Where runs execute: `local` (in this process) or `celery` (on `dtma-console worker`
    # processes reached through the broker at broker_url; only run ids travel through it).
    executor: Literal["local", "celery"] = "local"
    broker_url: SecretStr | None = None
    run_queue: str = Field(default="dtma", pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # Celery queue
    # A run whose owner has not heartbeaten for this long is marked `interrupted`.
    run_lease_seconds: float = Field(default=30.0, ge=2, le=3600)
    # Runs executing at once in this process (local executor); more wait `queued`.
    max_concurrent_runs: int = Field(default=16, ge=1, le=1000)

    # DTMA agent on every toolbox
    agent_port: int = Field(default=30000, ge=1, le=65535)
    agent_timeout: float = Field(default=3.0, gt=0, le=60)
    ssh_probe_timeout: float = Field(default=10.0, gt=0, le=120)
    # A read within this many seconds of the last live answer (on-demand or the monitor's)
    # answers from it (`cached: true`, `age_ms`), unless a run held or changed the toolbox
    # since; 0 reads live every time.
    read_fresh_seconds: float = Field(default=2.0, ge=0, le=60)

    # Key vault (api/vault): master key(s) sealing secrets at rest, comma-separated while
    # rotating (the first seals, all unseal), or a key file outside the data directory.
    # Required unless `demo` (then a generated <data dir>/master.key, mode 0600).
    master_key: SecretStr | None = None
    master_key_file: Path | None = None
    # Bootstrap: remove the key a droplet was created with (ssh_key_file) from root's
    # authorized_keys once the toolbox's own key is proven to work.
    ssh_revoke_bootstrap_key: bool = False
    # Seconds ssh-keyscan waits for a droplet when its host key is first recorded.
    ssh_keyscan_timeout: int = Field(default=5, ge=1, le=60)

    # Web console (api/web): browser sessions and page refresh
    web_session_hours: int = Field(default=12, ge=1, le=24 * 30)
    web_cookie_secure: bool = False  # set true when the console is served over HTTPS
    web_refresh_seconds: int = Field(default=10, ge=2, le=3600)

    # Monitoring (api/monitoring): status sync, checks, alerts, webhooks, recovery.
    # Seconds between two monitoring cycles in the service; 0 switches the loop off.
    monitor_interval: float = Field(default=30.0, ge=0, le=86_400)
    monitor_jitter: float = Field(default=0.2, ge=0, le=1)  # +/- fraction of the interval
    sync_concurrency: int = Field(default=100, ge=1, le=2000)  # agents read at once
    sync_ssh_concurrency: int = Field(default=8, ge=1, le=256)  # SSH fallbacks at once
    sync_batch_size: int = Field(default=250, ge=1, le=10_000)  # toolboxes per transaction
    # Defaults for every toolbox; each one can override them (monitoring settings route).
    monitor_cpu_threshold: float = Field(default=90.0, gt=0, le=100)
    monitor_memory_threshold: float = Field(default=90.0, gt=0, le=100)
    monitor_disk_threshold: float = Field(default=90.0, gt=0, le=100)
    monitor_agent_down_checks: int = Field(default=2, ge=1, le=100)
    monitor_threshold_checks: int = Field(default=3, ge=1, le=100)
    monitor_restart_loop_restarts: int = Field(default=3, ge=1, le=1000)
    # Metrics history: raw samples kept this long, and averages over buckets of
    # metrics_average_seconds (computed as the buckets close) kept for the days after.
    metrics_retention_hours: float = Field(default=48.0, gt=0, le=24 * 366)
    metrics_average_seconds: int = Field(default=300, ge=60, le=3600)
    metrics_average_retention_days: float = Field(default=14.0, gt=0, le=3660)
    recovery_enabled: bool = True
    recovery_max_attempts: int = Field(default=3, ge=0, le=100)
    recovery_window_seconds: int = Field(default=900, ge=1, le=7 * 86_400)
    recovery_backoff_seconds: float = Field(default=30.0, ge=0, le=86_400)  # doubles each time
    # Webhooks receiving alert events as JSON (Slack-compatible `text`): a JSON list of URLs.
    alert_webhooks: list[SecretStr] = Field(default_factory=list)
    webhook_timeout: float = Field(default=5.0, gt=0, le=60)
    webhook_attempts: int = Field(default=4, ge=1, le=20)
    webhook_backoff_seconds: float = Field(default=1.0, ge=0, le=600)  # doubles each retry
    # Apprise URLs (api/monitoring/notify.py), each `[severity[,severity]=]URL`: a JSON list
    # or entries separated by whitespace. Secrets: shown masked, never logged.
    notify_urls: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Seconds after which an open, unacknowledged alert is sent again; 0: never.
    notify_repeat: float = Field(default=14_400, ge=0, le=30 * 86_400)

    # Data at rest (api/vault/master.py, api/db.py). DTMA_DEMO=1 (`make demo` writes it into
    # .data/demo.env): a local demo, whose master key may be generated into the data dir.
    demo: bool = False

    @field_validator("notify_urls", mode="before")
    @classmethod
    def _split_notify_urls(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else text.split()
        return value

    @property
    def sqlite_path(self) -> Path | None:
        """The database file when the URL names an on-disk SQLite database."""
        prefix = "sqlite:///"
        if not self.database_url.startswith(prefix) or self.database_url == prefix + ":memory:":
            return None
        return Path(self.database_url.removeprefix(prefix))

    # -- API tokens, JWTs, bounded load, CORS (issue 14) ---------------------------------
    # With jwt_secret, JWTs must carry this `iss` and jwt_audience as `aud` (both required).
    jwt_issuer: str | None = Field(default=None, min_length=1, max_length=512)
    # Log streams with follow=true open at once, per user and in this console process.
    max_follows_per_user: int = Field(default=8, ge=1, le=1000)
    max_follows: int = Field(default=128, ge=1, le=100_000)
    # Runs queued or running at once that one user started (across every console process).
    max_runs_per_user: int = Field(default=8, ge=1, le=10_000)
    # SSH-probe fallbacks of on-demand reads at once in this process, on their own threads;
    # a read beyond that is answered 429 `ssh_probes_busy` instead of waiting.
    ssh_probe_concurrency: int = Field(default=8, ge=1, le=256)
    # Exact browser origins (scheme://host[:port]) allowed to call /functions/v1/* and
    # /api/v1/* cross-origin, comma-separated; `*` is refused.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_cors_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin == "*" or "*" in origin:
                raise ValueError(
                    "DTMA_CORS_ORIGINS must list exact origins such as "
                    "https://app.example.com; '*' is refused (any site could then call "
                    "the console with its users' credentials)"
                )
            if not CORS_ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"DTMA_CORS_ORIGINS: {origin!r} is not an origin "
                    "(scheme://host[:port], no path, no trailing slash)"
                )
        return origins

    @model_validator(mode="after")
    def _jwt_claims_checked(self) -> Settings:
        if self.jwt_secret is not None and (not self.jwt_issuer or not self.jwt_audience):
            raise ValueError(
                "DTMA_JWT_SECRET needs DTMA_JWT_ISSUER and DTMA_JWT_AUDIENCE: every JWT's "
                "`iss` and `aud` are checked against them (Supabase: "
                "https://<project>.supabase.co/auth/v1 and authenticated)"
            )
        return self

    # -- Provisioning (issue 17 item 5, api/services/provisioning.py) -------------------------
    # The image slug new toolboxes' droplets are created from (DigitalOcean's Debian 12).
    do_droplet_image: str = Field(default="debian-12-x64", pattern=r"^[a-z0-9][a-z0-9.-]{0,63}$")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
